//! `x5c` token headers: a certificate chain whose first certificate signed
//! the token. registry:2 accepts the token when the chain leads to a
//! certificate of `rootcertbundle` (Go's `x509.Verify` with the bundle as
//! roots and the rest of the chain as intermediates, any key usage); this
//! does the same with rustls-webpki (already in the build for TLS), which
//! checks signatures, validity periods and CA constraints on the way.

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

/// What token signing certificates are used for is not ours to police
/// (Go's `ExtKeyUsageAny`).
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

const ALGORITHMS: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The DER of each `x5c` entry (standard base64, not base64url).
pub fn decode(chain: &[String]) -> Option<Vec<Vec<u8>>> {
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .collect()
}

/// Whether `chain[0]` is vouched for by one of `roots` through the rest of
/// `chain`, now.
pub fn verify(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    let root_ders: Vec<CertificateDer<'_>> =
        roots.iter().map(|r| CertificateDer::from(&r[..])).collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let leaf = CertificateDer::from(&leaf[..]);
    let Ok(end_entity) = EndEntityCert::try_from(&leaf) else {
        return false;
    };
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(&c[..]))
        .collect();
    end_entity
        .verify_for_usage(
            ALGORITHMS,
            &anchors,
            &intermediates,
            UnixTime::now(),
            AnyUsage,
            None,
            None,
        )
        .is_ok()
}
