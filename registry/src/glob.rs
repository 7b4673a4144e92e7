//! The one glob matcher of the configuration: ACL rules, policies,
//! quotas and notification filters all match repository names and tags
//! with it.

/// Glob match over repository names: `*` any run of characters but `/`,
/// `**` any run including `/`, `?` one character but `/`.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // The pattern as an NFA run over the name once: `active[i]` says the
    // first `i` tokens can match the name read so far. Time is
    // O(pattern × name) whatever the stars; no backtracking.
    #[derive(Clone, Copy)]
    enum Tok {
        AnyPath, // `**`: any bytes, `/` included
        Any,     // `*`: any bytes but `/`
        One,     // `?`: one byte but `/`
        Lit(u8),
    }
    let mut toks = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' if pattern.get(i + 1) == Some(&b'*') => {
                toks.push(Tok::AnyPath);
                i += 2;
            }
            b'*' => {
                toks.push(Tok::Any);
                i += 1;
            }
            b'?' => {
                toks.push(Tok::One);
                i += 1;
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    let n = toks.len();
    // Stars match the empty string: a state before one reaches past it.
    let close = |active: &mut Vec<bool>| {
        for i in 0..n {
            if active[i] && matches!(toks[i], Tok::AnyPath | Tok::Any) {
                active[i + 1] = true;
            }
        }
    };
    let mut active = vec![false; n + 1];
    active[0] = true;
    close(&mut active);
    let mut next = vec![false; n + 1];
    for &c in name {
        next.iter_mut().for_each(|a| *a = false);
        let mut any = false;
        for i in 0..n {
            if !active[i] {
                continue;
            }
            match toks[i] {
                Tok::AnyPath => next[i] = true,
                Tok::Any if c != b'/' => next[i] = true,
                Tok::One if c != b'/' => next[i + 1] = true,
                Tok::Lit(l) if l == c => next[i + 1] = true,
                _ => continue,
            }
            any = true;
        }
        if !any {
            return false;
        }
        close(&mut next);
        std::mem::swap(&mut active, &mut next);
    }
    active[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pattern with many stars against a long name that almost matches:
    /// a backtracking matcher tries every way to split the name (hours);
    /// this one reads the name once.
    #[test]
    fn a_many_star_glob_cannot_backtrack_exponentially() {
        let pattern = "**a**a**a**a**a**a**a**a**a**a**a**a**b"
            .as_bytes()
            .to_vec();
        let name = vec![b'a'; 200];
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(glob_match(&pattern, &name));
        });
        let matched = rx
            .recv_timeout(std::time::Duration::from_secs(2))
            .expect("the glob matcher ran for more than 2 s");
        assert!(!matched);
        assert!(glob_match(b"*-*-*-*-*-x", b"a-b-c-d-e-x"));
        assert!(!glob_match(b"*-*-*-*-*-x", b"a-b-c-d-e/x"));
        assert!(glob_match(b"a**b**c", b"a/x/b/y/c"));
        assert!(glob_match(b"***", b"a"));
        assert!(!glob_match(b"", b"a"));
        assert!(glob_match(b"", b""));
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"team-a/**", b"team-a/app"));
        assert!(glob_match(b"team-a/**", b"team-a/x/y"));
        assert!(!glob_match(b"team-a/**", b"team-a"));
        assert!(!glob_match(b"team-a/**", b"team-ab/app"));
        assert!(glob_match(b"team-a/*", b"team-a/app"));
        assert!(!glob_match(b"team-a/*", b"team-a/x/y"));
        assert!(glob_match(b"**", b"anything/at/all"));
        assert!(glob_match(b"*/app", b"x/app"));
        assert!(!glob_match(b"*/app", b"x/y/app"));
        assert!(glob_match(b"lib?", b"lib1"));
        assert!(!glob_match(b"lib?", b"lib"));
        assert!(glob_match(b"exact/name", b"exact/name"));
    }
}
