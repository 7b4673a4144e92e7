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
            if line.len() >= 24 {
                assert!(!e.to_string().contains(line), "{e}");
            }
        }
    }
    if let Ok(file) = HtpasswdFile::parse(text) {
        // What the editor writes, it reads back: the same lines, up to the
        // trimming every reader does. (Not byte for byte: `lines()` keeps a
        // CR that no LF follows, so a line ending in CRs loses one per
        // write and read.)
        let written = file.to_string();
        HtpasswdFile::parse(&written).expect("re-parse");
        assert!(written
            .lines()
            .map(str::trim)
            .eq(text.lines().map(str::trim)));
        match (Htpasswd::parse(text), Htpasswd::parse(&written)) {
            (Ok(a), Ok(b)) => assert!(a.users().eq(b.users())),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} became {b:?}"),
        }
    }
});
