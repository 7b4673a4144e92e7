//! What lets garbage collection run while the registry serves pushes: a
//! lock (one collector at a time, across processes and replicas), "pending"
//! markers, and a manifest push that checks them after it became visible.
//!
//! The race: a push checks that the blobs its manifest names exist, the
//! collector (which has not seen the manifest yet) removes one of them, then
//! the manifest is written and acknowledged, naming a missing blob. The
//! collector therefore works in this order:
//!
//! 1. take the lock, list everything, mark what is reachable;
//! 2. write `_gc/pending/<digest>` for every digest it is about to remove
//!    (blob data, or a repository link to it);
//! 3. list again and rescue whatever a manifest, tag or link that appeared
//!    since step 1 reaches;
//! 4. delete, then remove the markers and the lock.
//!
//! and a manifest push, after writing the manifest and its revision link but
//! before writing the tag and answering 201, checks (in this order) that no
//! marker names anything it references while the lock is held, and that
//! everything it references still exists. A manifest written before the
//! listing of step 3 is seen there; one written after it finds the marker
//! (step 2 came first) or, once the collector finished, the missing blob.
//! Either way nothing is acknowledged that the collector removes.

use std::time::{Duration, SystemTime};

use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use super::{is_not_found, layout, Result, Storage};
use crate::oci::{Digest, RepoName, Tag};

/// Who holds the garbage collection lock (its content).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub owner: String,
    pub started: String,
}

/// A held lock; `Storage::gc_unlock` releases it.
#[derive(Debug)]
pub struct GcLock {
    info: LockInfo,
}

/// Something the collector announced it is about to remove.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pending {
    /// A blob's content (shared by every repository).
    Blob(Digest),
    /// A repository's links to a digest (`_layers`, revision, ...).
    Link(RepoName, Digest),
}

impl Pending {
    fn key(&self) -> object_store::path::Path {
        match self {
            Pending::Blob(d) => layout::gc_pending_blob(d),
            Pending::Link(name, d) => layout::gc_pending_link(name, d),
        }
    }
}

/// Why a manifest push was refused after the fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutConflict {
    /// Garbage collection is removing this digest right now.
    BeingCollected(Digest),
    /// A blob (or child manifest) the manifest references is gone.
    Missing(Digest),
}

