//! The HTTP edge of the pull-through cache (`proxy`): reads of a proxied
//! repository make sure the cache holds what is asked (one upstream request
//! at most), then are served from storage by the ordinary handlers; a blob
//! still arriving is streamed from its fetch. Writes into a proxied prefix
//! are refused with `UNSUPPORTED` naming it.

use axum::body::Body;
use axum::http::{header, request::Parts, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::blobs::{self, parse_range, ByteRange};
use super::{manifests, query, referrers, tags};
use crate::oci::{Reference, RepoName};
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::protocol::route::Route;
use crate::proxy::{CacheStatus, Proxy, ProxyError, Routed, Target};
use crate::AppState;

/// How a client names the upstream of `t`: its prefix. The upstream's URL
/// (often an internal address) and its own errors stay in the log.
fn public_name(t: &Target) -> String {
    if t.upstream.prefix.is_empty() {
        "the upstream".to_owned()
    } else {
        format!("the upstream of {}", t.upstream.prefix)
    }
}

/// The detail of a proxied error: the prefix, never the upstream's URL.
fn public_detail(t: &Target, mut detail: serde_json::Value) -> serde_json::Value {
    if !t.upstream.prefix.is_empty() {
        detail["prefix"] = json!(t.upstream.prefix);
    }
    detail
}

/// The spec error for an upstream failure; `not_found` is what a 404 means
/// for the resource asked.
fn upstream_error(t: &Target, e: ProxyError, not_found: ApiError) -> ApiError {
    let upstream = public_name(t);
    match e {
        ProxyError::NotFound { .. } => not_found,
        ProxyError::NoAccess { .. } => {
            let message = format!(
                "{}: {upstream} denies access to the repository (it does not exist there, or needs other credentials)",
                not_found.message
            );
            tracing::info!(upstream = %t.upstream.client.url, repository = %t.remote, error = %e, "proxy: upstream denies access");
            ApiError {
                message,
                ..not_found
            }
        }
        ProxyError::RateLimited { retry_after, .. } => {
            let error = ApiError::new(
                Code::TooManyRequests,
                format!("{upstream} is rate-limiting this registry; try again later"),
            )
            .detail(public_detail(t, json!({})));
            match retry_after {
                Some(s) => error.header(header::RETRY_AFTER, s.to_string()),
                None => error,
            }
        }
        ProxyError::Storage(m) => {
            ApiError::internal(Code::Unavailable, "storage is unavailable", m)
        }
        ProxyError::Unreachable { .. }
        | ProxyError::Status { .. }
        | ProxyError::Denied { .. }
        | ProxyError::DigestMismatch { .. } => ApiError::internal(
            Code::Unavailable,
            format!("{upstream} cannot serve this request"),
            e,
        )
        .status(StatusCode::BAD_GATEWAY)
        .detail(public_detail(t, json!({}))),
    }
}

fn with_cache(mut response: Response, status: CacheStatus) -> Response {
    if matches!(status, CacheStatus::Stale) {
        // The spec's "Warnings": what the client should show its user.
        crate::protocol::add_warning(
            response.headers_mut(),
            "served from the pull-through cache without checking the upstream, which cannot be reached: the tag may be out of date",
        );
    }
    response.extensions_mut().insert(status);
    response
}

fn ns(parts: &Parts) -> Option<String> {
    query(parts).remove("ns")
}

/// The target of a proxied read, or None when `name` is hosted here.
async fn target_of(
    state: &AppState,
    proxy: &Proxy,
    name: &RepoName,
    parts: &Parts,
) -> Option<Target> {
    match proxy.route(name, ns(parts).as_deref()) {
        Routed::Hosted => None,
        Routed::Proxied(t) => Some(t),
        // A hosted repository of that name wins over Docker Hub's.
        Routed::Mirror(t) => match state.storage.tags(name).await {
            Ok(None) => Some(t),
            _ => None,
        },
    }
}

/// A write into a proxied repository: refused, naming the prefix.
pub fn refuse_write(
    state: &AppState,
    route: &Route,
    method: &Method,
    parts: &Parts,
) -> Option<ApiError> {
    let name = match (route, method) {
        (Route::UploadStart(n) | Route::Upload(n, _), _) => n,
        (Route::Manifest(n, _) | Route::Blob(n, _), &Method::PUT | &Method::DELETE) => n,
        _ => return None,
    };
    crate::service::proxied::refuse_write_ns(state, name, ns(parts).as_deref())
}

/// A read of a proxied repository, or None when the route is hosted.
pub async fn read(
    state: &AppState,
    proxy: &Proxy,
    route: &Route,
    parts: &Parts,
) -> Option<ApiResult> {
    let (Route::Manifest(name, _)
    | Route::Blob(name, _)
    | Route::Tags(name)
    | Route::Referrers(name, _)) = route
    else {
        return None;
    };
    let target = target_of(state, proxy, name, parts).await?;
    if target.local != *name {
        if let Some(refused) = crate::auth::refuse_rerouted(&state.auth, parts, &target.local) {
            return Some(Ok(refused));
        }
    }
    // The spec's "Registry proxying": a response to a request that `ns`
    // scoped names that namespace in `OCI-Namespace`, error or not.
    let namespace = ns(parts)
        .filter(|n| proxy.scoped_by_ns(name, n))
        .and_then(|n| axum::http::HeaderValue::from_str(&n).ok());
    let answer = match route {
        Route::Manifest(_, raw) => manifest(state, proxy, &target, raw, parts).await,
        Route::Blob(_, raw) => blob(state, proxy, &target, raw, parts).await,
        Route::Tags(name) => tag_list(state, proxy, &target, name, parts).await,
        Route::Referrers(_, raw) => referrer_list(state, proxy, &target, raw, parts).await,
        Route::Catalog
        | Route::UploadStart(_)
        | Route::Upload(..)
        | Route::Repository(_)
        | Route::ExtRepositories
        | Route::ExtTags(_) => return None,
    };
    let Some(namespace) = namespace else {
        return Some(answer);
    };
    let mut response = match answer {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert("oci-namespace", namespace);
    Some(Ok(response))
}

async fn manifest(
    state: &AppState,
    proxy: &Proxy,
    t: &Target,
    raw: &str,
    parts: &Parts,
) -> ApiResult {
    // A malformed reference gets the ordinary handler's error.
    let Ok(reference) = raw.parse::<Reference>() else {
        return manifests::get(state, &t.local, raw, parts).await;
    };
    let unknown = ApiError::new(Code::ManifestUnknown, "manifest unknown to the upstream")
        .detail(public_detail(t, json!({ "reference": raw })));
    let status = proxy
        .ensure_manifest(t, &reference)
        .await
        .map_err(|e| upstream_error(t, e, unknown))?;
    Ok(with_cache(
        manifests::get(state, &t.local, raw, parts).await?,
        status,
    ))
}

async fn blob(state: &AppState, proxy: &Proxy, t: &Target, raw: &str, parts: &Parts) -> ApiResult {
    let digest = blobs::parse_digest(raw)?;
    let storage = &state.storage;
    let unknown = || {
        ApiError::new(Code::BlobUnknown, "blob unknown to the upstream")
            .detail(public_detail(t, json!({ "digest": digest.to_string() })))
    };
    let cached = match storage.repo_blob_size(&t.local, &digest).await? {
        Some(_) => true,
        // Content is content, so a blob stored for another repository is
        // linked rather than fetched again, but only once the upstream
        // confirms it has it under this name. Storage holds private
        // repositories' blobs (and manifests, which are blobs too): linking
        // any stored digest would give whoever may pull a proxied name
        // every private image whose digest they know.
        None if storage.blob_size(&digest).await?.is_some() => {
            proxy
                .head_blob(t, &digest)
                .await
                .map_err(|e| upstream_error(t, e, unknown()))?;
            storage.link_blob(&t.local, &digest).await?;
            true
        }
        None => false,
    };
    if cached {
        proxy.record_hit(t);
        let response = blobs::get(state, &t.local, raw, parts).await?;
        return Ok(with_cache(response, CacheStatus::Hit));
    }
    if parts.method == Method::HEAD {
        let size = proxy
            .head_blob(t, &digest)
            .await
            .map_err(|e| upstream_error(t, e, unknown()))?;
        let mut b = Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ACCEPT_RANGES, "bytes")
            .header("docker-content-digest", digest.to_string());
        if let Some(size) = size {
            b = b.header(header::CONTENT_LENGTH, size);
        }
        return Ok(with_cache(
            b.body(Body::empty()).expect("valid response"),
            CacheStatus::Miss,
        ));
    }
    let fetch = proxy.blob_fetch(t, &digest);
    let size = fetch
        .started()
        .await
        .map_err(|e| upstream_error(t, e, unknown()))?;
    let range_header = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let range = match size {
        Some(size) => parse_range(range_header, size),
        None => ByteRange::Whole,
    };
    let mut b = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    let body = match (range, size) {
        (ByteRange::Part { start, end }, Some(size)) => {
            b = b
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, end + 1 - start)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            fetch.reader(start, Some(end + 1))
        }
        (ByteRange::Unsatisfiable, Some(size)) => {
            return Err(
                ApiError::new(Code::SizeInvalid, "requested range not satisfiable")
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}")),
            )
        }
        (_, size) => {
            if let Some(size) = size {
                b = b.header(header::CONTENT_LENGTH, size);
            }
            fetch.reader(0, None)
        }
    };
    let response = b.body(Body::from_stream(body)).expect("valid response");
    Ok(with_cache(response, CacheStatus::Miss))
}

