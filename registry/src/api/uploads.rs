//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic with
//! `?digest=`, or cross-repository mount with `?mount=&from=`), then `PATCH`,
//! `PUT ?digest=`, `GET` status, `DELETE` cancel on `.../uploads/<id>`.

use axum::body::Body;
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};

use super::blobs::parse_digest;
use super::{query, refuse_unread};
use crate::oci::{Digest, RepoName};
use crate::protocol::body::content_length;
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::storage::uploads::UploadId;
use crate::storage::UploadError;
use crate::AppState;

/// The `Range` header value for an upload holding `size` bytes. Like
/// registry:2, an empty upload reports `0-0`.
pub fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// A session's answer; a session started with `?digest-algorithm=` keeps
/// it in its Location, so the closing PUT (Location plus `digest=`) is
/// held to it.
fn session_response(
    status: StatusCode,
    name: &RepoName,
    id: &UploadId,
    size: u64,
    algorithm: Option<crate::oci::digest::Algorithm>,
) -> Response {
    let location = match algorithm {
        Some(a) => format!(
            "/v2/{name}/blobs/uploads/{id}?digest-algorithm={}",
            a.as_str()
        ),
        None => format!("/v2/{name}/blobs/uploads/{id}"),
    };
    (
        status,
        [
            (header::LOCATION, location),
            (header::RANGE, range_value(size)),
            (
                header::HeaderName::from_static("docker-upload-uuid"),
                id.to_string(),
            ),
            (header::CONTENT_LENGTH, "0".into()),
        ],
    )
        .into_response()
}

fn created_response(name: &RepoName, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{name}/blobs/{digest}")),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string(),
            ),
            (header::CONTENT_LENGTH, "0".into()),
        ],
    )
        .into_response()
}

fn parse_id(raw: &str) -> Result<UploadId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(Code::BlobUploadUnknown, "blob upload unknown to registry"))
}

/// `?digest-algorithm=` of a POST (distribution-spec main, end-4c): the
/// algorithm the client will close the session with. sha256 and sha512 are
/// hashed here; any other is refused with 400 `DIGEST_INVALID` before a
/// session exists, as is a `digest=` of another algorithm.
fn requested_algorithm(
    q: &std::collections::HashMap<String, String>,
) -> Result<Option<crate::oci::digest::Algorithm>, ApiError> {
    use crate::oci::digest::Algorithm;
    let Some(raw) = q.get("digest-algorithm") else {
        return Ok(None);
    };
    let algorithm =
        match raw.as_str() {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(ApiError::new(
                Code::DigestInvalid,
                format!("digest-algorithm {other:?} is not supported; use sha256 or sha512"),
            )
            .detail(
                serde_json::json!({ "digest-algorithm": other, "supported": ["sha256", "sha512"] }),
            )),
        };
    if let Some(d) = q.get("digest").and_then(|d| d.parse::<Digest>().ok()) {
        if d.algorithm() != algorithm {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!(
                    "digest {d} is not a {} digest, the digest-algorithm asked",
                    algorithm.as_str()
                ),
            ));
        }
    }
    Ok(Some(algorithm))
}

