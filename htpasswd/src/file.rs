//! The htpasswd file format and the in-memory user table the registry checks
//! logins against.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::hash::{Hash, MalformedHash, Scheme, WorkArea};

/// Verified against when a user is unknown and the file has no usable entry,
/// so that such a login costs as much as a real one. Argon2id with the same
/// parameters `hash_argon2id` uses; its password is irrelevant.
const DUMMY_ARGON2ID: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$DUMMYDUMMYDUMMYDUMMYDQ$Pb3uTO0a00vE+5QrSNaE5+XTZtnw8FBf3YxUDGnZsXc";

/// Users and their password hashes, as read from an htpasswd file.
#[derive(Clone)]
pub struct Htpasswd {
    users: BTreeMap<String, Hash>,
    unsupported: Vec<UnsupportedEntry>,
}

/// A user whose hash uses a scheme this crate cannot verify (apr1 MD5,
/// `{SHA}`, crypt, plain text...). Such users cannot log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedEntry {
    pub user: String,
    /// 1-based line number in the file.
    pub line: usize,
    /// Human-readable scheme name, e.g. `"apr1 MD5"`.
    pub scheme: &'static str,
}

/// A line of an htpasswd file that is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// Why a line was rejected. Never includes the line's text, which may hold a
/// plain-text password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("expected `user:hash`, found no ':'")]
    MissingColon,
    #[error("empty user name")]
    EmptyUser,
    #[error("empty password hash")]
    EmptyHash,
    #[error(transparent)]
    MalformedHash(#[from] MalformedHash),
}

/// Why an htpasswd file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

impl Htpasswd {
    /// Parses htpasswd text. Blank lines and `#` comments are skipped, lines
    /// are trimmed (so CRLF files work), and when a user appears twice the
    /// last line wins, as in Apache.
    pub fn parse(text: &str) -> Result<Htpasswd, ParseError> {
        let mut entries: BTreeMap<&str, (usize, Scheme)> = BTreeMap::new();
        for (line, entry) in entries_of(text) {
            let (user, hash) = entry?;
            let scheme = Scheme::classify(hash).map_err(|e| ParseError {
                line,
                kind: e.into(),
            })?;
            entries.insert(user, (line, scheme));
        }
        let mut users = BTreeMap::new();
        let mut unsupported = Vec::new();
        for (user, (line, scheme)) in entries {
            match scheme {
                Scheme::Supported(hash) => {
                    users.insert(user.to_owned(), hash);
                }
                Scheme::Unsupported(scheme) => unsupported.push(UnsupportedEntry {
                    user: user.to_owned(),
                    line,
                    scheme,
                }),
            }
        }
        unsupported.sort_by_key(|entry| entry.line);
        Ok(Htpasswd { users, unsupported })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Htpasswd, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Htpasswd::parse(&text).map_err(|source| LoadError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Whether `password` is `user`'s password.
    ///
    /// Constant-ish time: an unknown user still costs one hash verification
    /// against a dummy hash so timing does not reveal which users exist. The
    /// dummy is the first user's hash, so this holds as long as all users
    /// share one scheme and cost, which is what the CLI writes.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.verify_in(user, password, &mut WorkArea::new())
    }

    /// [`verify`](Self::verify), with argon2 working in `area` (reused by
    /// the caller across verifications) instead of in memory of its own.
    pub fn verify_in(&self, user: &str, password: &str, area: &mut WorkArea) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify_in(password, area),
            None => {
                std::hint::black_box(self.dummy().verify_in(password, area));
                false
            }
        }
    }

    fn dummy(&self) -> &Hash {
        static DUMMY: OnceLock<Hash> = OnceLock::new();
        self.users.values().next().unwrap_or_else(|| {
            DUMMY.get_or_init(|| match Scheme::classify(DUMMY_ARGON2ID) {
                Ok(Scheme::Supported(hash)) => hash,
                other => unreachable!("dummy hash must parse: {other:?}"),
            })
        })
    }

    /// Whether `user` has a hash we can verify.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Users with verifiable hashes, in sorted order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Number of users with verifiable hashes.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Lines with hash schemes we cannot verify (apr1 MD5, {SHA}, crypt,
    /// plain): kept out of the map, reported here in file order so callers
    /// can warn.
    pub fn unsupported(&self) -> &[UnsupportedEntry] {
        &self.unsupported
    }
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users)
            .field("unsupported", &self.unsupported)
            .finish()
    }
}

/// Why a user name cannot be written to an htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUser {
    #[error("user name is empty")]
    Empty,
    #[error("user name is longer than 255 bytes")]
    TooLong,
    #[error("user name must not contain ':'")]
    Colon,
    #[error("user name must not contain control characters")]
    Control,
    #[error("user name must not start with '#' or start or end with white space")]
    Unreadable,
}

