//! htpasswd text: `Htpasswd::parse` (the registry's user table) and
//! `HtpasswdFile::parse` (the CLI's editor), line by line.
#![no_main]

use htpasswd::{Htpasswd, HtpasswdFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = HtpasswdFile::parse(text);
    match Htpasswd::parse(text) {
        Ok(users) => {
            // The table's structure check is the editor's, plus the hash.
            let file = file.expect("Htpasswd accepted what HtpasswdFile refused");
            for user in users.users() {
                assert!(!user.is_empty() && !user.contains(':'));
                assert!(users.contains(user));
                assert!(file.hash_of(user).is_some(), "{user:?}");
            }
            for entry in users.unsupported() {
                assert!(!users.contains(&entry.user));
                assert!(entry.line >= 1 && entry.line <= text.lines().count());
            }
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count());
            // Errors never echo the line (it may hold a password).
            let line = text.lines().nth(e.line - 1).unwrap().trim();
            if line.len() >= 8 {
                assert!(!e.to_string().contains(line), "{e}");
            }
        }
    }
    if let Ok(file) = HtpasswdFile::parse(text) {
        // What the editor writes, it reads back.
        let again = HtpasswdFile::parse(&file.to_string()).expect("re-parse");
        assert_eq!(again.to_string(), file.to_string());
    }
});