pub async fn start(state: &AppState, name: &RepoName, parts: &Parts, body: Body) -> ApiResult {
    let q = query(parts);
    let algorithm = match requested_algorithm(&q) {
        Ok(a) => a,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    if let Some(mount) = q.get("mount") {
        let Ok(digest) = mount.parse::<Digest>() else {
            return Err(refuse_unread(
                ApiError::new(Code::DigestInvalid, "mount digest is invalid"),
                body,
            )
            .await);
        };
        let grant = parts.extensions.get::<crate::auth::Grant>();
        if try_mount(
            state,
            grant,
            name,
            &digest,
            q.get("from").map(String::as_str),
        )
        .await?
        {
            return Ok(created_response(name, &digest));
        }
        // Not mountable: the spec has the client upload it instead.
    } else if let Some(raw) = q.get("digest") {
        let digest = match parse_digest(raw) {
            Ok(d) => d,
            Err(e) => return Err(refuse_unread(e, body).await),
        };
        let length = content_length(&parts.headers);
        super::quota::before_write(state, name, Some(&digest), length.unwrap_or(0)).await?;
        super::quota::before_session(state, name).await?;
        let id = state.storage.start_upload(name).await?;
        let finished = async {
            // A known length was admitted with the digest just above (a
            // blob the scopes count already adds nothing).
            let size = append(state, name, &id, Some(0), length, length.is_some(), body)
                .await?
                .size;
            super::quota::before_link(state, name, &digest, size, Some(&id)).await?;
            state.storage.finish_upload(name, &id, &digest).await?;
            super::quota::after_link(state, name, &digest, size).await
        }
        .await;
        if let Err(e) = finished {
            // A failed monolithic upload leaves nothing behind.
            let _ = state.storage.cancel_upload(name, &id).await;
            super::quota::after_session(state, name, &id).await;
            return Err(e);
        }
        super::quota::after_session(state, name, &id).await;
        return Ok(created_response(name, &digest));
    }
    if !crate::protocol::body::drain(body, 0).await {
        return Err(ApiError::new(
            Code::BlobUploadInvalid,
            "POST starting an upload session takes no body; use ?digest= for a monolithic upload",
        )
        .close_connection());
    }
    super::quota::before_write(state, name, None, 0).await?;
    super::quota::before_session(state, name).await?;
    let id = state.storage.start_upload(name).await?;
    Ok(session_response(
        StatusCode::ACCEPTED,
        name,
        &id,
        0,
        algorithm,
    ))
}

/// Appends a request body to an upload, held to the room the quotas leave
/// (a body with a known length that would not fit is refused unread; one
/// of unknown length is cut where it stops fitting), unless the caller
/// `admitted` it already.
async fn append(
    state: &AppState,
    name: &RepoName,
    id: &UploadId,
    start: Option<u64>,
    length: Option<u64>,
    admitted: bool,
    body: Body,
) -> ApiResult<crate::storage::UploadStatus> {
    let quotas_apply = !admitted && !state.policies.get().quota.is_empty();
    let cap = if quotas_apply {
        let offset = match start {
            Some(s) => s,
            None => state.storage.upload_status(name, id).await?.size,
        };
        super::quota::Cap::for_upload(state, name, id, offset)
            .await?
            .map(|cap| (cap, offset))
    } else {
        None
    };
    let Some((cap, offset)) = cap else {
        return state
            .storage
            .append_upload(name, id, start, length, body.into_data_stream())
            .await
            .map_err(|e| ApiError::from(e).close_connection());
    };
    if let Some(length) = length {
        cap.reserve(offset.saturating_add(length)).await?;
    }
    let capped = Box::pin(cap.wrap(body.into_data_stream()));
    let appended = state
        .storage
        .append_upload(name, id, start, length, capped)
        .await;
    // What the session holds now is its reservation (a failed append
    // may have kept part of its body).
    let held = match &appended {
        Ok(status) => Some(status.size),
        Err(_) => state
            .storage
            .upload_status(name, id)
            .await
            .ok()
            .map(|s| s.size),
    };
    if let Some(size) = held {
        cap.settle(size).await?;
    }
    match appended {
        Ok(status) => Ok(status),
        Err(e) => Err(cap
            .cut()
            .unwrap_or_else(|| ApiError::from(e).close_connection())),
    }
}

/// Links a blob from another repository into `name`, if the caller may
/// pull that repository. Without `from`, the blob may come from anywhere in
/// the registry, so it is mounted only for a caller who may pull every
/// repository (an admin, or everyone when no ACL restricts reading; never
/// in token mode, where a token names repositories one by one). Otherwise
/// the blob is not mounted and the client uploads it: the answer is the
/// same whether or not the blob exists, so nothing leaks.
async fn try_mount(
    state: &AppState,
    grant: Option<&crate::auth::Grant>,
    name: &RepoName,
    digest: &Digest,
    from: Option<&str>,
) -> ApiResult<bool> {
    let Some(grant) = grant else {
        return Ok(false);
    };
    let available = match from.map(str::parse::<RepoName>) {
        Some(Ok(from)) if grant.can_pull(&from) => {
            state.storage.repo_blob_size(&from, digest).await?
        }
        Some(_) => None,
        None if grant.pulls_everything() => state.storage.blob_size(digest).await?,
        None => None,
    };
    let Some(size) = available else {
        return Ok(false);
    };
    super::quota::before_write(state, name, Some(digest), size).await?;
    state.storage.link_blob(name, digest).await?;
    super::quota::after_link(state, name, digest, size).await?;
    Ok(true)
}

/// A PATCH `Content-Range` in the spec's one form, `<start>-<end>` (both
/// inclusive, decimal digits only, `end >= start`), as registry:2 matches it
/// (`^[0-9]+-[0-9]+$`). Anything else (`bytes 0-9/10`, spaces, signs, an
/// open end) is refused rather than guessed at: appending a chunk at a
/// misread offset would corrupt the blob.
pub fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (end >= start).then_some((start, end))
}

