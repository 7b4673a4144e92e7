//! Manifests through the cache: by digest fetched once and kept; by tag
//! served from the cache for `tag_ttl`, then revalidated with one upstream
//! HEAD (no walk of the manifest tree: an index's children are fetched
//! when a client asks for them); stale-if-error when the upstream fails.

use std::time::Instant;

use bytes::Bytes;
use reqwest::Method;

use super::{CacheStatus, Proxy, ProxyError, Target};
use crate::oci::manifest::{self, MAX_MANIFEST_BYTES, SUPPORTED};
use crate::oci::{Digest, Reference, Tag};
use crate::storage::Storage;

impl Proxy {
    /// Makes sure the cache holds `reference` of a proxied repository (the
    /// handler then serves it from storage as any manifest).
    pub async fn ensure_manifest(
        &self,
        target: &Target,
        reference: &Reference,
    ) -> Result<CacheStatus, ProxyError> {
        let label = target.upstream.label();
        match reference {
            Reference::Digest(d) => {
                if self.storage.manifest_in_repo(&target.local, d).await? {
                    self.record_hit(target);
                    return Ok(CacheStatus::Hit);
                }
                let work = fetch_and_store(
                    self.storage.clone(),
                    target.clone(),
                    d.to_string(),
                    Some(d.clone()),
                    None,
                );
                let key = format!("digest|{}|{d}", target.local);
                let (result, joined) = self.flights.run(key, work).await;
                self.count(target, result.as_ref().err(), joined);
                result.map(|_| CacheStatus::Miss)
            }
            Reference::Tag(tag) => {
                let cached = self.storage.resolve_tag(&target.local, tag).await?;
                let key = format!("{}|{tag}", target.local);
                let fresh = self
                    .validated
                    .lock()
                    .unwrap()
                    .get(&key)
                    .is_some_and(|t| t.elapsed() < target.upstream.tag_ttl);
                if cached.is_some() && fresh {
                    self.record_hit(target);
                    return Ok(CacheStatus::Hit);
                }
                let work = {
                    let storage = self.storage.clone();
                    let target = target.clone();
                    let tag = tag.clone();
                    let cached = cached.clone();
                    let validated = self.validated.clone();
                    let key = key.clone();
                    async move {
                        let d = revalidate(storage, target, tag, cached).await?;
                        validated.lock().unwrap().insert(key, Instant::now());
                        Ok(d)
                    }
                };
                let (result, joined) = self.flights.run(format!("tag|{key}"), work).await;
                match result {
                    Ok(d) if cached.as_ref() == Some(&d) => {
                        self.record_hit(target);
                        Ok(CacheStatus::Hit)
                    }
                    Ok(_) => {
                        self.count(target, None, joined);
                        Ok(CacheStatus::Miss)
                    }
                    Err(e @ ProxyError::NotFound { .. }) => Err(e),
                    Err(e) if cached.is_some() => {
                        tracing::warn!(upstream = %target.upstream.client.url, repository = %target.local, tag = %tag, error = %e, "proxy: upstream cannot revalidate a cached tag; serving it stale");
                        super::metrics::ProxyMetrics::inc(&self.metrics.stale, label);
                        if !joined {
                            super::metrics::ProxyMetrics::inc(&self.metrics.upstream_errors, label);
                        }
                        Ok(CacheStatus::Stale)
                    }
                    Err(e) => {
                        self.count(target, Some(&e), joined);
                        Err(e)
                    }
                }
            }
        }
    }

    fn count(&self, target: &Target, error: Option<&ProxyError>, joined: bool) {
        use super::metrics::ProxyMetrics;
        let label = target.upstream.label();
        if joined {
            ProxyMetrics::inc(&self.metrics.coalesced, label);
            return;
        }
        ProxyMetrics::inc(&self.metrics.misses, label);
        if error.is_some_and(|e| !matches!(e, ProxyError::NotFound { .. })) {
            ProxyMetrics::inc(&self.metrics.upstream_errors, label);
        }
    }
}

fn accept() -> String {
    SUPPORTED.join(", ")
}

/// One HEAD when the tag is cached: the same digest upstream keeps it;
/// another digest (or a first pull) fetches the manifest and moves the tag.
async fn revalidate(
    storage: Storage,
    target: Target,
    tag: Tag,
    cached: Option<Digest>,
) -> Result<Digest, ProxyError> {
    let client = &target.upstream.client;
    let path = format!("manifests/{tag}");
    if cached.is_some() {
        let response = client
            .send(Method::HEAD, &target.remote, &path, Some(&accept()))
            .await?;
        let upstream: Option<Digest> = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if let Some(d) = upstream {
            if cached.as_ref() == Some(&d) {
                return Ok(d);
            }
            if let Some(body) = storage.read_manifest(&target.local, &d).await? {
                store(&storage, &target, &d, body, Some(&tag)).await?;
                return Ok(d);
            }
            return fetch_and_store(storage, target, d.to_string(), Some(d), Some(tag)).await;
        }
    }
    fetch_and_store(storage, target, tag.to_string(), None, Some(tag)).await
}

/// GET a manifest, check its digest (the one asked for, and the one the
/// upstream says), store it in the repository and point `tag` at it.
async fn fetch_and_store(
    storage: Storage,
    target: Target,
    reference: String,
    expected: Option<Digest>,
    tag: Option<Tag>,
) -> Result<Digest, ProxyError> {
    let client = &target.upstream.client;
    let upstream = || client.url.clone();
    let mut response = client
        .send(
            Method::GET,
            &target.remote,
            &format!("manifests/{reference}"),
            Some(&accept()),
        )
        .await?;
    let too_large = || ProxyError::Unreachable {
        upstream: upstream(),
        reason: format!("manifest {reference} is larger than {MAX_MANIFEST_BYTES} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
    {
        return Err(too_large());
    }
    let said: Option<Digest> = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProxyError::Unreachable {
            upstream: upstream(),
            reason: format!("manifest body: {e}"),
        })?
    {
        if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let algorithm = expected
        .as_ref()
        .or(said.as_ref())
        .map_or(crate::oci::Algorithm::Sha256, Digest::algorithm);
    let computed = Digest::of(algorithm, &body);
    if let Some(want) = expected.as_ref().or(said.as_ref()) {
        if *want != computed {
            return Err(ProxyError::DigestMismatch {
                upstream: upstream(),
                expected: want.to_string(),
                computed: computed.to_string(),
            });
        }
    }
    store(
        &storage,
        &target,
        &computed,
        Bytes::from(body),
        tag.as_ref(),
    )
    .await?;
    Ok(computed)
}

async fn store(
    storage: &Storage,
    target: &Target,
    digest: &Digest,
    body: Bytes,
    tag: Option<&Tag>,
) -> Result<(), ProxyError> {
    let parsed = manifest::parse(&body, None).map_err(|e| ProxyError::Unreachable {
        upstream: target.upstream.client.url.clone(),
        reason: format!("manifest {digest} is not one this registry can serve: {e}"),
    })?;
    storage
        .put_manifest(&target.local, digest, body, parsed.subject.as_ref(), tag)
        .await?;
    Ok(())
}
