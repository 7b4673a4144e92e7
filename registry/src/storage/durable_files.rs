//! Whole files and renames on the local disk, with the fsyncs that make
//! them durable and no others.
//!
//! Why not `LocalFileSystem`'s own (with `with_fsync`): it also syncs each
//! directory it creates while that directory is still empty, and after a
//! rename the directory the file left. Neither is needed: a new directory
//! is synced again once the entry that was the reason for creating it is in
//! it, and the directories files are renamed out of are an upload
//! session's, which is not durable anyway (`durability`). Per pushed blob
//! that was 3 of 9 fsyncs (`docs/storage.md` lists the 6 left).
//!
//! Staging names end in `#<digits>`, which `LocalFileSystem` never lists,
//! so a crash in the middle leaves nothing visible.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Result};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object_store::PutPayload;

/// Creates `dir` and any missing parents. With `fsync`, makes each new
/// directory's entry durable: the first ancestor that already existed and
/// every new directory but `dir` itself are synced. `dir` is not: the
/// caller puts an entry into it and syncs it then (`sync_parent`).
pub(super) fn create_dirs(dir: &Path, fsync: bool) -> Result<()> {
    let first_existing = dir.ancestors().find(|a| a.exists()).map(Path::to_owned);
    if first_existing.as_deref() == Some(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if fsync {
        for d in dir.ancestors().skip(1) {
            File::open(d)?.sync_all()?;
            if Some(d) == first_existing.as_deref() {
                break;
            }
        }
    }
    Ok(())
}

/// Makes `path`'s directory entry durable.
pub(super) fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Renames `from` to `to`, creating `to`'s directory if missing; with
/// `fsync`, `to`'s directory is synced after (the file's data must already
/// be on disk: callers flushed it when they wrote it).
pub(super) fn rename_into(from: &Path, to: &Path, fsync: bool) -> Result<()> {
    // A missing source is the caller's error (inner), not a reason to
    // create the target's directory.
    with_dirs(to, fsync, || match std::fs::rename(from, to) {
        Err(e) if e.kind() == ErrorKind::NotFound && !from.exists() => Ok(Err(e)),
        other => other.map(Ok),
    })??;
    if fsync {
        sync_parent(to)?;
    }
    Ok(())
}

/// Tries `op` (which creates an entry in `path`'s directory); while it
/// fails for want of that directory, creates it and tries again. A few
/// times: a repository delete or GC removing empty directories at the same
/// moment can take it away again.
pub(super) fn with_dirs<T>(
    path: &Path,
    fsync: bool,
    mut op: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut tries = 0;
    loop {
        match op() {
            Err(e) if e.kind() == ErrorKind::NotFound && tries < 5 => {
                tries += 1;
                if let Some(dir) = path.parent() {
                    create_dirs(dir, fsync)?;
                }
            }
            other => return other,
        }
    }
}

/// `path` with a staging suffix: `<path>#<digits>`.
pub(super) fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.to_owned().into_os_string();
    name.push(format!("#{}", rand::random::<u64>()));
    PathBuf::from(name)
}

/// Writes `data` as the file `dest`, replacing any file there: into a
/// staging file, flushed (with `fsync`), renamed into place, the directory
/// entry flushed. Readers see the old file or the new one, never a part.
pub(super) fn write_file(dest: &Path, data: &PutPayload, fsync: bool) -> Result<()> {
    let staged = staging_path(dest);
    let file = with_dirs(dest, fsync, || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
    })?;
    let written = (|| {
        let mut at = 0;
        for piece in data.iter() {
            file.write_all_at(piece, at)?;
            at += piece.len() as u64;
        }
        if fsync {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&staged, dest)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    if fsync {
        sync_parent(dest)?;
    }
    Ok(())
}

/// Every file under `dir` (staging files included), relative to it, sorted:
/// what the tests of the local writers compare.
#[cfg(test)]
pub(super) fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::files_under as files;

    #[test]
    fn write_file_creates_directories_and_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/link");
        for (fsync, content) in [(true, "first"), (false, "second, longer"), (true, "3")] {
            write_file(&dest, &PutPayload::from(content.as_bytes().to_vec()), fsync).unwrap();
            assert_eq!(std::fs::read_to_string(&dest).unwrap(), content);
        }
        assert_eq!(files(dir.path()), ["a/b/link"], "no staging file left");
    }

    #[test]
    fn rename_into_creates_the_target_directory_and_keeps_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("_uploads/x/chunk");
        std::fs::create_dir_all(from.parent().unwrap()).unwrap();
        std::fs::write(&from, b"data").unwrap();
        let inode = std::fs::metadata(&from).unwrap().ino();
        let to = dir.path().join("blobs/ab/abcd/data");
        rename_into(&from, &to, true).unwrap();
        assert_eq!(std::fs::metadata(&to).unwrap().ino(), inode);
        assert_eq!(std::fs::read(&to).unwrap(), b"data");
        assert!(!from.exists());
        // A missing source is the caller's error, not a reason to create
        // directories.
        let err = rename_into(&from, &dir.path().join("c/d/data"), true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(!dir.path().join("c").exists());
    }

    /// A directory removed again under the writer (a repository delete
    /// at the same moment) is created again, a few times, then the error
    /// is the caller's.
    #[test]
    fn a_directory_removed_meanwhile_is_created_again_a_few_times() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repo/_layers/link");
        for (removals, succeeds) in [(0, true), (2, true), (5, true), (6, false)] {
            let _ = std::fs::remove_dir_all(dir.path().join("repo"));
            let mut calls = 0;
            let got = with_dirs(&file, true, || {
                calls += 1;
                if calls <= removals {
                    let _ = std::fs::remove_dir_all(dir.path().join("repo"));
                }
                File::create(&file)
            });
            assert_eq!(got.is_ok(), succeeds, "{removals} removals");
            if !succeeds {
                assert_eq!(got.unwrap_err().kind(), ErrorKind::NotFound);
            }
        }
    }

    #[test]
    fn create_dirs_makes_every_missing_level() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("1/2/3");
        create_dirs(&deep, true).unwrap();
        assert!(deep.is_dir());
        // Existing already: nothing to do, no error.
        create_dirs(&deep, true).unwrap();
    }
}
