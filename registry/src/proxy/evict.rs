//! `proxy.ttl`: a cached tag nobody pulled for `ttl` is removed (its
//! manifest and blobs then go with the next `gc` that deletes untagged
//! manifests, `gc.delete_untagged`), as registry:2's proxy expires what it
//! cached. Pulls are remembered in memory; tags cached before this process
//! started count as pulled at its start.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Proxy, Routed, Target};
use crate::oci::{RepoName, Tag};

impl Proxy {
    /// A client pulled `tag` (from the cache or through it).
    pub(super) fn note_pull(&self, target: &Target, tag: &Tag) {
        self.pulled
            .lock()
            .unwrap()
            .insert((target.local.to_string(), tag.to_string()), Instant::now());
    }

    /// The sweeper, when `ttl` is not zero: every quarter of it (at most
    /// hourly) it removes the tags not pulled for `ttl`.
    pub fn spawn_evictor(
        self: &Arc<Self>,
        ttl: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        if ttl.is_zero() {
            return None;
        }
        let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600));
        let proxy = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match proxy.evict_once(ttl).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        tags = n,
                        "proxy: removed cached tags not pulled within proxy.ttl"
                    ),
                    Err(e) => tracing::warn!(error = %e, "proxy: expiring cached tags failed"),
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

    async fn evict_once(&self, ttl: Duration) -> Result<usize, crate::storage::StorageError> {
        if !self.adopted.swap(true, Ordering::Relaxed) {
            let now = Instant::now();
            for repo in self.storage.repositories().await? {
                let Ok(name) = repo.parse::<RepoName>() else {
                    continue;
                };
                if !self.is_cached(&name) {
                    continue;
                }
                for tag in self.storage.tags(&name).await?.unwrap_or_default() {
                    self.pulled
                        .lock()
                        .unwrap()
                        .entry((repo.clone(), tag))
                        .or_insert(now);
                }
            }
        }
        let expired: Vec<(String, String)> = self
            .pulled
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| t.elapsed() >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        let mut removed = 0;
        for (repo, tag) in expired {
            let (Ok(name), Ok(t)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) else {
                continue;
            };
            // Pulled again since it was listed: kept.
            let key = (repo.clone(), tag.clone());
            if self
                .pulled
                .lock()
                .unwrap()
                .get(&key)
                .is_some_and(|t| t.elapsed() < ttl)
            {
                continue;
            }
            if self.storage.delete_tag(&name, &t).await? {
                removed += 1;
                let label = self
                    .route(&name, None)
                    .label()
                    .unwrap_or_else(|| repo.clone());
                super::metrics::ProxyMetrics::inc(&self.metrics.evicted, &label);
            }
            self.pulled.lock().unwrap().remove(&key);
            self.validated
                .lock()
                .unwrap()
                .remove(&format!("{repo}|{tag}"));
        }
        Ok(removed)
    }
}