/// The upstream's referrers of a digest; the cached ones when it cannot
/// answer (a registry without the referrers API included).
async fn referrer_list(
    state: &AppState,
    proxy: &Proxy,
    t: &Target,
    raw: &str,
    parts: &Parts,
) -> ApiResult {
    let digest = blobs::parse_digest(raw)?;
    let q = client_query(parts);
    match proxy.referrers(t, &digest, &q).await {
        Ok((body, content_type)) => {
            let response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
            Ok(with_cache(response, CacheStatus::Miss))
        }
        Err(e) => {
            tracing::debug!(upstream = %t.upstream.client.url, error = %e, "proxy: upstream referrers unavailable; listing the cached ones");
            let response = referrers::list(state, &t.local, raw, parts).await?;
            Ok(with_cache(response, CacheStatus::Stale))
        }
    }
}

/// The client's query without containerd's `ns`, for the upstream.
fn client_query(parts: &Parts) -> String {
    parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("ns="))
        .collect::<Vec<_>>()
        .join("&")
}

/// The upstream's list (it knows tags never pulled here); the cached tags
/// when it cannot answer.
async fn tag_list(
    state: &AppState,
    proxy: &Proxy,
    t: &Target,
    name: &RepoName,
    parts: &Parts,
) -> ApiResult {
    let q = client_query(parts);
    let unknown = ApiError::new(
        Code::NameUnknown,
        "repository name not known to the upstream",
    )
    .detail(public_detail(t, json!({ "name": name.as_str() })));
    match proxy.tags(t, &q).await {
        Ok((tags, link)) => {
            let mut response =
                axum::Json(json!({ "name": name.as_str(), "tags": tags })).into_response();
            let link =
                link.map(|l| l.replace(&format!("/v2/{}/", t.remote), &format!("/v2/{name}/")));
            if let Some(v) = link.and_then(|l| l.parse().ok()) {
                response.headers_mut().insert(header::LINK, v);
            }
            Ok(with_cache(response, CacheStatus::Miss))
        }
        Err(e @ ProxyError::NotFound { .. }) => Err(upstream_error(t, e, unknown)),
        Err(e) => match state.storage.tags(&t.local).await? {
            Some(_) => {
                tracing::warn!(upstream = %t.upstream.client.url, repository = %t.local, error = %e, "proxy: upstream cannot list tags; listing the cached ones");
                let response = tags::list(state, &t.local, parts).await?;
                Ok(with_cache(response, CacheStatus::Stale))
            }
            None => Err(upstream_error(t, e, unknown)),
        },
    }
}