/// Where a chunk starts and how long it is, from `Content-Range` and
/// `Content-Length`.
pub fn chunk_bounds(parts: &Parts) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let length = content_length(&parts.headers);
    let Some(raw) = parts.headers.get(header::CONTENT_RANGE) else {
        return Ok((None, length));
    };
    let invalid = || {
        ApiError::new(
            Code::BlobUploadInvalid,
            "Content-Range must be <start>-<end>",
        )
        .status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let text = raw.to_str().map_err(|_| invalid())?;
    let (start, end) = parse_content_range(text).ok_or_else(invalid)?;
    // `0-18446744073709551615` is 2^64 bytes: no u64 holds that length.
    let range_len = (end - start).checked_add(1).ok_or_else(invalid)?;
    if length.is_some_and(|l| l != range_len) {
        return Err(ApiError::new(
            Code::SizeInvalid,
            "Content-Length does not match Content-Range",
        ));
    }
    Ok((Some(start), Some(range_len)))
}

pub async fn patch(
    state: &AppState,
    name: &RepoName,
    raw_id: &str,
    parts: &Parts,
    body: Body,
) -> ApiResult {
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    let algorithm = match requested_algorithm(&query(parts)) {
        Ok(a) => a,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    let (start, length) = match chunk_bounds(parts) {
        Ok(b) => b,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    match append(state, name, &id, start, length, false, body).await {
        Ok(status) => Ok(session_response(
            StatusCode::ACCEPTED,
            name,
            &id,
            status.size,
            algorithm,
        )),
        Err(mut error) => {
            if error.status == StatusCode::RANGE_NOT_SATISFIABLE {
                let location = session_response(StatusCode::ACCEPTED, name, &id, 0, algorithm)
                    .headers()[header::LOCATION]
                    .clone();
                error.headers.retain(|(n, _)| n != header::LOCATION);
                error.headers.push((header::LOCATION, location));
            }
            // The body may be unread (unknown session, out-of-order chunk).
            Err(error.close_connection())
        }
    }
}

pub async fn put(
    state: &AppState,
    name: &RepoName,
    raw_id: &str,
    parts: &Parts,
    body: Body,
) -> ApiResult {
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    let q = query(parts);
    // A session started with ?digest-algorithm= closes with that algorithm.
    if let Err(e) = requested_algorithm(&q) {
        return Err(refuse_unread(e, body).await);
    }
    let digest = match q.get("digest").map(|d| parse_digest(d)) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(refuse_unread(e, body).await),
        None => {
            let e = ApiError::new(
                Code::DigestInvalid,
                "the digest query parameter is required to complete an upload",
            );
            return Err(refuse_unread(e, body).await);
        }
    };
    let (start, length) = match chunk_bounds(parts) {
        Ok(b) => b,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    let size = append(state, name, &id, start, length, false, body)
        .await?
        .size;
    if let Err(e) = super::quota::before_link(state, name, &digest, size, Some(&id)).await {
        // Refused whole: the session goes, as a failed monolithic upload.
        let _ = state.storage.cancel_upload(name, &id).await;
        super::quota::after_session(state, name, &id).await;
        return Err(e);
    }
    state.storage.finish_upload(name, &id, &digest).await?;
    super::quota::after_session(state, name, &id).await;
    super::quota::after_link(state, name, &digest, size).await?;
    Ok(created_response(name, &digest))
}

pub async fn status(state: &AppState, name: &RepoName, raw_id: &str, parts: &Parts) -> ApiResult {
    let id = parse_id(raw_id)?;
    let algorithm = requested_algorithm(&query(parts))?;
    let status = state.storage.upload_status(name, &id).await?;
    Ok(session_response(
        StatusCode::NO_CONTENT,
        name,
        &id,
        status.size,
        algorithm,
    ))
}

pub async fn cancel(state: &AppState, name: &RepoName, raw_id: &str) -> ApiResult {
    let id = parse_id(raw_id)?;
    state.storage.cancel_upload(name, &id).await?;
    super::quota::after_session(state, name, &id).await;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}

/// The upload errors in the spec's terms (here, not in `error`, so that
/// `error` depends on no handler).
impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Unknown => {
                ApiError::new(Code::BlobUploadUnknown, "blob upload unknown to registry")
            }
            UploadError::OutOfOrder { size } => ApiError::new(
                Code::BlobUploadInvalid,
                format!("chunk must start at offset {size}, the upload's current size"),
            )
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::RANGE, range_value(size)),
            e @ UploadError::Body(_) => ApiError::new(Code::BlobUploadInvalid, e.to_string()),
            e @ UploadError::LengthMismatch { .. } => {
                ApiError::new(Code::SizeInvalid, e.to_string())
            }
            UploadError::DigestMismatch { computed } => ApiError::new(
                Code::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .detail(serde_json::json!({ "computed": computed.to_string() })),
            UploadError::Storage(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range_is_the_spec_form_only() {
        let cases = [
            ("0-0", Some((0, 0))),
            ("0-9", Some((0, 9))),
            ("100-199", Some((100, 199))),
            ("007-8", Some((7, 8))),
            (
                "18446744073709551615-18446744073709551615",
                Some((u64::MAX, u64::MAX)),
            ),
            ("9-0", None),
            ("bytes 0-9/10", None),
            ("bytes=0-9", None),
            (" 0-9", None),
            ("0 - 9", None),
            ("+0-9", None),
            ("0-+9", None),
            ("0-", None),
            ("-9", None),
            ("0-9-10", None),
            ("0-18446744073709551616", None),
            ("", None),
            ("abc", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_content_range(text), expected, "{text:?}");
        }
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::chunk_bounds;
    use axum::http::{header, Request};

    fn bounds(range: &str, length: Option<&str>) -> Option<(Option<u64>, Option<u64>)> {
        let mut request = Request::builder().header(header::CONTENT_RANGE, range);
        if let Some(length) = length {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        chunk_bounds(&request.body(()).unwrap().into_parts().0).ok()
    }

    /// fuzz/fuzz_targets/content_range.rs: `end - start + 1` overflowed
    /// (a panic with overflow checks, a chunk of length 0 without).
    #[test]
    fn a_range_of_2_pow_64_bytes_is_refused() {
        assert_eq!(bounds("0-18446744073709551615", None), None);
        assert_eq!(bounds("0-18446744073709551615", Some("0")), None);
        assert_eq!(
            bounds("1-18446744073709551615", None),
            Some((Some(1), Some(u64::MAX)))
        );
        assert_eq!(bounds("0-9", Some("10")), Some((Some(0), Some(10))));
    }
}
