//! Empty directories on the local-disk backend.
//!
//! Keys are files there, and `LocalFileSystem` removes a file's empty parent
//! directories when it deletes the file. A completed upload, though, renames
//! its chunk into the blob store, which leaves the `chunks/` directory empty
//! with no file left in it to delete: every push used to leave
//! `_uploads/<id>/chunks/` behind for ever (two inodes per blob; thousands
//! after a crash test). S3 has no directories, so none of this applies there.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Removes `dir` and the directories under it if none of them holds
/// anything but empty directories. Returns whether `dir` is gone (a missing
/// `dir` counts as gone). A file anywhere under it keeps the whole tree.
pub fn remove_empty_tree(dir: &Path) -> io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut empty = true;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            empty &= remove_empty_tree(&entry.path())?;
        } else {
            empty = false;
        }
    }
    if !empty {
        return Ok(false);
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        // Something was created in it meanwhile: it is in use.
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
        Err(e) => Err(e),
    }
}

/// Directories that are not repositories' children worth descending into
/// when looking for `_uploads` (blob links and manifests can be many).
const NOT_REPOSITORY_PARTS: [&str; 3] = ["_layers", "_manifests", "_referrers"];

/// Removes, under every repository in `repositories`, upload directories
/// that hold no file and were last changed at least `min_age` ago (older
/// registries and crashes left them; sessions with files are the upload
/// purger's business). Returns how many were removed.
pub fn prune_empty_upload_dirs(repositories: &Path, min_age: Duration) -> io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![repositories.to_path_buf()];
    let now = SystemTime::now();
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            if name == "_uploads" {
                for upload in std::fs::read_dir(entry.path())? {
                    let upload = upload?;
                    let old = upload
                        .metadata()?
                        .modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|age| age >= min_age);
                    if old && upload.file_type()?.is_dir() && remove_empty_tree(&upload.path())? {
                        removed += 1;
                    }
                }
            } else if !NOT_REPOSITORY_PARTS.iter().any(|p| name == *p) {
                stack.push(entry.path());
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_trees_without_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/chunks")).unwrap();
        std::fs::create_dir_all(root.join("b/chunks")).unwrap();
        std::fs::create_dir_all(root.join("b/parts")).unwrap();
        std::fs::write(root.join("b/parts/x"), b"record").unwrap();
        assert!(remove_empty_tree(&root.join("a")).unwrap());
        assert!(!root.join("a").exists());
        assert!(!remove_empty_tree(&root.join("b")).unwrap());
        assert!(root.join("b/parts/x").exists());
        // The empty part of a kept tree is pruned: nothing else can be.
        assert!(!root.join("b/chunks").exists());
        assert!(remove_empty_tree(&root.join("missing")).unwrap());
    }

    #[test]
    fn prunes_empty_upload_dirs_of_nested_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path();
        for upload in ["team/app/_uploads/u1/chunks", "solo/_uploads/u2/chunks"] {
            std::fs::create_dir_all(repos.join(upload)).unwrap();
        }
        std::fs::create_dir_all(repos.join("solo/_uploads/live/parts")).unwrap();
        std::fs::write(repos.join("solo/_uploads/live/startedat"), b"t").unwrap();
        std::fs::create_dir_all(repos.join("solo/_layers/sha256/ab")).unwrap();
        // Younger than the window: kept.
        assert_eq!(
            prune_empty_upload_dirs(repos, Duration::from_secs(3600)).unwrap(),
            0
        );
        assert_eq!(prune_empty_upload_dirs(repos, Duration::ZERO).unwrap(), 2);
        assert!(!repos.join("team/app/_uploads/u1").exists());
        assert!(!repos.join("solo/_uploads/u2").exists());
        assert!(repos.join("solo/_uploads/live/startedat").exists());
        assert!(repos.join("solo/_layers/sha256/ab").exists());
    }
}
