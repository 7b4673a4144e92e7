//! What leaves the cache. `proxy.ttl`: a cached tag nobody pulled for `ttl`
//! is removed, as registry:2's proxy expires what it cached. `max_bytes`
//! (per upstream): when what an upstream's cached tags reach (each blob
//! once) exceeds it, its least recently pulled tags are removed until it
//! fits. Either way the manifests and blobs then go with the next `gc` that
//! deletes untagged manifests (`gc.delete_untagged`). Pulls come from the
//! server's `PullLog` (recorded in storage in batches, so a restart keeps
//! them); a cached tag with no record (cached by a version without them, or
//! pulled just before a crash) counts as pulled when this process first
//! looked.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Proxy, Routed, Upstream};
use crate::oci::{Digest, RepoName, Tag};
use crate::pull_log::{instant_of, unix_now};
use crate::storage::listing::Listing;
use crate::storage::StorageError;

/// After a blob was cached, how long the size sweeper waits for more (a
/// pull brings several) before it measures.
const CAP_SETTLE: Duration = Duration::from_millis(500);

/// A cached tag, for the size sweeper.
struct CachedTag {
    last_pull: Option<Instant>,
    repo: RepoName,
    tag: Tag,
    reached: HashMap<Digest, u64>,
}

impl Proxy {
    /// The sweeper, when `ttl` is not zero or an upstream has a size cap:
    /// every quarter of `ttl` (at most hourly) it removes the tags not
    /// pulled for `ttl`; shortly after blobs were cached, and with each
    /// sweep, it brings capped upstreams back under their caps.
    pub fn spawn_evictor(
        self: &Arc<Self>,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let capped = self.upstreams.iter().any(|u| u.max_bytes > 0);
        if ttl.is_zero() && !capped {
            return None;
        }
        let period = if ttl.is_zero() {
            Duration::from_secs(3600)
        } else {
            (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600))
        };
        let proxy = self.clone();
        Some(tokio::spawn(async move {
            let mut next_sweep = tokio::time::Instant::now() + period;
            loop {
                let grew = tokio::select! {
                    _ = tokio::time::sleep_until(next_sweep) => false,
                    _ = proxy.grown.notified(), if capped => true,
                    _ = stop.cancelled() => return,
                };
                if grew {
                    tokio::time::sleep(CAP_SETTLE).await;
                } else {
                    next_sweep = tokio::time::Instant::now() + period;
                }
                if !ttl.is_zero() {
                    match proxy.evict_once(ttl).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            tags = n,
                            "proxy: removed cached tags not pulled within proxy.ttl"
                        ),
                        Err(e) => tracing::warn!(error = %e, "proxy: expiring cached tags failed"),
                    }
                }
                if capped {
                    if let Err(e) = proxy.enforce_caps().await {
                        tracing::warn!(error = %e, "proxy: enforcing cache size caps failed");
                    }
                }
            }
        }))
    }

    /// Whether `repo` (a stored repository) is a cache of an upstream.
    fn is_cached(&self, repo: &RepoName) -> bool {
        matches!(self.route(repo, None), Routed::Proxied(t) if t.local == *repo)
            || self.upstreams.iter().any(|u| {
                !u.prefix.is_empty() && repo.as_str().starts_with(&format!("{}/", u.prefix))
            })
    }

    /// Tags cached before this process started: pulled when their pull
    /// record says, or now when it says nothing of them.
    async fn adopt(&self) -> Result<(), StorageError> {
        if self.adopted.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let adopted = self.adopt_all().await;
        if adopted.is_err() {
            self.adopted.store(false, Ordering::Relaxed);
        }
        adopted
    }

    async fn adopt_all(&self) -> Result<(), StorageError> {
        let (now, wall) = (Instant::now(), unix_now());
        for repo in self.storage.repositories().await? {
            let Ok(name) = repo.parse::<RepoName>() else {
                continue;
            };
            if !self.is_cached(&name) {
                continue;
            }
            let recorded = self.storage.pull_times(&name).await?;
            for tag in self.storage.tags(&name).await?.unwrap_or_default() {
                let at = recorded
                    .get(&tag)
                    .and_then(|&secs| instant_of(secs, now, wall))
                    .unwrap_or(now);
                self.pulls.adopt(&repo, &tag, at);
            }
        }
        Ok(())
    }

    async fn evict_once(&self, ttl: Duration) -> Result<usize, StorageError> {
        self.adopt().await?;
        let expired: Vec<(String, String)> = self
            .pulls
            .all()
            .into_iter()
            .filter(|(_, t)| t.elapsed() >= ttl)
            .map(|(k, _)| k)
            .collect();
        let mut removed = 0;
        for (repo, tag) in expired {
            let (Ok(name), Ok(t)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) else {
                continue;
            };
            // The log has every repository's pulls: only the cache's expire.
            if !self.is_cached(&name) {
                continue;
            }
            // Pulled again since it was listed: kept.
            if self
                .pulls
                .last(&repo, &tag)
                .is_some_and(|t| t.elapsed() < ttl)
            {
                continue;
            }
            if self.remove_cached_tag(&name, &t).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes a cached tag and what is remembered of it; true when it was
    /// there.
    async fn remove_cached_tag(&self, name: &RepoName, tag: &Tag) -> Result<bool, StorageError> {
        let removed = self.storage.delete_tag(name, tag).await?;
        if removed {
            let label = self
                .route(name, None)
                .label()
                .unwrap_or_else(|| name.to_string());
            super::metrics::ProxyMetrics::inc(&self.metrics.evicted, &label);
        }
        self.pulls.forget(name.as_str(), tag.as_str());
        self.validated
            .lock()
            .unwrap()
            .remove(&format!("{name}|{tag}"));
        Ok(removed)
    }

    /// Every upstream with `max_bytes` back under it: its least recently
    /// pulled tags removed first, the most recently pulled one never (a cap
    /// smaller than one image would otherwise refetch it on every pull).
    /// Returns how many tags went.
    async fn enforce_caps(&self) -> Result<usize, StorageError> {
        self.adopt().await?;
        let listing = Listing::new(self.storage.clone());
        let repos = self.storage.repositories().await?;
        let mut removed = 0;
        for u in self.upstreams.iter().filter(|u| u.max_bytes > 0) {
            let mut tags = self.cached_tags(u, &repos, &listing).await?;
            // Never pulled since it was cached (None) first, then oldest.
            tags.sort_by_key(|t| t.last_pull);
            // (size, tags reaching it) per blob and manifest.
            let mut refs: HashMap<&Digest, (u64, usize)> = HashMap::new();
            for t in &tags {
                for (d, size) in &t.reached {
                    refs.entry(d).or_insert((*size, 0)).1 += 1;
                }
            }
            let mut total: u64 = refs.values().map(|(size, _)| size).sum();
            if total <= u.max_bytes {
                continue;
            }
            let before = total;
            let mut gone = Vec::new();
            for t in tags.iter().take(tags.len().saturating_sub(1)) {
                if total <= u.max_bytes {
                    break;
                }
                if self.remove_cached_tag(&t.repo, &t.tag).await? {
                    gone.push(format!("{}:{}", t.repo, t.tag));
                }
                for d in t.reached.keys() {
                    if let Some(r) = refs.get_mut(d) {
                        r.1 -= 1;
                        if r.1 == 0 {
                            total -= r.0;
                        }
                    }
                }
            }
            removed += gone.len();
            if total > u.max_bytes {
                tracing::warn!(
                    upstream = u.label(),
                    max_bytes = u.max_bytes,
                    bytes = total,
                    "proxy: the most recently pulled image alone is over the cache size cap; kept"
                );
            }
            if !gone.is_empty() {
                tracing::info!(upstream = u.label(), max_bytes = u.max_bytes, before, after = total, tags = ?gone, "proxy: removed the least recently pulled tags to stay within max_bytes");
            }
        }
        Ok(removed)
    }

    /// The tags cached from `u`, with what each reaches.
    async fn cached_tags(
        &self,
        u: &Arc<Upstream>,
        repos: &[String],
        listing: &Listing,
    ) -> Result<Vec<CachedTag>, StorageError> {
        let mut out = Vec::new();
        for repo in repos {
            let Ok(name) = repo.parse::<RepoName>() else {
                continue;
            };
            let mine = match self.route(&name, None) {
                Routed::Proxied(t) | Routed::Mirror(t) => {
                    Arc::ptr_eq(&t.upstream, u) && t.local == name
                }
                Routed::Hosted => false,
            };
            if !mine {
                continue;
            }
            for tag in self.storage.tags(&name).await?.unwrap_or_default() {
                let Ok(t) = tag.parse::<Tag>() else {
                    continue;
                };
                let Some(digest) = self.storage.resolve_tag(&name, &t).await? else {
                    continue;
                };
                let last_pull = self.pulls.last(repo, &tag);
                out.push(CachedTag {
                    last_pull,
                    reached: listing.reached(&name, &digest).await?,
                    repo: name.clone(),
                    tag: t,
                });
            }
        }
        Ok(out)
    }
}
