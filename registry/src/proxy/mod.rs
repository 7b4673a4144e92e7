//! Pull-through cache. A repository under a proxied prefix (or every
//! repository, with registry:2's `proxy.remoteurl`) is read from storage
//! when it holds the content, else from its upstream, and what the
//! upstream sent is kept in storage as ordinary content:
//!
//! * by digest (blobs, manifests) content is immutable: once cached, it is
//!   served with no upstream request;
//! * a tag is served from the cache for `tag_ttl`, then revalidated with one
//!   upstream HEAD; when the upstream fails, the cached tag is served stale;
//! * one fetch per blob however many clients ask (`blob_fetch`), one request
//!   per manifest or tag (`singleflight`).
//!
//! The HTTP edge (`api/proxied.rs`) asks `route` whether a name is proxied
//! and maps `ProxyError` to spec errors.

mod blob_fetch;
pub mod client;
mod evict;
mod manifests;
pub mod metrics;
mod singleflight;

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;

pub use blob_fetch::Inflight;
use blob_fetch::{FetchObserver, Fetches};
use metrics::ProxyMetrics;

use crate::config::{self, StorageBackend};
use crate::oci::{Digest, RepoName};
use crate::storage::Storage;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream {upstream} does not have it")]
    NotFound { upstream: String },
    #[error("upstream {upstream} is unreachable: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("upstream {upstream} answered {status}")]
    Status { upstream: String, status: u16 },
    #[error("upstream {upstream} refused this registry's credentials ({status})")]
    Denied { upstream: String, status: u16 },
    /// Refused with a token its own realm issued: what Docker Hub answers
    /// for a repository that does not exist or is private.
    #[error("upstream {upstream} denies access to the repository ({status}): it does not exist there, or needs other credentials")]
    NoAccess { upstream: String, status: u16 },
    #[error("upstream {upstream} is rate-limiting this registry")]
    RateLimited {
        upstream: String,
        retry_after: Option<u64>,
    },
    #[error("upstream {upstream} sent content whose digest is {computed}, not {expected}")]
    DigestMismatch {
        upstream: String,
        expected: String,
        computed: String,
    },
    #[error("storage: {0}")]
    Storage(String),
}

impl From<crate::storage::StorageError> for ProxyError {
    fn from(e: crate::storage::StorageError) -> Self {
        ProxyError::Storage(e.to_string())
    }
}

/// What the access log says of a proxied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }
}

pub struct Upstream {
    /// Empty for `proxy.remoteurl` (every name).
    pub prefix: String,
    /// `host[:port]` of the URL, what containerd sends as `?ns=`.
    pub host: String,
    pub library: bool,
    pub docker_mirror: bool,
    pub tag_ttl: Duration,
    /// Cache size cap (`evict`); 0: none.
    pub max_bytes: u64,
    pub client: client::UpstreamClient,
}

impl Upstream {
    /// The label of its metrics: the prefix, or the URL for `remoteurl`.
    pub fn label(&self) -> &str {
        if self.prefix.is_empty() {
            &self.client.url
        } else {
            &self.prefix
        }
    }

    /// The upstream's name for `rest`: Docker Hub's official images are
    /// `library/<name>`.
    fn remote_name(&self, rest: &str) -> String {
        if self.library && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        }
    }

    /// Where content of upstream name `remote` is cached.
    fn local_name(&self, remote: &str) -> Option<RepoName> {
        if self.prefix.is_empty() {
            remote.parse().ok()
        } else {
            format!("{}/{remote}", self.prefix).parse().ok()
        }
    }

    fn target(self: &Arc<Self>, rest: &str) -> Option<Target> {
        if rest.is_empty() {
            return None;
        }
        let remote = self.remote_name(rest);
        Some(Target {
            local: self.local_name(&remote)?,
            remote,
            upstream: self.clone(),
        })
    }
}

/// A proxied repository: where it is cached and what the upstream calls it.
#[derive(Clone)]
pub struct Target {
    pub upstream: Arc<Upstream>,
    pub local: RepoName,
    pub remote: String,
}

pub enum Routed {
    Hosted,
    Proxied(Target),
    /// Docker Engine's `registry-mirrors` request (a name under no prefix):
    /// proxied unless the name is hosted here.
    Mirror(Target),
}

