//! Just enough PEM and DER to read token keys and certificates: PEM blocks,
//! DER TLVs, a certificate's SubjectPublicKeyInfo, PKCS#8/SEC1/PKCS#1
//! private keys, and the libtrust key ID Docker's token spec uses as `kid`.
//! (A full X.509 or ASN.1 crate would be hundreds of times this size for the
//! five fields we read.)

use base64::Engine as _;
use sha2::Digest as _;

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Every `-----BEGIN X-----` … `-----END X-----` block in `text`.
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            // Skip RFC 1421 headers (`Proc-Type: ...`); encrypted keys are
            // refused below because their body is not DER.
            if !line.contains(':') {
                body.push_str(line);
            }
        }
        if !closed {
            return Err(format!("PEM block {label} has no END line"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("PEM block {label}: {e}"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    Ok(blocks)
}

pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One DER element: its tag, its contents, and its whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur in what we read
    }
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if input.len() < end {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &input[header..end],
            whole: &input[..end],
        },
        &input[end..],
    ))
}

fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (tlv, rest) = read(input)?;
    (tlv.tag == tag).then_some((tlv, rest))
}

/// DER encoding of one element.
pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The SubjectPublicKeyInfo (whole encoding) of an X.509 certificate.
pub fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(certificate.content, SEQUENCE)?;
    let mut rest = tbs.content;
    // version [0] EXPLICIT, optional
    if rest.first() == Some(&0xa0) {
        rest = read(rest)?.1;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = read(rest)?.1;
    }
    let (spki, _) = expect(rest, SEQUENCE)?;
    Some(spki.whole)
}