/// Checks that `user` survives a round trip through the file format: a ':'
/// would split the line, a newline would forge another line, and a leading
/// '#' or surrounding spaces would be read back as a comment or trimmed.
/// 255 bytes is Apache's limit.
pub fn validate_user(user: &str) -> Result<(), InvalidUser> {
    if user.is_empty() {
        Err(InvalidUser::Empty)
    } else if user.len() > 255 {
        Err(InvalidUser::TooLong)
    } else if user.contains(':') {
        Err(InvalidUser::Colon)
    } else if user.chars().any(char::is_control) {
        Err(InvalidUser::Control)
    } else if user.starts_with('#') || user.trim() != user {
        Err(InvalidUser::Unreadable)
    } else {
        Ok(())
    }
}

/// One line of the file, by what it means.
pub(crate) enum Line<'a> {
    /// Blank or comment.
    Ignored,
    Entry {
        user: &'a str,
        hash: &'a str,
    },
}

impl<'a> Line<'a> {
    pub(crate) fn parse(raw: &'a str) -> Result<Line<'a>, ParseErrorKind> {
        // Apache trims each line too (ap_cfg_getline), which also drops a CR.
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(Line::Ignored);
        }
        let (user, rest) = line.split_once(':').ok_or(ParseErrorKind::MissingColon)?;
        // Like Apache's mod_authn_file, anything after a second ':' is not
        // part of the hash.
        let hash = rest.split(':').next().unwrap_or_default();
        if user.is_empty() {
            Err(ParseErrorKind::EmptyUser)
        } else if hash.is_empty() {
            Err(ParseErrorKind::EmptyHash)
        } else {
            Ok(Line::Entry { user, hash })
        }
    }
}

