//! Concurrent GETs of one blob on an object store (S3) cost one backend
//! GET: the first starts a read on its own task that copies the object into
//! a local spool file (`spool`), and every client asking for the same blob
//! while it runs streams from that file, from the start or from its range,
//! as it grows. A pull storm (64 nodes pulling one image) then costs the
//! bucket one copy of each layer instead of 64, in requests and in egress.
//!
//! Local disk does not need it (the page cache already shares the reads),
//! so only object-store backends turn it on. The read task runs to the end
//! even if its first client goes away, since others may be reading it; a
//! read that starts after one finished is a new backend GET (the spool is a
//! meeting point, not a cache). The spool files need local room for the
//! blobs being read at the same time; each is removed when its last reader
//! is done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::spool::{Abandoned, Spool, SpoolWriter};
use crate::oci::Digest;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("blob not found in storage")]
    NotFound,
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("the storage read was abandoned (shutting down)")]
    Abandoned,
}

impl From<Abandoned> for ReadError {
    fn from(_: Abandoned) -> ReadError {
        ReadError::Abandoned
    }
}

pub type SharedRead = Spool<ReadError>;

/// The reads in progress, by digest.
pub struct CoalescedReads {
    inflight: Mutex<HashMap<Digest, Arc<SharedRead>>>,
    /// Private (0700, random name); removed when the reads are dropped.
    dir: tempfile::TempDir,
    /// Requests that joined a read already in progress.
    joined: AtomicU64,
}

impl CoalescedReads {
    /// Spool files go in a new directory under the system's temporary one,
    /// one per storage (several servers may share a process in tests).
    pub fn in_temp_dir() -> std::io::Result<CoalescedReads> {
        Ok(CoalescedReads {
            inflight: Mutex::default(),
            dir: super::spool::private_temp_dir("registry-read-spool-")?,
            joined: AtomicU64::new(0),
        })
    }

    pub fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    /// The read of `digest` in progress, if any.
    pub fn in_progress(&self, digest: &Digest) -> Option<Arc<SharedRead>> {
        let found = self.inflight.lock().unwrap().get(digest).cloned();
        if found.is_some() {
            self.joined.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// The read of `digest` (stored at `key`) in progress, or a new one.
    pub fn join_or_start(
        self: &Arc<Self>,
        store: &Arc<dyn ObjectStore>,
        key: Path,
        digest: &Digest,
    ) -> Arc<SharedRead> {
        let mut map = self.inflight.lock().unwrap();
        if let Some(read) = map.get(digest) {
            self.joined.fetch_add(1, Ordering::Relaxed);
            return read.clone();
        }
        // Plain bytes from storage need no verdict: the last byte is not
        // held back.
        let (read, mut writer) = Spool::create(self.dir.path(), digest.hex(), false);
        map.insert(digest.clone(), read.clone());
        let reads = self.clone();
        let store = store.clone();
        let digest = digest.clone();
        let mine = Arc::downgrade(&read);
        let task = tokio::spawn(async move {
            match copy(store.as_ref(), &key, &mut writer).await {
                Ok(size) => writer.finish(size),
                Err(e) => {
                    if !matches!(e, ReadError::NotFound) {
                        tracing::warn!(key = %key, error = %e, "shared blob read failed");
                    }
                    writer.fail(e);
                }
            }
            let mut map = reads.inflight.lock().unwrap();
            // Only this read's entry: never a later one for the same blob.
            if map
                .get(&digest)
                .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), mine.as_ptr()))
            {
                map.remove(&digest);
            }
        });
        read.set_task(task.abort_handle());
        read
    }
}

async fn copy(
    store: &dyn ObjectStore,
    key: &Path,
    writer: &mut SpoolWriter<ReadError>,
) -> Result<u64, ReadError> {
    let backend = |e: &dyn std::fmt::Display| ReadError::Backend(e.to_string());
    let got = match store.get(key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Err(ReadError::NotFound),
        Err(e) => return Err(backend(&e)),
    };
    let size = got.meta.size;
    writer.start(Some(size)).await.map_err(|e| backend(&e))?;
    let mut body = got.into_stream();
    let mut written = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| backend(&e))?;
        written = writer.append(&chunk).await.map_err(|e| backend(&e))?;
    }
    if written != size {
        return Err(ReadError::Backend(format!(
            "read {written} of {size} bytes of {key}"
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod spool_dir_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Another local user must not read blobs being spooled, nor prepare
    /// the directory in advance: its name is random and its mode 0700.
    #[test]
    fn spool_directories_are_private_and_unpredictable() {
        let a = CoalescedReads::in_temp_dir().unwrap();
        let b = CoalescedReads::in_temp_dir().unwrap();
        for reads in [&a, &b] {
            let dir: &std::path::Path = reads.dir.as_ref();
            let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
            let name = dir.file_name().unwrap().to_str().unwrap();
            assert!(
                !name.contains(&std::process::id().to_string()),
                "{name} is predictable from the pid"
            );
        }
    }
}