/// A public key we can verify token signatures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Uncompressed SEC1 point (65 bytes).
    P256(Vec<u8>),
    /// PKCS#1 RSAPublicKey DER.
    Rsa(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl PublicKey {
    pub fn from_spki(spki: &[u8]) -> Result<PublicKey, String> {
        let bad = || "malformed SubjectPublicKeyInfo".to_owned();
        let (seq, _) = expect(spki, SEQUENCE).ok_or_else(bad)?;
        let (alg, rest) = expect(seq.content, SEQUENCE).ok_or_else(bad)?;
        let (bits, _) = expect(rest, BIT_STRING).ok_or_else(bad)?;
        let key = match bits.content.split_first() {
            Some((0, key)) => key,
            _ => return Err(bad()),
        };
        let (oid, params) = expect(alg.content, OID).ok_or_else(bad)?;
        match oid.content {
            o if o == OID_EC_PUBLIC_KEY => {
                let (curve, _) = expect(params, OID).ok_or_else(bad)?;
                if curve.content != OID_P256 {
                    return Err("only the P-256 curve is supported for EC keys (ES256)".into());
                }
                if key.len() != 65 || key[0] != 4 {
                    return Err("EC public key is not an uncompressed P-256 point".into());
                }
                Ok(PublicKey::P256(key.to_vec()))
            }
            o if o == OID_RSA => Ok(PublicKey::Rsa(key.to_vec())),
            o if o == OID_ED25519 => {
                if key.len() != 32 {
                    return Err("Ed25519 public key is not 32 bytes".into());
                }
                Ok(PublicKey::Ed25519(key.to_vec()))
            }
            _ => Err("unsupported key algorithm (use P-256, RSA or Ed25519)".into()),
        }
    }

    /// The DER SubjectPublicKeyInfo of this key.
    pub fn spki(&self) -> Vec<u8> {
        let (alg, key) = match self {
            PublicKey::P256(point) => (
                encode(
                    SEQUENCE,
                    &concat(&[&encode(OID, OID_EC_PUBLIC_KEY), &encode(OID, OID_P256)]),
                ),
                point,
            ),
            PublicKey::Rsa(pkcs1) => (
                encode(
                    SEQUENCE,
                    &concat(&[&encode(OID, OID_RSA), &encode(NULL, &[])]),
                ),
                pkcs1,
            ),
            PublicKey::Ed25519(raw) => (encode(SEQUENCE, &encode(OID, OID_ED25519)), raw),
        };
        let bits = encode(BIT_STRING, &concat(&[&[0], key]));
        encode(SEQUENCE, &concat(&[&alg, &bits]))
    }

    /// Docker's (libtrust) key ID: SHA-256 of the DER SubjectPublicKeyInfo,
    /// first 240 bits, base32, in twelve groups of four joined by `:`. This
    /// is what registry:2 looks a token's `kid` up by.
    pub fn libtrust_kid(&self) -> String {
        let hash = sha2::Sha256::digest(self.spki());
        let b32 = base32(&hash[..30]);
        b32.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ASCII"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// RFC 4648 base32, no padding (30 bytes give exactly 48 characters).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A private key as the signing code needs it.
#[derive(Debug, Clone)]
pub enum PrivateKey {
    /// PKCS#8 DER of a P-256 key (what ring signs with).
    P256(Vec<u8>),
    /// PKCS#1 RSAPrivateKey DER.
    Rsa(Vec<u8>),
    /// PKCS#8 DER of an Ed25519 key.
    Ed25519(Vec<u8>),
}

/// Reads a private key from a PEM block: `PRIVATE KEY` (PKCS#8: P-256, RSA,
/// Ed25519), `EC PRIVATE KEY` (SEC1, what `openssl ecparam -genkey` writes)
/// or `RSA PRIVATE KEY` (PKCS#1).
pub fn private_key(block: &PemBlock) -> Result<PrivateKey, String> {
    let bad = |what: &str| format!("malformed {what}");
    match block.label.as_str() {
        "RSA PRIVATE KEY" => Ok(PrivateKey::Rsa(block.der.clone())),
        "EC PRIVATE KEY" => {
            // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] curve, [1] pub }
            let (seq, _) = expect(&block.der, SEQUENCE).ok_or_else(|| bad("EC PRIVATE KEY"))?;
            let mut rest = seq.content;
            let mut curve_ok = false;
            while let Some((tlv, next)) = read(rest) {
                if tlv.tag == 0xa0 {
                    curve_ok = expect(tlv.content, OID).is_some_and(|(o, _)| o.content == OID_P256);
                }
                rest = next;
            }
            if !curve_ok {
                return Err("EC PRIVATE KEY: only P-256 (prime256v1) is supported".into());
            }
            let alg = encode(
                SEQUENCE,
                &concat(&[&encode(OID, OID_EC_PUBLIC_KEY), &encode(OID, OID_P256)]),
            );
            let pkcs8 = encode(
                SEQUENCE,
                &concat(&[
                    &encode(INTEGER, &[0]),
                    &alg,
                    &encode(OCTET_STRING, &block.der),
                ]),
            );
            Ok(PrivateKey::P256(pkcs8))
        }
        "PRIVATE KEY" => {
            // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING }
            let (seq, _) = expect(&block.der, SEQUENCE).ok_or_else(|| bad("PRIVATE KEY"))?;
            let (_version, rest) =
                expect(seq.content, INTEGER).ok_or_else(|| bad("PRIVATE KEY"))?;
            let (alg, rest) = expect(rest, SEQUENCE).ok_or_else(|| bad("PRIVATE KEY"))?;
            let (key, _) = expect(rest, OCTET_STRING).ok_or_else(|| bad("PRIVATE KEY"))?;
            let (oid, params) = expect(alg.content, OID).ok_or_else(|| bad("PRIVATE KEY"))?;
            match oid.content {
                o if o == OID_EC_PUBLIC_KEY => {
                    let curve = expect(params, OID).map(|(c, _)| c.content);
                    if curve != Some(OID_P256) {
                        return Err("only the P-256 curve is supported for EC keys (ES256)".into());
                    }
                    Ok(PrivateKey::P256(block.der.clone()))
                }
                o if o == OID_RSA => Ok(PrivateKey::Rsa(key.content.to_vec())),
                o if o == OID_ED25519 => Ok(PrivateKey::Ed25519(block.der.clone())),
                _ => Err("unsupported private key algorithm (use P-256, RSA or Ed25519)".into()),
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err("encrypted private keys are not supported".into()),
        other => Err(format!("a {other} block is not a private key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn der_roundtrip_and_long_lengths() {
        let content = vec![7u8; 300];
        let e = encode(OCTET_STRING, &content);
        assert_eq!(&e[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tlv, rest) = read(&e).unwrap();
        assert_eq!(tlv.content, &content[..]);
        assert!(rest.is_empty());
        assert!(read(&e[..100]).is_none(), "truncated input");
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
    }

    #[test]
    fn p256_spki_roundtrips() {
        let mut point = vec![4u8];
        point.extend([9u8; 64]);
        let key = PublicKey::P256(point);
        let spki = key.spki();
        assert_eq!(
            hex::encode(&spki[..26]),
            "3059301306072a8648ce3d020106082a8648ce3d030107034200"
        );
        assert_eq!(PublicKey::from_spki(&spki).unwrap(), key);
        let kid = key.libtrust_kid();
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert_eq!(kid.split(':').count(), 12);
    }

    #[test]
    fn pem_blocks_are_read_in_order() {
        let text = format!(
            "junk\n{}{}",
            pem_encode("PUBLIC KEY", b"\x01\x02"),
            pem_encode("CERTIFICATE", &[3u8; 100])
        );
        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "PUBLIC KEY");
        assert_eq!(blocks[1].der, vec![3u8; 100]);
        assert!(pem_blocks("-----BEGIN X-----\nAAAA\n").is_err());
    }
}