/// The `user:hash` entries of `text` with their 1-based line numbers.
fn entries_of(text: &str) -> impl Iterator<Item = (usize, Result<(&str, &str), ParseError>)> + '_ {
    text.lines().enumerate().filter_map(|(index, raw)| {
        let line = index + 1;
        match Line::parse(raw) {
            Ok(Line::Ignored) => None,
            Ok(Line::Entry { user, hash }) => Some((line, Ok((user, hash)))),
            Err(kind) => Some((line, Err(ParseError { line, kind }))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash_argon2id, hash_bcrypt};

    const BCRYPT_U_U: &str = "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

    #[test]
    fn parses_comments_blank_lines_and_crlf() {
        let argon = hash_argon2id("alice-pw");
        let text = format!(
            "# registry users\r\n\r\nalice:{argon}\r\n   \n  # indented comment\nbob:{BCRYPT_U_U}\r\n"
        );
        let file = Htpasswd::parse(&text).unwrap();
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(file.len(), 2);
        assert!(!file.is_empty());
        assert!(file.verify("alice", "alice-pw"));
        assert!(file.verify("bob", "U*U"));
        assert!(file.unsupported().is_empty());
    }

    #[test]
    fn can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Htpasswd>();
    }

    #[test]
    fn empty_text_has_no_users_and_still_rejects() {
        let file = Htpasswd::parse("\n# nothing\n").unwrap();
        assert!(file.is_empty());
        assert_eq!(file.len(), 0);
        assert!(!file.verify("alice", "anything"));
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let cases = [
            ("# ok\nalice\n", 2, ParseErrorKind::MissingColon),
            ("\n\n:hash\n", 3, ParseErrorKind::EmptyUser),
            ("alice:\n", 1, ParseErrorKind::EmptyHash),
        ];
        for (text, line, kind) in cases {
            assert_eq!(
                Htpasswd::parse(text).unwrap_err(),
                ParseError { line, kind },
                "{text:?}"
            );
        }
        let err = Htpasswd::parse(&format!("bob:{BCRYPT_U_U}\nalice:$2y$05$short\n")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(matches!(err.kind, ParseErrorKind::MalformedHash(_)));
        assert!(
            err.to_string().starts_with("line 2: malformed bcrypt hash"),
            "{err}"
        );
    }

    #[test]
    fn error_messages_never_echo_the_line() {
        let err = Htpasswd::parse("hunter2-no-colon\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn duplicate_user_last_line_wins() {
        let first = hash_bcrypt("first", 4).unwrap();
        let second = hash_bcrypt("second", 4).unwrap();
        let file = Htpasswd::parse(&format!("alice:{first}\nalice:{second}\n")).unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", "second"));
        assert!(!file.verify("alice", "first"));
    }

    #[test]
    fn duplicate_user_last_line_wins_across_supported_and_unsupported() {
        let text = format!("alice:{BCRYPT_U_U}\nalice:plain\nbob:plain\nbob:{BCRYPT_U_U}\n");
        let file = Htpasswd::parse(&text).unwrap();
        assert!(!file.contains("alice"));
        assert!(file.contains("bob"));
        assert_eq!(
            file.unsupported(),
            [UnsupportedEntry {
                user: "alice".into(),
                line: 2,
                scheme: "plain"
            }]
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_are_rejected() {
        let file = Htpasswd::parse(&format!("bob:{BCRYPT_U_U}\n")).unwrap();
        assert!(!file.verify("bob", "U*U*"));
        assert!(!file.verify("bob", ""));
        // The dummy verification is against bob's hash; bob's password must
        // still not let an unknown user in.
        assert!(!file.verify("carol", "U*U"));
        assert!(!file.contains("carol"));
    }

    #[test]
    fn unknown_user_costs_a_verification() {
        let hash = hash_bcrypt("pw", 8).unwrap();
        let file = Htpasswd::parse(&format!("bob:{hash}\n")).unwrap();
        // Median of three so one scheduling hiccup cannot decide the test.
        let median = |user: &str| {
            let mut times: Vec<_> = (0..3)
                .map(|_| {
                    let start = std::time::Instant::now();
                    assert!(!file.verify(user, "wrong"));
                    start.elapsed()
                })
                .collect();
            times.sort();
            times[1]
        };
        let known = median("bob");
        let unknown = median("nobody");
        assert!(
            unknown * 3 > known,
            "unknown {unknown:?} vs known {known:?}"
        );
    }

    #[test]
    fn unsupported_schemes_are_reported_not_loaded() {
        let text = format!(
            "apr:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\n\
             sha:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
             # comment\n\
             des:rqXexS6ZhobKA\n\
             plain:secret\n\
             ok:{BCRYPT_U_U}\n"
        );
        let file = Htpasswd::parse(&text).unwrap();
        assert_eq!(file.users().collect::<Vec<_>>(), ["ok"]);
        let reported: Vec<_> = file
            .unsupported()
            .iter()
            .map(|e| (e.user.as_str(), e.line, e.scheme))
            .collect();
        assert_eq!(
            reported,
            [
                ("apr", 1, "apr1 MD5"),
                ("sha", 2, "SHA-1"),
                ("des", 4, "crypt"),
                ("plain", 5, "plain")
            ]
        );
        assert!(!file.verify("plain", "secret"));
    }

    #[test]
    fn text_after_a_second_colon_is_ignored() {
        let file = Htpasswd::parse(&format!("bob:{BCRYPT_U_U}:Bob Example\n")).unwrap();
        assert!(file.verify("bob", "U*U"));
    }

    #[test]
    fn dummy_hash_matches_the_default_argon2id_cost() {
        let fresh = hash_argon2id("x");
        let params = |h: &str| h.split('$').nth(3).map(str::to_owned);
        assert_eq!(params(DUMMY_ARGON2ID), params(&fresh));
        assert!(matches!(
            Scheme::classify(DUMMY_ARGON2ID),
            Ok(Scheme::Supported(Hash::Argon2(_)))
        ));
    }

    #[test]
    fn load_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.htpasswd");
        let err = Htpasswd::load(&missing).unwrap_err();
        assert!(matches!(err, LoadError::Io { .. }));
        assert!(err.to_string().contains("missing.htpasswd"), "{err}");

        let bad = dir.path().join("bad.htpasswd");
        std::fs::write(&bad, "alice\n").unwrap();
        let err = Htpasswd::load(&bad).unwrap_err();
        assert!(matches!(err, LoadError::Parse { .. }));
        assert!(err.to_string().contains("bad.htpasswd: line 1"), "{err}");

        let good = dir.path().join("good.htpasswd");
        std::fs::write(&good, format!("bob:{BCRYPT_U_U}\n")).unwrap();
        assert!(Htpasswd::load(&good).unwrap().verify("bob", "U*U"));
    }

    #[test]
    fn validates_user_names() {
        assert_eq!(validate_user("alice"), Ok(()));
        assert_eq!(validate_user("ci-bot@example.com"), Ok(()));
        assert_eq!(validate_user(""), Err(InvalidUser::Empty));
        assert_eq!(validate_user("a:b"), Err(InvalidUser::Colon));
        assert_eq!(validate_user("a\nb"), Err(InvalidUser::Control));
        assert_eq!(validate_user("#a"), Err(InvalidUser::Unreadable));
        assert_eq!(validate_user(" a"), Err(InvalidUser::Unreadable));
        assert_eq!(validate_user(&"a".repeat(256)), Err(InvalidUser::TooLong));
    }
}
