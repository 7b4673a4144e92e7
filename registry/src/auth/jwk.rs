//! JSON Web Keys (RFC 7517) for token verification, as registry:3 reads
//! them: a JWKS document (`auth.token.jwks`, a file or an `http(s)://` URL
//! such as Keycloak's `.../protocol/openid-connect/certs`) turned into our
//! [`PublicKey`]s, and the RFC 7638 thumbprint, the `kid` go-jose issuers
//! (and registry:3 itself) derive from a key.

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use super::der::{self, PublicKey};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// One usable key of a JWKS.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's own `alg`, when it names one: then only that algorithm.
    pub alg: Option<String>,
    pub key: PublicKey,
    /// DER of the `x5c` leaf, when the JWK carries one.
    pub cert: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(rename = "use", default)]
    usage: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    x5c: Vec<String>,
}

/// The signing keys of a JWKS document, and a note for each key skipped
/// (encryption keys, curves we do not verify).
pub fn parse_set(json: &[u8]) -> Result<(Vec<Jwk>, Vec<String>), String> {
    let set: RawSet = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for raw in set.keys {
        let name = raw.kid.clone().unwrap_or_else(|| "(no kid)".into());
        if raw.usage.as_deref().is_some_and(|u| u != "sig") {
            skipped.push(format!(
                "{name}: use {:?} is not sig",
                raw.usage.unwrap_or_default()
            ));
            continue;
        }
        match key_of(&raw) {
            Ok(key) => keys.push(Jwk {
                kid: raw.kid,
                alg: raw.alg,
                key,
                cert: raw
                    .x5c
                    .first()
                    .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok()),
            }),
            Err(why) => skipped.push(format!("{name}: {why}")),
        }
    }
    Ok((keys, skipped))
}

fn field(v: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let text = v.as_deref().ok_or_else(|| format!("no {name}"))?;
    B64.decode(text.trim_end_matches('='))
        .map_err(|_| format!("{name} is not base64url"))
}

fn key_of(raw: &RawKey) -> Result<PublicKey, String> {
    match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = field(&raw.n, "n")?;
            let e = field(&raw.e, "e")?;
            if n.len() < 256 {
                return Err("RSA keys shorter than 2048 bits are refused".into());
            }
            Ok(PublicKey::Rsa(rsa_pkcs1(&n, &e)))
        }
        ("EC", Some("P-256")) => {
            let (x, y) = (field(&raw.x, "x")?, field(&raw.y, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are not 32 bytes".into());
            }
            Ok(PublicKey::P256([&[4u8][..], &x, &y].concat()))
        }
        ("OKP", Some("Ed25519")) => {
            let x = field(&raw.x, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            Ok(PublicKey::Ed25519(x))
        }
        (kty, crv) => Err(format!(
            "kty {kty:?}{} is not supported (RSA, EC P-256, OKP Ed25519)",
            crv.map(|c| format!(" crv {c:?}")).unwrap_or_default()
        )),
    }
}

/// DER INTEGER contents of an unsigned big-endian number.
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let trimmed = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => &[0][..],
    };
    if trimmed[0] & 0x80 != 0 {
        [&[0u8][..], trimmed].concat()
    } else {
        trimmed.to_vec()
    }
}

/// PKCS#1 RSAPublicKey from its modulus and exponent.
fn rsa_pkcs1(n: &[u8], e: &[u8]) -> Vec<u8> {
    let body = [
        der::encode(0x02, &unsigned(n)),
        der::encode(0x02, &unsigned(e)),
    ]
    .concat();
    der::encode(0x30, &body)
}

/// (n, e) of a PKCS#1 RSAPublicKey, without leading zeros.
fn rsa_components(pkcs1: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (seq, _) = der::read(pkcs1)?;
    let (n, rest) = der::read(seq.content)?;
    let (e, _) = der::read(rest)?;
    let strip = |b: &[u8]| {
        let i = b
            .iter()
            .position(|&x| x != 0)
            .unwrap_or(b.len().saturating_sub(1));
        b[i..].to_vec()
    };
    Some((strip(n.content), strip(e.content)))
}

/// RFC 7638 thumbprint: base64url(SHA-256 of the required members in
/// lexical order, no spaces).
pub fn thumbprint(key: &PublicKey) -> String {
    let canonical = match key {
        PublicKey::P256(point) => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            B64.encode(&point[1..33]),
            B64.encode(&point[33..65])
        ),
        PublicKey::Rsa(pkcs1) => {
            let (n, e) = rsa_components(pkcs1).unwrap_or_default();
            format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                B64.encode(e),
                B64.encode(n)
            )
        }
        PublicKey::Ed25519(x) => {
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, B64.encode(x))
        }
    };
    B64.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_matches_rfc_7638() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let json = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}]}}"#
        );
        let (keys, skipped) = parse_set(json.as_bytes()).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(keys[0].kid.as_deref(), Some("2011-04-29"));
        assert_eq!(
            thumbprint(&keys[0].key),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let json = br#"{"keys":[
            {"kty":"EC","crv":"P-384","kid":"a","x":"AA","y":"AA"},
            {"kty":"RSA","use":"enc","kid":"b","n":"AA","e":"AQAB"},
            {"kty":"RSA","kid":"c","n":"AQAB","e":"AQAB"}]}"#;
        let (keys, skipped) = parse_set(json).unwrap();
        assert!(keys.is_empty());
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(parse_set(b"{}").is_err());
    }
}
