//! Bearer JWTs through `TokenAuth::verify`, with one Ed25519 signing key
//! set up once. Even first byte: the rest is the token as a client sends
//! it (header decoding, key choice, algorithm and signature checks). Odd:
//! the rest is a claims set, signed here with the trusted key, so the
//! claims decoding and checks behind the signature are reached too.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use registry::auth::der;
use registry::auth::token::{TokenAuth, TokenConfig};
use ring::signature::Ed25519KeyPair;

struct Setup {
    auth: TokenAuth,
    pair: Ed25519KeyPair,
    header: String,
    _dir: tempfile::TempDir,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, der::pem_encode("PRIVATE KEY", pkcs8.as_ref())).unwrap();
        let config = TokenConfig {
            signing_key: path,
            ..TokenConfig::default()
        };
        let (auth, generated) = TokenAuth::open(&config).unwrap();
        assert!(!generated);
        let kid = auth.signing_key().unwrap().kid().to_owned();
        let header = B64.encode(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#));
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.as_ref()).unwrap();
        Setup {
            auth,
            pair,
            header,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        // Nobody but the key's holder can sign: a fuzzed token never
        // verifies (unless it is one this harness signed, which the cache
        // may still hold).
        if let Ok(v) = s.auth.verify(token) {
            assert!(token.starts_with(&s.header), "{v:?}");
        }
        return;
    }
    let signing_input = format!("{}.{}", s.header, B64.encode(rest));
    let signature = s.pair.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", B64.encode(signature.as_ref()));
    if let Ok(v) = s.auth.verify(&token) {
        // Accepted claims are what the config demands. (Lossy: serde_json
        // does not check the UTF-8 of strings it skips, such as unknown
        // claims, so a token may verify with invalid UTF-8 in one.)
        let claims: serde_json::Value =
            serde_json::from_str(&String::from_utf8_lossy(rest)).unwrap();
        assert_eq!(claims["iss"], "registry-token-issuer");
        let aud = &claims["aud"];
        assert!(
            aud == "registry"
                || aud
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "registry")),
            "{aud}"
        );
        assert!(claims["exp"].as_i64().is_some());
        assert_eq!(claims["sub"].as_str().unwrap_or(""), v.subject);
    }
});
