//! (ours) When tags were last pulled, so that the pull-through cache's
//! expiry and retention's `keep_pulled_within` survive a restart and see
//! other replicas' pulls: `docker/registry/v2/_pulls/<name>/_pulls.json`,
//! one object per pulled repository, `{"<tag>": <unix seconds>}`. Written
//! in batches by `crate::pull_log`, never per pull. (`_pulls.json` cannot
//! be a repository name component: those start with a letter or digit.)
//! registry:2, GC and scrub never look there.

use std::collections::BTreeMap;

use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::{is_not_found, Result, Storage};
use crate::oci::RepoName;

/// Tag → when it was last pulled, in seconds since the Unix epoch.
pub type PullTimes = BTreeMap<String, u64>;

fn key(name: &RepoName) -> Path {
    Path::from(format!("docker/registry/v2/_pulls/{name}/_pulls.json"))
}

impl Storage {
    /// What was recorded for `name`; empty when nothing was, or when the
    /// record does not parse (it only orders evictions: a lost record makes
    /// its tags count as pulled now, never loses content).
    pub async fn pull_times(&self, name: &RepoName) -> Result<PullTimes> {
        let bytes = match self.store.get(&key(name)).await {
            Ok(r) => r.bytes().await?,
            Err(e) if is_not_found(&e) => return Ok(PullTimes::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(repository = %name, error = %e, "unreadable pull record; its tags count as never pulled (the cache: as pulled now)");
            PullTimes::new()
        }))
    }

    /// Removes the record of `name` (its last tag went, or the whole
    /// repository).
    pub async fn forget_pull_times(&self, name: &RepoName) -> Result<()> {
        match self.store.delete(&key(name)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the record of `name` (a whole-object put: never half
    /// written).
    pub async fn record_pull_times(&self, name: &RepoName, times: &PullTimes) -> Result<()> {
        let body = serde_json::to_vec(times).expect("a map of strings to numbers serialises");
        self.store.put(&key(name), PutPayload::from(body)).await?;
        Ok(())
    }
}
