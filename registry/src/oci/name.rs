//! Repository names, tags and manifest references, with the grammar of the
//! distribution spec. Names double as storage key prefixes, so validation here
//! is also what keeps `..` and friends out of storage paths.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// Longest repository name accepted: the limit registry:2 and docker apply.
pub const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    Empty,
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("repository name {0:?} does not match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*(/...)*")]
    Invalid(String),
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !s.split('/').all(valid_component) {
            return Err(NameError::Invalid(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
pub struct TagError(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(TagError(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest. Tags cannot contain `:`,
/// so anything with a colon is judged as a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Tag(#[from] TagError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "team/app/api",
            "a.b_c__d--e/f-g",
            "0",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok} refused");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "../x", "a/../b", "a/./b", "a_", "-a", "a___b", "a..b",
            "a b", "a/B", "a%2fb",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(long.parse::<RepoName>(), Err(NameError::TooLong));
        assert!("a".repeat(MAX_NAME_LEN).parse::<RepoName>().is_ok());
    }

    #[test]
    fn tags_and_references() {
        assert!("latest".parse::<Tag>().is_ok());
        assert!("_x.Y-1".parse::<Tag>().is_ok());
        assert!("a".repeat(128).parse::<Tag>().is_ok());
        for bad in ["", ".a", "-a", "a/b", "a:b", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
        assert!(matches!(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse::<Reference>(),
            Ok(Reference::Digest(_))
        ));
        assert!("sha256:nothex".parse::<Reference>().is_err());
    }
}
