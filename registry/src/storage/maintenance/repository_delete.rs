//! Deleting a whole repository: its tags, manifests' revision links, blob
//! links, referrers entries and upload sessions. Blob data stays for
//! garbage collection, since other repositories may share it.
//!
//! It takes the garbage collector's lock (one of the two runs at a time,
//! across replicas), writes a "repository being deleted" marker, then lists
//! the repository and deletes what it found, tags first (a crash part way
//! leaves untagged content, never a tag naming a removed manifest). A
//! manifest push into the repository checks the marker after its manifest
//! is visible (as it checks GC's markers, `storage::gc_guard`) and, after
//! writing its tag, checks again that no delete is running and that its
//! manifest is still there, else takes its tag back and is refused. So a
//! concurrent push is either refused, or was complete before the listing
//! (and is deleted with the rest, as if it came first), or comes after the
//! delete; it is never acknowledged and then left naming something gone.

use std::collections::HashSet;
use std::time::Duration;

use crate::oci::RepoName;
use crate::storage::walk::{RepoKey, RepoObject};
use crate::storage::{Storage, StorageError};

/// What was removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub tags: usize,
    pub manifests: usize,
    pub links: usize,
    pub uploads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("repository not found")]
    NotFound,
    #[error(
        "garbage collection (or another repository delete) is running: {owner} since {started}"
    )]
    Busy { owner: String, started: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A lock not refreshed for this long is a dead holder's (as for GC).
const LOCK_STALE_AFTER: Duration = Duration::from_secs(10 * 60);
const LOCK_REFRESH: Duration = Duration::from_secs(60);

pub async fn delete_repository(storage: &Storage, name: &RepoName) -> Result<Removed, DeleteError> {
    let owner = format!("repository delete of {name} (pid {})", std::process::id());
    let lock = match storage.gc_lock(&owner, LOCK_STALE_AFTER).await? {
        Ok(lock) => lock,
        Err(holder) => {
            return Err(DeleteError::Busy {
                owner: holder.owner,
                started: holder.started,
            })
        }
    };
    // A lock not rewritten for LOCK_STALE_AFTER looks abandoned and is
    // broken by the next collector: keep it fresh while a large delete runs.
    let result = {
        let work = delete_locked(storage, name);
        tokio::pin!(work);
        let mut refresh = tokio::time::interval(LOCK_REFRESH);
        refresh.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = refresh.tick() => {
                    if let Err(e) = storage.gc_lock_refresh(&lock).await {
                        tracing::warn!(error = %e, "could not refresh the lock of a repository delete");
                    }
                }
            }
        }
    };
    // The markers and the lock go whatever happened; a failure to remove
    // them leaves them to the next GC run (which clears stale markers).
    let _ = storage.gc_clear_all_pending().await;
    let _ = storage.gc_unlock(lock).await;
    if result.is_ok() {
        storage.remove_repository_dirs(name).await;
    }
    result
}

async fn delete_locked(storage: &Storage, name: &RepoName) -> Result<Removed, DeleteError> {
    storage.mark_repository_deleting(name).await?;
    // Listed after the marker: whatever a push wrote before its checks
    // could see the marker is in this listing.
    let objects = storage.repository_objects(name).await?;
    if objects.is_empty() {
        return Err(DeleteError::NotFound);
    }
    let mut removed = Removed::default();
    let (tags, rest): (Vec<RepoObject>, Vec<RepoObject>) = objects
        .into_iter()
        .partition(|o| matches!(o.kind, RepoKey::TagCurrent(_)));
    removed.tags = storage
        .delete_keys(tags.into_iter().map(|o| o.key).collect())
        .await?;
    let mut keys = Vec::new();
    let mut uploads = HashSet::new();
    for o in rest {
        match &o.kind {
            RepoKey::Upload { id, .. } => {
                uploads.insert(id.clone());
            }
            RepoKey::Revision(_) => removed.manifests += 1,
            RepoKey::Other => continue,
            _ => removed.links += 1,
        }
        keys.push(o.key);
    }
    removed.uploads = uploads.len();
    storage.delete_keys(keys).await?;
    // When its tags were pulled goes with them.
    storage.forget_pull_times(name).await?;
    Ok(removed)
}