impl Routed {
    /// The metrics label of the upstream, when proxied.
    fn label(&self) -> Option<String> {
        match self {
            Routed::Hosted => None,
            Routed::Proxied(t) | Routed::Mirror(t) => Some(t.upstream.label().to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("proxy upstream {url}: {source}")]
    Client {
        url: String,
        source: client::ClientSetupError,
    },
    #[error("proxy.spool_dir {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
}

pub struct Proxy {
    /// Longest prefix first; `remoteurl`'s empty prefix last.
    upstreams: Vec<Arc<Upstream>>,
    storage: Storage,
    fetches: Arc<Fetches>,
    flights: singleflight::Singleflight<Digest>,
    /// When each cached tag (`local|tag`) was last confirmed upstream.
    validated: Arc<Mutex<HashMap<String, Instant>>>,
    /// When tags were last pulled (the server's, for `evict`).
    pulls: Arc<crate::pull_log::PullLog>,
    /// The tags cached before this process started are in `pulled`.
    adopted: std::sync::atomic::AtomicBool,
    /// Told when a blob was cached, so size caps are checked at once.
    grown: Arc<tokio::sync::Notify>,
    pub metrics: Arc<ProxyMetrics>,
}

impl Proxy {
    pub fn new(
        config: &config::Config,
        storage: Storage,
        pulls: Arc<crate::pull_log::PullLog>,
    ) -> Result<Option<Arc<Proxy>>, SetupError> {
        let proxy = &config.proxy;
        if !proxy.enabled() {
            return Ok(None);
        }
        let mut upstreams = Vec::new();
        for u in proxy.all_upstreams() {
            let client = client::UpstreamClient::new(&u).map_err(|source| SetupError::Client {
                url: u.url.clone(),
                source,
            })?;
            let host = u
                .url
                .split_once("://")
                .map_or(u.url.as_str(), |(_, rest)| rest)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            upstreams.push(Arc::new(Upstream {
                prefix: u.prefix.clone(),
                host,
                library: u.library,
                docker_mirror: u.docker_mirror,
                tag_ttl: u.tag_ttl.unwrap_or(proxy.tag_ttl),
                max_bytes: u.max_bytes,
                client,
            }));
        }
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.prefix.len()));
        // Local disk: next to the registry's layout (outside
        // `docker/registry/v2`); S3: a private temporary directory of this
        // process (random name, 0700, created atomically).
        let spool = match (&proxy.spool_dir, config.storage.backend) {
            (None, StorageBackend::S3) => {
                crate::storage::spool::private_temp_dir("registry-proxy-spool-")
                    .map_err(|source| SetupError::Spool {
                        path: std::env::temp_dir().display().to_string(),
                        source,
                    })?
                    .keep()
            }
            (dir, _) => {
                let spool = dir
                    .clone()
                    .unwrap_or_else(|| config.storage.filesystem.rootdirectory.join("proxy-spool"));
                let spool_err = |source| SetupError::Spool {
                    path: spool.display().to_string(),
                    source,
                };
                // What a previous process left is partial: never served.
                if spool.exists() {
                    std::fs::remove_dir_all(&spool).map_err(spool_err)?;
                }
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&spool)
                    .map_err(spool_err)?;
                spool
            }
        };
        let grown = Arc::new(tokio::sync::Notify::new());
        Ok(Some(Arc::new(Proxy {
            upstreams,
            fetches: Arc::new(Fetches::new(storage.clone(), spool, grown.clone())),
            grown,
            storage,
            flights: Default::default(),
            validated: Arc::default(),
            pulls,
            adopted: Default::default(),
            metrics: Arc::default(),
        })))
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Which upstream (if any) serves `name`. `ns` is containerd's `?ns=`
    /// (the registry host the image names), with which the client sends
    /// the upstream's own name.
    /// Whether `ns` (containerd's `?ns=`) chose the upstream of `name`:
    /// then the response names it in `OCI-Namespace` (distribution-spec,
    /// "Registry proxying").
    pub fn scoped_by_ns(&self, name: &RepoName, ns: &str) -> bool {
        !ns.is_empty()
            && self
                .upstreams
                .iter()
                .find(|u| !u.prefix.is_empty() && (u.prefix == ns || u.host == ns))
                .and_then(|u| u.target(name.as_str()))
                .is_some()
    }

    pub fn route(&self, name: &RepoName, ns: Option<&str>) -> Routed {
        let name = name.as_str();
        if let Some(ns) = ns.filter(|n| !n.is_empty()) {
            let by_ns = self
                .upstreams
                .iter()
                .find(|u| !u.prefix.is_empty() && (u.prefix == ns || u.host == ns));
            if let Some(t) = by_ns.and_then(|u| u.target(name)) {
                return Routed::Proxied(t);
            }
        }
        for u in self.upstreams.iter().filter(|u| !u.prefix.is_empty()) {
            if let Some(rest) = name
                .strip_prefix(u.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                if let Some(t) = u.target(rest) {
                    return Routed::Proxied(t);
                }
            }
        }
        if let Some(t) = self
            .upstreams
            .iter()
            .find(|u| u.prefix.is_empty())
            .and_then(|u| u.target(name))
        {
            return Routed::Proxied(t);
        }
        match self
            .upstreams
            .iter()
            .find(|u| u.docker_mirror)
            .and_then(|u| u.target(name))
        {
            Some(t) => Routed::Mirror(t),
            None => Routed::Hosted,
        }
    }

