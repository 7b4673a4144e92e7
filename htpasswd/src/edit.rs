//! Changing one user in an htpasswd file while keeping every other line, and
//! writing the result so readers never see a half-written file.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use crate::file::{Line, ParseError};

/// An htpasswd file as its lines, for editing. Only the structure is checked
/// (`user:hash`, comments, blanks): other users' hashes are not this
/// editor's business, so a file the registry cannot load can still be fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtpasswdFile {
    lines: Vec<String>,
}

/// What [`HtpasswdFile::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
}

impl HtpasswdFile {
    pub fn new() -> HtpasswdFile {
        HtpasswdFile::default()
    }

    pub fn parse(text: &str) -> Result<HtpasswdFile, ParseError> {
        let lines = text
            .lines()
            .enumerate()
            .map(|(index, raw)| match Line::parse(raw) {
                Ok(_) => Ok(raw.to_owned()),
                Err(kind) => Err(ParseError {
                    line: index + 1,
                    kind,
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(HtpasswdFile { lines })
    }

    /// The hash currently in effect for `user` (the last line naming them).
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find_map(|raw| match Line::parse(raw) {
                Ok(Line::Entry { user: u, hash }) if u == user => Some(hash),
                _ => None,
            })
    }

    /// Sets `user`'s hash: replaces their line in place, or appends one.
    /// Earlier duplicate lines for `user` are dropped, since they were dead.
    pub fn set(&mut self, user: &str, hash: &str) -> Change {
        let entry = format!("{user}:{hash}");
        let Some(last) = self.lines.iter().rposition(|raw| names(raw, user)) else {
            self.lines.push(entry);
            return Change::Added;
        };
        self.lines[last] = entry;
        self.lines = std::mem::take(&mut self.lines)
            .into_iter()
            .enumerate()
            .filter(|(index, raw)| *index == last || !names(raw, user))
            .map(|(_, raw)| raw)
            .collect();
        Change::Updated
    }

    /// Removes every line for `user`; false when there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines.retain(|raw| !names(raw, user));
        self.lines.len() != before
    }
}

fn names(raw: &str, user: &str) -> bool {
    matches!(Line::parse(raw), Ok(Line::Entry { user: u, .. }) if u == user)
}

impl fmt::Display for HtpasswdFile {
    /// The file's text: its lines, each ended by `\n` (a CRLF file comes
    /// out as LF, which every reader of the format accepts).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lines.iter().try_for_each(|line| writeln!(f, "{line}"))
    }
}

/// Replaces `path` with `contents` atomically: writes a temporary file in the
/// same directory, fsyncs it, renames it over `path` and fsyncs the directory.
/// A new file gets mode 0600; an existing file keeps its mode. A symlink is
/// followed, so the file it points to is replaced, not the link.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = match std::fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_owned(),
        Err(e) => return Err(e),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // tempfile creates the file with mode 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(".htpasswd.")
        .tempfile_in(dir)?;
    if let Ok(existing) = std::fs::metadata(&target) {
        temp.as_file().set_permissions(existing.permissions())?;
    }
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|e| e.error)?;
    // Without this the rename itself may not survive a crash.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# users\nalice:$2y$aaa\n\n# ci\nbob:$2y$bbb\r\n";

    #[test]
    fn set_replaces_in_place_and_keeps_other_lines() {
        let mut file = HtpasswdFile::parse(TEXT).unwrap();
        assert_eq!(file.set("alice", "$2y$new"), Change::Updated);
        assert_eq!(
            file.to_string(),
            // Lines end in LF after an edit, CRLF files included.
            "# users\nalice:$2y$new\n\n# ci\nbob:$2y$bbb\n"
        );
    }

    #[test]
    fn set_appends_a_new_user() {
        let mut file = HtpasswdFile::parse("# users\nalice:$2y$aaa").unwrap();
        assert_eq!(file.set("carol", "$2y$ccc"), Change::Added);
        assert_eq!(file.to_string(), "# users\nalice:$2y$aaa\ncarol:$2y$ccc\n");
        assert_eq!(file.hash_of("carol"), Some("$2y$ccc"));
    }

    #[test]
    fn set_collapses_duplicates_onto_the_effective_line() {
        let mut file = HtpasswdFile::parse("alice:old\nbob:b\nalice:newer\n").unwrap();
        assert_eq!(file.hash_of("alice"), Some("newer"));
        file.set("alice", "newest");
        assert_eq!(file.to_string(), "bob:b\nalice:newest\n");
    }

    #[test]
    fn remove_deletes_every_line_of_the_user_only() {
        let mut file = HtpasswdFile::parse("alice:a\n#alice:commented\nbob:b\nalice:a2\n").unwrap();
        assert!(file.remove("alice"));
        assert_eq!(file.to_string(), "#alice:commented\nbob:b\n");
        assert!(!file.remove("alice"));
        assert_eq!(file.hash_of("alice"), None);
    }

    #[test]
    fn parse_checks_structure_with_line_numbers() {
        let err = HtpasswdFile::parse("alice:a\n\nnot an entry\n").unwrap_err();
        assert_eq!(err.line, 3);
        // Malformed hashes are fine here: editing must be able to fix them.
        assert!(HtpasswdFile::parse("alice:$2y$05$short\n").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_creates_0600_and_keeps_existing_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write_atomic(&path, b"one\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"two\n").unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        std::fs::write(&real, "old\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new\n").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");
    }
}
