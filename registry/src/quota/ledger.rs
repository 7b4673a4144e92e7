//! (ours) What quotas count, kept in storage so that every replica sees
//! it and it outlives a restart (`crate::quota` explains the scheme):
//!
//! ```text
//! docker/registry/v2/_quota/<scope>/
//!   _blobs/<alg>/<hex>/<size>      the blob is counted in the scope (created only if absent)
//!   _used/<process id>             bytes that process added (+) or removed (-), decimal
//!   _ready                         the scope's blobs were counted once from the links
//! <scope>: namespace/<name> | repository/<name> | total
//! docker/registry/v2/_quota/_uploads/<name>/<upload id>/<bytes>
//!                                  an unfinished upload holds that many bytes (a
//!                                  reservation, counted in every scope of <name>)
//! ```
//!
//! A reservation is rewritten (the new size created, smaller ones removed)
//! as its session grows, and removed with the session (finished,
//! cancelled, purged).
//!
//! Names are repository names, whose components never start with `_`,
//! so `namespace/team/_blobs` cannot be read as namespace `team/_blobs`.
//! registry:2, GC and scrub never look here.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutPayload};

use crate::oci::{Digest, RepoName};
use crate::quota::rules::ScopeKey;
use crate::storage::walk::RepoKey;
use crate::storage::{is_not_found, layout, Result, Storage};

fn scope_root(scope: &ScopeKey) -> String {
    match scope {
        ScopeKey::Namespace(n) => format!("docker/registry/v2/_quota/namespace/{n}"),
        ScopeKey::Repository(n) => format!("docker/registry/v2/_quota/repository/{n}"),
        ScopeKey::Total => "docker/registry/v2/_quota/total".into(),
    }
}

fn blob_key(scope: &ScopeKey, d: &Digest, size: u64) -> Path {
    Path::from(format!(
        "{}/_blobs/{}/{}/{size}",
        scope_root(scope),
        d.algorithm().as_str(),
        d.hex()
    ))
}

const RESERVATIONS: &str = "docker/registry/v2/_quota/_uploads";

fn reservation_dir(name: &RepoName, id: &str) -> Path {
    Path::from(format!("{RESERVATIONS}/{name}/{id}"))
}

/// The bytes an unfinished upload holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub repository: String,
    pub upload: String,
    pub bytes: u64,
}

fn counter_key(scope: &ScopeKey, process: &str) -> Path {
    Path::from(format!("{}/_used/{process}", scope_root(scope)))
}

/// One process's running sum in a scope.
#[derive(Debug, Clone)]
pub struct Counter {
    pub process: String,
    pub bytes: i64,
    pub modified: SystemTime,
}

impl Storage {
    /// Whether `d` is counted in `scope`.
    pub async fn quota_counts(&self, scope: &ScopeKey, d: &Digest, size: u64) -> Result<bool> {
        self.exists(&blob_key(scope, d, size)).await
    }

    /// Counts `d` in `scope` unless it is already: true when this call
    /// did (and so must add its size), false when it was counted.
    pub async fn quota_claim(&self, scope: &ScopeKey, d: &Digest, size: u64) -> Result<bool> {
        self.create_once(&blob_key(scope, d, size), PutPayload::from_static(b"1"))
            .await
    }

    /// Stops counting `d` in `scope`: true when this call removed it (and
    /// so must subtract its size).
    pub async fn quota_release(&self, scope: &ScopeKey, d: &Digest, size: u64) -> Result<bool> {
        self.delete_if_exists(&blob_key(scope, d, size)).await
    }

