//! Repository names, tags and manifest references (`RepoName`, `Tag`,
//! `Reference` `FromStr`): what every `/v2/<name>/...` path carries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::oci::name::MAX_NAME_LEN;
use registry::oci::{Reference, RepoName, Tag};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = s.parse::<RepoName>() {
        // Accepted names are stored verbatim and are safe storage keys.
        assert_eq!(name.to_string(), s);
        assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN);
        assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)));
        assert_eq!(name.as_str().parse::<RepoName>().as_ref(), Ok(&name));
    }
    if let Ok(tag) = s.parse::<Tag>() {
        assert_eq!(tag.to_string(), s);
        assert!(!s.is_empty() && s.len() <= 128);
        assert!(!s.contains(['/', ':']) && !s.starts_with(['.', '-']));
    }
    match s.parse::<Reference>() {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            assert_eq!(r.to_string().parse::<Reference>().as_ref(), Ok(&r));
            match &r {
                Reference::Tag(_) => assert!(s.parse::<Tag>().is_ok()),
                Reference::Digest(_) => assert!(s.contains(':')),
            }
        }
        Err(_) => assert!(s.parse::<Tag>().is_err()),
    }
});
