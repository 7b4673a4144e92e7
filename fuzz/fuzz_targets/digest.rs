//! `Digest` `FromStr`: `algorithm:hex` from paths, `?digest=`, `?mount=`
//! and manifest descriptors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::oci::{Algorithm, Digest};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = s.parse::<Digest>() else {
        return;
    };
    // Canonical: the accepted string is exactly what is printed (and used
    // as a storage key), lower-case hex of the algorithm's length.
    assert_eq!(d.to_string(), s);
    assert_eq!(d.to_string().parse::<Digest>().as_ref(), Ok(&d));
    let len = match d.algorithm() {
        Algorithm::Sha256 => 64,
        Algorithm::Sha512 => 128,
    };
    assert_eq!(d.hex().len(), len);
    assert!(d
        .hex()
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(s, format!("{}:{}", d.algorithm().as_str(), d.hex()));
});
