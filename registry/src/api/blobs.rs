//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`: streamed, with `Range`.

use axum::body::Body;
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::oci::{Digest, RepoName};
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::AppState;

pub fn parse_digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse().map_err(|e: crate::oci::digest::DigestError| {
        ApiError::new(Code::DigestInvalid, e.to_string())
    })
}

/// A single byte range from a `Range: bytes=...` header, resolved against
/// the blob's size. Multi-range requests are answered with the whole blob,
/// which RFC 9110 allows.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    Whole,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(size.saturating_sub(1)))),
        (Ok(start), Err(_)) if b.is_empty() => Some((start, size.saturating_sub(1))),
        (Err(_), Ok(suffix)) if a.is_empty() && suffix > 0 => {
            Some((size.saturating_sub(suffix), size.saturating_sub(1)))
        }
        _ => None,
    };
    match range {
        Some((start, end)) if start < size && start <= end => ByteRange::Part { start, end },
        _ => ByteRange::Unsatisfiable,
    }
}

pub async fn get(state: &AppState, name: &RepoName, raw: &str, parts: &Parts) -> ApiResult {
    let digest = parse_digest(raw)?;
    let size = state
        .storage
        .cached()
        .repo_blob_size(name, &digest)
        .await?
        .ok_or_else(|| {
            ApiError::new(Code::BlobUnknown, "blob unknown to registry")
                .detail(digest.to_string().into())
        })?;
    let range_header = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let range = parse_range(range_header, size);
    let (status, get_range, len) = match range {
        ByteRange::Whole => (StatusCode::OK, None, size),
        ByteRange::Part { start, end } => (
            StatusCode::PARTIAL_CONTENT,
            Some(start..end + 1),
            end + 1 - start,
        ),
        ByteRange::Unsatisfiable => {
            // No spec code names this; SIZE_INVALID is the nearest.
            return Err(
                ApiError::new(Code::SizeInvalid, "requested range not satisfiable")
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}")),
            );
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    if let ByteRange::Part { start, end } = range {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    if parts.method == axum::http::Method::HEAD {
        return Ok(builder.body(Body::empty()).expect("valid response"));
    }
    // Like registry:2 with redirects on: the client fetches the content from
    // the object store directly (and sends its Range there).
    if let Some(url) = state.storage.blob_redirect(&digest).await? {
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header("docker-content-digest", digest.to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())
            .expect("valid response"));
    }
    let stream = state
        .storage
        .blob_body(&digest, get_range)
        .await?
        .ok_or_else(|| ApiError::new(Code::BlobUnknown, "blob unknown to registry"))?;
    Ok(builder
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

pub async fn delete(state: &AppState, name: &RepoName, raw: &str, parts: &Parts) -> ApiResult {
    let digest = parse_digest(raw)?;
    if !state.delete_enabled {
        return Err(ApiError::new(
            Code::Unsupported,
            "deletes are disabled on this registry",
        ));
    }
    // A layer of an image an immutable tag protects stays.
    crate::service::manifests::refuse_if_protected(
        state,
        name,
        &digest,
        super::manifests::requester_is_admin(state, parts),
    )
    .await?;
    if !state.storage.unlink_blob(name, &digest).await? {
        return Err(ApiError::new(Code::BlobUnknown, "blob unknown to registry"));
    }
    super::quota::after_delete(state, name).await;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), ByteRange::Whole);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            ByteRange::Part { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            ByteRange::Part { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            ByteRange::Part { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            ByteRange::Part { start: 8, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), ByteRange::Whole);
    }
}
