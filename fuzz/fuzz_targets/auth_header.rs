//! `Authorization` values: Basic (`auth::credentials::basic_user`, which is
//! `parse_basic` without the password) and Bearer (`auth::bearer_token`).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use registry::auth::bearer_token;
use registry::auth::credentials::basic_user;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = bearer_token(s) {
        assert!(!token.is_empty() && token.trim() == token && s.contains(token));
        assert!(s.trim()[..6].eq_ignore_ascii_case("bearer"));
    }
    if let Some(user) = basic_user(s) {
        assert!(!user.is_empty() && !user.contains(':'));
        assert!(bearer_token(s).is_none());
    }
    // The same bytes as the credentials of a well-formed Basic header:
    // the user is everything before the first ':'.
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let expected = s.split_once(':').map(|(u, _)| u).filter(|u| !u.is_empty());
    assert_eq!(basic_user(&header).as_deref(), expected);
});