    /// The fetch of a blob not in storage: joined if one is in progress.
    pub fn blob_fetch(&self, target: &Target, digest: &Digest) -> Arc<Inflight> {
        let observer = Arc::new(BytesObserver {
            metrics: self.metrics.clone(),
            label: target.upstream.label().to_owned(),
        });
        let (inflight, joined) = self.fetches.join_or_start(target, digest, observer);
        let family = if joined {
            &self.metrics.coalesced
        } else {
            &self.metrics.misses
        };
        ProxyMetrics::inc(family, target.upstream.label());
        inflight
    }

    /// The size of a blob the cache does not hold, from an upstream HEAD.
    pub async fn head_blob(
        &self,
        target: &Target,
        digest: &Digest,
    ) -> Result<Option<u64>, ProxyError> {
        let response = self
            .send(target, Method::HEAD, &format!("blobs/{digest}"), None)
            .await?;
        Ok(response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// The upstream's tag list for a proxied repository (`query` is the
    /// client's `n`/`last`), as JSON with the client's repository name.
    pub async fn tags(
        &self,
        target: &Target,
        query: &str,
    ) -> Result<(Vec<String>, Option<String>), ProxyError> {
        let path = if query.is_empty() {
            "tags/list".to_owned()
        } else {
            format!("tags/list?{query}")
        };
        let response = self.send(target, Method::GET, &path, None).await?;
        let link = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        #[derive(serde::Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let bad = |e: &dyn std::fmt::Display| ProxyError::Unreachable {
            upstream: target.upstream.client.url.clone(),
            reason: format!("tag list: {e}"),
        };
        let bytes = response.bytes().await.map_err(|e| bad(&e))?;
        let tags: Tags = serde_json::from_slice(&bytes).map_err(|e| bad(&e))?;
        Ok((tags.tags.unwrap_or_default(), link))
    }

    /// The upstream's referrers index of `digest` (`query`: the client's
    /// `artifactType` filter), as it sent it: referrers (signatures) are
    /// asked for when a client asks, and their manifests are then pulled
    /// through the cache like any other.
    pub async fn referrers(
        &self,
        target: &Target,
        digest: &Digest,
        query: &str,
    ) -> Result<(bytes::Bytes, String), ProxyError> {
        let path = if query.is_empty() {
            format!("referrers/{digest}")
        } else {
            format!("referrers/{digest}?{query}")
        };
        let index = crate::oci::manifest::OCI_INDEX;
        let response = self.send(target, Method::GET, &path, Some(index)).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(index)
            .to_owned();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProxyError::Unreachable {
                upstream: target.upstream.client.url.clone(),
                reason: format!("referrers: {e}"),
            })?;
        if body.len() > crate::oci::manifest::MAX_MANIFEST_BYTES {
            return Err(ProxyError::Unreachable {
                upstream: target.upstream.client.url.clone(),
                reason: "referrers index too large".into(),
            });
        }
        Ok((body, content_type))
    }

    pub fn record_hit(&self, target: &Target) {
        ProxyMetrics::inc(&self.metrics.hits, target.upstream.label());
    }

    /// One upstream request, counted as an error when it fails (a 404 is
    /// an answer, not an error).
    async fn send(
        &self,
        target: &Target,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ProxyError> {
        let result = target
            .upstream
            .client
            .send(method, &target.remote, path, accept)
            .await;
        if let Err(e) = &result {
            if !matches!(e, ProxyError::NotFound { .. }) {
                ProxyMetrics::inc(&self.metrics.upstream_errors, target.upstream.label());
            }
        }
        result
    }

    /// Stops the fetches in progress (the server is stopping).
    pub fn shutdown(&self) {
        self.fetches.abort_all();
    }
}

struct BytesObserver {
    metrics: Arc<ProxyMetrics>,
    label: String,
}

impl FetchObserver for BytesObserver {
    fn upstream_bytes(&self, n: u64) {
        self.metrics
            .upstream_bytes
            .get_or_create(&metrics::UpstreamLabel {
                upstream: self.label.clone(),
            })
            .inc_by(n);
    }

    fn upstream_error(&self) {
        ProxyMetrics::inc(&self.metrics.upstream_errors, &self.label);
    }
}