impl Storage {
    /// Takes the collector lock. A lock not refreshed for `stale_after` (its
    /// holder died) is broken. Returns the current holder when it is taken.
    pub async fn gc_lock(
        &self,
        owner: &str,
        stale_after: Duration,
    ) -> Result<Result<GcLock, LockInfo>> {
        let info = LockInfo {
            owner: owner.to_owned(),
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let body = serde_json::to_vec(&info).expect("lock info serializes");
        for _ in 0..2 {
            let put = self
                .store
                .put_opts(
                    &layout::gc_lock(),
                    PutPayload::from(body.clone()),
                    PutMode::Create.into(),
                )
                .await;
            match put {
                Ok(_) => return Ok(Ok(GcLock { info })),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let meta = match self.store.head(&layout::gc_lock()).await {
                Ok(m) => m,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let age = SystemTime::now()
                .duration_since(SystemTime::from(meta.last_modified))
                .unwrap_or_default();
            if age < stale_after {
                let holder = match self.store.get(&layout::gc_lock()).await {
                    Ok(r) => serde_json::from_slice(&r.bytes().await?).ok(),
                    Err(_) => None,
                };
                return Ok(Err(holder.unwrap_or(LockInfo {
                    owner: "unknown".into(),
                    started: "unknown".into(),
                })));
            }
            tracing::warn!(age = ?age, "breaking a stale garbage collection lock");
            self.delete_if_exists(&layout::gc_lock()).await?;
        }
        Ok(Err(LockInfo {
            owner: "unknown (lock contended)".into(),
            started: "unknown".into(),
        }))
    }

    /// Rewrites the lock so that it does not look stale during a long run.
    pub async fn gc_lock_refresh(&self, lock: &GcLock) -> Result<()> {
        let body = serde_json::to_vec(&lock.info).expect("lock info serializes");
        self.store
            .put(&layout::gc_lock(), PutPayload::from(body))
            .await?;
        Ok(())
    }

    pub async fn gc_unlock(&self, lock: GcLock) -> Result<()> {
        let _ = lock;
        self.delete_if_exists(&layout::gc_lock()).await?;
        Ok(())
    }

    /// Marks digests as about to be removed (see the module comment).
    pub async fn gc_mark_pending(&self, items: &[Pending]) -> Result<()> {
        use futures::StreamExt;
        let keys: Vec<_> = items.iter().map(Pending::key).collect();
        let store = self.store.clone();
        let mut writes = futures::stream::iter(keys.into_iter().map(move |key| {
            let store = store.clone();
            async move { store.put(&key, PutPayload::from_static(b"1")).await }
        }))
        .buffer_unordered(16);
        while let Some(r) = writes.next().await {
            r?;
        }
        Ok(())
    }

    pub async fn gc_clear_pending(&self, items: &[Pending]) -> Result<()> {
        self.delete_keys(items.iter().map(Pending::key).collect())
            .await
            .map(|_| ())
    }

    /// Removes every marker (left by a collector that died, or at the end of
    /// a run).
    pub async fn gc_clear_all_pending(&self) -> Result<()> {
        self.delete_prefix(&layout::gc_pending_dir()).await
    }

    /// The first of `digests` a running collector is about to remove from
    /// `name` (its content, or the repository's links to it).
    pub async fn gc_pending_among(
        &self,
        name: &RepoName,
        digests: &[Digest],
    ) -> Result<Option<Digest>> {
        if !self.exists(&layout::gc_lock()).await? {
            return Ok(None);
        }
        // The whole repository is being deleted: everything in it goes.
        if self.exists(&layout::gc_pending_repository(name)).await? {
            return Ok(digests.first().cloned());
        }
        for d in digests {
            if self.exists(&layout::gc_pending_blob(d)).await?
                || self.exists(&layout::gc_pending_link(name, d)).await?
            {
                return Ok(Some(d.clone()));
            }
        }
        Ok(None)
    }

    /// Stores a manifest like `put_manifest`, but acknowledges it (writes the
    /// tag and returns Ok(Ok)) only after checking, with the manifest
    /// visible, that garbage collection is not removing anything it
    /// references and that all of it still exists. On a conflict the
    /// manifest is taken back out of the repository (unless it was there
    /// before) and nothing is tagged.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_manifest_checked(
        &self,
        name: &RepoName,
        d: &Digest,
        body: bytes::Bytes,
        subject: Option<&Digest>,
        tag: Option<&Tag>,
        blobs: &[Digest],
        children: &[Digest],
    ) -> Result<Result<(), PutConflict>> {
        let existed = self.manifest_in_repo(name, d).await?;
        self.put_manifest(name, d, body, subject, None).await?;
        let conflict = self.put_conflict(name, d, blobs, children).await?;
        if let Some(conflict) = conflict {
            if !existed {
                if let Some(subject) = subject {
                    self.delete_if_exists(&layout::referrer_link(name, subject, d))
                        .await?;
                }
                self.delete_if_exists(&layout::revision_link(name, d))
                    .await?;
            }
            return Ok(Err(conflict));
        }
        if let Some(tag) = tag {
            self.write_link(&layout::tag_index_link(name, tag, d), d)
                .await?;
            self.write_link(&layout::tag_current_link(name, tag), d)
                .await?;
        }
        Ok(Ok(()))
    }

    /// Points `tag` at `d` (already stored in `name`): its index link,
    /// then its current link, the order `put_manifest_checked` writes them.
    pub async fn tag_manifest(&self, name: &RepoName, tag: &Tag, d: &Digest) -> Result<()> {
        self.write_link(&layout::tag_index_link(name, tag, d), d)
            .await?;
        self.write_link(&layout::tag_current_link(name, tag), d)
            .await
    }

    async fn put_conflict(
        &self,
        name: &RepoName,
        d: &Digest,
        blobs: &[Digest],
        children: &[Digest],
    ) -> Result<Option<PutConflict>> {
        // Markers first, existence second: see the module comment.
        let mut all: Vec<Digest> = vec![d.clone()];
        all.extend(blobs.iter().cloned());
        all.extend(children.iter().cloned());
        if let Some(d) = self.gc_pending_among(name, &all).await? {
            return Ok(Some(PutConflict::BeingCollected(d)));
        }
        if self.blob_size(d).await?.is_none() {
            return Ok(Some(PutConflict::Missing(d.clone())));
        }
        for b in blobs {
            if self.repo_blob_size(name, b).await?.is_none() {
                return Ok(Some(PutConflict::Missing(b.clone())));
            }
        }
        for c in children {
            if !self.manifest_in_repo(name, c).await? || self.blob_size(c).await?.is_none() {
                return Ok(Some(PutConflict::Missing(c.clone())));
            }
        }
        Ok(None)
    }
}
