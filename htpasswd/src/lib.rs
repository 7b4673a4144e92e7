//! htpasswd files: parse them, verify passwords against them (argon2id and
//! bcrypt), and edit them the way Apache's `htpasswd` tool does.
//!
//! ```
//! let hash = htpasswd::hash_argon2id("s3cret");
//! let users = htpasswd::Htpasswd::parse(&format!("alice:{hash}\n")).unwrap();
//! assert!(users.verify("alice", "s3cret"));
//! assert!(!users.verify("mallory", "s3cret"));
//! ```
//!
//! Codemap: `file` is the format and the read-only user table the registry
//! uses; `hash` makes, recognises and verifies hashes; `edit` changes one
//! user in a file and writes it atomically, for the CLI.
//!
//! Verification is slow on purpose (tens of milliseconds, ~19 MiB for
//! argon2id); callers serving requests should run it on a blocking pool and
//! cache successful results.

mod edit;
mod file;
mod hash;

pub use edit::{write_atomic, Change, HtpasswdFile};
pub use file::{
    validate_user, Htpasswd, InvalidUser, LoadError, ParseError, ParseErrorKind, UnsupportedEntry,
};
pub use hash::{
    hash_argon2id, hash_bcrypt, verify_hash, HashError, MalformedHash, WorkArea, BCRYPT_COSTS,
    BCRYPT_MAX_PASSWORD_LEN, DEFAULT_BCRYPT_COST,
};
