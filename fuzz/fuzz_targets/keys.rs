//! The key and certificate readers: PEM blocks (`rootcertbundle`, key
//! files), SPKI, PKCS#8/SEC1/PKCS#1 private keys, the SPKI inside a
//! certificate, and a token's client-supplied `x5c` chain (base64, then
//! rustls-webpki's path building against a root). First byte even: the
//! rest is text for the PEM and key readers; odd: the rest is an `x5c`
//! chain, its entries separated by newlines, checked against itself as
//! roots and against none. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::auth::{der, x5c};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(blocks) = der::pem_blocks(text) else {
            return;
        };
        for block in &blocks {
            let _ = der::private_key(block);
            if let Ok(key) = der::PublicKey::from_spki(&block.der) {
                // What a key reads as, it writes back readable.
                let again = der::PublicKey::from_spki(&key.spki());
                assert!(again.is_ok(), "{again:?}");
            }
            if let Some(spki) = der::certificate_spki(&block.der) {
                let _ = der::PublicKey::from_spki(spki);
            }
        }
    } else {
        let text = String::from_utf8_lossy(rest);
        let entries: Vec<String> = text.lines().map(str::to_owned).collect();
        let Some(chain) = x5c::decode(&entries) else {
            return;
        };
        assert!(!x5c::verify(&chain, &[]), "a chain verified against no root");
        let _ = x5c::verify(&chain, &chain);
    }
});
