//! Upload chunks continued in place, on the local disk.
//!
//! Why: a client that pushes a blob in several PATCHes (16 MiB chunks, say)
//! left one chunk file per PATCH, and the closing PUT copied them all into
//! the blob, so every byte was written twice (`bench/registry.sh`: a
//! chunked push of 512 MiB at a third of a streamed one). On the local disk
//! a PATCH instead writes on at the end of the previous PATCH's file, so the
//! whole blob ends up in one file and the PUT renames it, as it renames the
//! chunk of a single streamed PATCH.
//!
//! Who writes where (`uploads.rs` keeps to this): a PATCH continues a file
//! only after creating the session's claim on its starting offset
//! (`_uploads/<id>/claims/<offset>`, created only if absent, so one writer
//! per offset across processes), and only at or after that offset; the
//! bytes before it, which the part records name, are never written again.
//! A PATCH that finds the claim taken (a racing PATCH, or one that died
//! holding it) writes a new chunk file, as before. A PATCH that fails gives
//! its claim back once its last write has ended, so the client's retry
//! continues the file; the closing PUT takes the claim on the final offset
//! before it renames the file, so no PATCH can still be writing into it.
//! Everything past the recorded end (what a failed PATCH left) is cut off
//! before the rename.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::direct_io::DataFile;
use super::durable_files;

/// Where chunk files are and how to write them.
#[derive(Debug, Clone)]
pub struct ChunkFiles {
    root: PathBuf,
    /// The store writes with `O_DIRECT` (`direct_io`): so do continuations.
    direct: bool,
    fsync: bool,
}

fn blocking_failed(e: tokio::task::JoinError) -> std::io::Error {
    std::io::Error::other(e)
}

impl ChunkFiles {
    pub fn new(root: PathBuf, direct: bool, fsync: bool) -> ChunkFiles {
        ChunkFiles {
            root,
            direct,
            fsync,
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Opens the chunk file `key` to write more of it.
    pub async fn open(&self, key: &str) -> std::io::Result<Arc<DataFile>> {
        let (path, direct) = (self.path(key), self.direct);
        tokio::task::spawn_blocking(move || DataFile::open(&path, direct).map(Arc::new))
            .await
            .map_err(blocking_failed)?
    }

    /// Makes what was written into `file` durable (with fsync on), before
    /// a part record names it.
    pub async fn sync(&self, file: Arc<DataFile>) -> std::io::Result<()> {
        if !self.fsync {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || file.sync())
            .await
            .map_err(blocking_failed)?
    }

    /// Makes the chunk file `key` the object `dest`: cut to `len` bytes if
    /// it is longer (a failed PATCH wrote past the last recorded end),
    /// renamed into place, durably. One trip to the blocking pool (a
    /// blob's closing PUT made a round trip per step: `uploads`).
    pub async fn publish(&self, key: &str, len: u64, dest: &str) -> std::io::Result<()> {
        let (path, dest, fsync) = (self.path(key), self.path(dest), self.fsync);
        tokio::task::spawn_blocking(move || {
            truncate(&path, len, fsync)?;
            durable_files::rename_into(&path, &dest, fsync)
        })
        .await
        .map_err(blocking_failed)?
    }

    /// Removes the directory `key` and everything in it (an upload session
    /// that ended) in one trip to the blocking pool; a missing one is gone
    /// already. Not synced: sessions are not durable (`durability`).
    pub async fn remove_tree(&self, key: &str) -> std::io::Result<()> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
        .map_err(blocking_failed)?
    }
}

fn truncate(path: &Path, len: u64, fsync: bool) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() > len {
        file.set_len(len)?;
        if fsync {
            file.sync_all()?;
        }
    }
    Ok(())
}