    /// Every blob counted in `scope`, with its size.
    pub async fn quota_blobs(&self, scope: &ScopeKey) -> Result<BTreeMap<Digest, u64>> {
        let prefix = Path::from(format!("{}/_blobs", scope_root(scope)));
        let depth = prefix.parts().count();
        let mut out = BTreeMap::new();
        for meta in self.list_all(&prefix).await? {
            let parts: Vec<String> = meta
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_string())
                .collect();
            if let [alg, hex, size] = parts.as_slice() {
                if let (Ok(d), Ok(size)) = (format!("{alg}:{hex}").parse(), size.parse()) {
                    out.insert(d, size);
                }
            }
        }
        Ok(out)
    }

    /// Every process's sum in `scope`. A counter that does not parse counts
    /// as 0 (and is reported by `registry usage` as drift).
    pub async fn quota_counters(&self, scope: &ScopeKey) -> Result<Vec<Counter>> {
        let prefix = Path::from(format!("{}/_used", scope_root(scope)));
        let metas: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            let Some(process) = meta.location.filename().map(str::to_owned) else {
                continue;
            };
            let bytes = match self.store.get(&meta.location).await {
                Ok(r) => r.bytes().await?,
                // Folded into another counter since the listing.
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(Counter {
                process,
                bytes: std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0),
                modified: SystemTime::from(meta.last_modified),
            });
        }
        Ok(out)
    }

    /// Replaces this process's sum in `scope` (a whole-object put).
    pub async fn quota_write_counter(
        &self,
        scope: &ScopeKey,
        process: &str,
        bytes: i64,
    ) -> Result<()> {
        self.store
            .put(
                &counter_key(scope, process),
                PutPayload::from(bytes.to_string().into_bytes()),
            )
            .await?;
        Ok(())
    }

    pub async fn quota_delete_counter(&self, scope: &ScopeKey, process: &str) -> Result<()> {
        self.delete_if_exists(&counter_key(scope, process)).await?;
        Ok(())
    }

    pub async fn quota_is_ready(&self, scope: &ScopeKey) -> Result<bool> {
        self.exists(&Path::from(format!("{}/_ready", scope_root(scope))))
            .await
    }

    pub async fn quota_mark_ready(&self, scope: &ScopeKey) -> Result<()> {
        self.store
            .put(
                &Path::from(format!("{}/_ready", scope_root(scope))),
                PutPayload::from_static(b"1"),
            )
            .await?;
        Ok(())
    }

    /// The scopes of per-repository rules that hold anything, by
    /// repository name (for passes over every scope).
    pub async fn quota_repository_scopes(&self) -> Result<Vec<String>> {
        let prefix = Path::from("docker/registry/v2/_quota/repository");
        let depth = prefix.parts().count();
        let mut names: Vec<String> = self
            .list_all(&prefix)
            .await?
            .iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .parts()
                    .skip(depth)
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let end = parts.iter().position(|p| p.starts_with('_'))?;
                Some(parts[..end].join("/"))
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The blobs the repositories of `scope` link (`_layers`: layers,
    /// configs and manifests), each once.
    pub async fn scope_links(
        &self,
        scope: &ScopeKey,
    ) -> Result<std::collections::BTreeSet<Digest>> {
        let objects = match scope {
            ScopeKey::Total => self.walk_repositories().await?.objects,
            ScopeKey::Repository(name) => match name.parse::<RepoName>() {
                Ok(name) => self.repository_objects(&name).await?,
                Err(_) => Vec::new(),
            },
            ScopeKey::Namespace(ns) => {
                let prefix = Path::from(format!("{}/{ns}", layout::repositories_root()));
                self.classified_under(&prefix).await?
            }
        };
        Ok(objects
            .into_iter()
            .filter(|o| scope.contains(o.repo.as_str()))
            .filter_map(|o| match o.kind {
                RepoKey::Layer(d) => Some(d),
                _ => None,
            })
            .collect())
    }

    /// Records that the upload `id` of `name` holds `bytes` (it only
    /// grows: smaller records of it are removed, larger ones kept).
    pub async fn quota_reserve(&self, name: &RepoName, id: &str, bytes: u64) -> Result<()> {
        let dir = reservation_dir(name, id);
        self.store
            .put(&dir.clone().join(bytes.to_string()), PutPayload::default())
            .await?;
        for meta in self.list_all(&dir).await? {
            if meta
                .location
                .filename()
                .and_then(|f| f.parse::<u64>().ok())
                .is_some_and(|b| b < bytes)
            {
                self.delete_if_exists(&meta.location).await?;
            }
        }
        Ok(())
    }

    /// Takes back a reservation of exactly `bytes` (an append refused
    /// after it reserved).
    pub async fn quota_unreserve(&self, name: &RepoName, id: &str, bytes: u64) -> Result<()> {
        self.delete_if_exists(&reservation_dir(name, id).join(bytes.to_string()))
            .await?;
        Ok(())
    }

    /// Removes the reservation of an upload session that ended.
    pub async fn quota_release_upload(&self, name: &RepoName, id: &str) -> Result<()> {
        self.delete_tree(&reservation_dir(name, id)).await
    }

    /// The reservations of the unfinished uploads in `scope`'s
    /// repositories, one per upload (its largest record).
    pub async fn quota_reservations(&self, scope: &ScopeKey) -> Result<Vec<Reservation>> {
        let root = Path::from(RESERVATIONS);
        let prefix = match scope.prefix() {
            Some(p) => Path::from(format!("{RESERVATIONS}/{p}")),
            None => root.clone(),
        };
        let depth = root.parts().count();
        let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
        for meta in self.list_all(&prefix).await? {
            let parts: Vec<String> = meta
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_string())
                .collect();
            let [name @ .., id, bytes] = parts.as_slice() else {
                continue;
            };
            let (Ok(bytes), false) = (bytes.parse::<u64>(), name.is_empty()) else {
                continue;
            };
            let name = name.join("/");
            if !scope.contains(&name) {
                continue;
            }
            let held = out.entry((name, id.clone())).or_default();
            *held = (*held).max(bytes);
        }
        Ok(out
            .into_iter()
            .map(|((repository, upload), bytes)| Reservation {
                repository,
                upload,
                bytes,
            })
            .collect())
    }

    /// Removes reservations not rewritten for `max_age` (their sessions
    /// were purged by a process that did not remove them); how many.
    pub async fn quota_purge_reservations(&self, max_age: std::time::Duration) -> Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for meta in self.list_all(&Path::from(RESERVATIONS)).await? {
            let age = now
                .duration_since(SystemTime::from(meta.last_modified))
                .unwrap_or_default();
            if age > max_age && self.delete_if_exists(&meta.location).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// How many upload sessions `name` has open.
    pub async fn open_upload_sessions(&self, name: &RepoName) -> Result<usize> {
        let prefix = Path::from(format!("{}/{name}/_uploads", layout::repositories_root()));
        match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => Ok(l.common_prefixes.len()),
            Err(e) if is_not_found(&e) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// How many repositories with manifests `scope` holds.
    pub async fn scope_repository_count(&self, scope: &ScopeKey) -> Result<usize> {
        let all = self.repositories_under(scope.prefix()).await?;
        Ok(all.iter().filter(|r| scope.contains(r)).count())
    }
}
