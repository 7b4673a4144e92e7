//! Builds the `object_store` backend the configuration names.

use std::sync::Arc;

use object_store::chunked::ChunkedStore;
use object_store::local::LocalFileSystem;

use super::Storage;
use crate::config;

/// Reads of local files come in pieces of this size; object_store's default
/// (8 KiB) caps blob GETs far below the disk's speed.
const LOCAL_READ_CHUNK: usize = 1024 * 1024;
/// Parts written to local files; small, since memory per upload is bounded by
/// a few of these.
const LOCAL_PART_SIZE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("storage.filesystem.rootdirectory {path}: {message}")]
pub struct BackendError {
    path: String,
    message: String,
}

pub fn open(config: &config::Storage) -> Result<Storage, BackendError> {
    let root = &config.filesystem.rootdirectory;
    let err = |message: String| BackendError {
        path: root.display().to_string(),
        message,
    };
    std::fs::create_dir_all(root).map_err(|e| err(e.to_string()))?;
    let local = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| err(e.to_string()))?
        // Deleting a tag's files must also drop its directory, or tag and
        // catalog listings (which list directories) would still show it.
        .with_automatic_cleanup(true)
        .with_fsync(config.filesystem.fsync);
    let store = ChunkedStore::new(Arc::new(local), LOCAL_READ_CHUNK);
    Ok(Storage::new(Arc::new(store), LOCAL_PART_SIZE))
}
