//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{header, request::Parts, HeaderName, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::json;

use super::refuse_unread;
use crate::auth::User;
use crate::oci::manifest::{self, Manifest, MAX_MANIFEST_BYTES};
use crate::oci::name::ReferenceError;
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::protocol::body::content_length;
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::protocol::{Untagged, OCI_TAG};
use crate::service::manifests::{self, binding_protection, immutable_refusal, manifest_unknown};
use crate::AppState;

const DIGEST_HEADER: HeaderName = HeaderName::from_static("docker-content-digest");
/// The `tag` query parameters of a push by digest, in order, each once.
/// A malformed one refuses the push (nothing is tagged).
fn query_tags(parts: &Parts) -> ApiResult<Vec<Tag>> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let mut tags: Vec<Tag> = Vec::new();
    for (k, v) in pairs {
        if k != "tag" {
            continue;
        }
        let t: Tag = v.parse().map_err(|e: crate::oci::name::TagError| {
            ApiError::new(Code::ManifestInvalid, e.to_string()).detail(json!({ "tag": v }))
        })?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok(tags)
}

/// For PUT: a malformed reference is the client's error.
fn parse_reference(raw: &str) -> Result<Reference, ApiError> {
    raw.parse().map_err(|e| match e {
        ReferenceError::Digest(e) => ApiError::new(Code::DigestInvalid, e.to_string()),
        ReferenceError::Tag(e) => ApiError::new(Code::ManifestInvalid, e.to_string()),
    })
}

/// For GET, HEAD and DELETE: a reference that cannot name a tag names no
/// manifest either, which the spec (and its conformance suite) answer 404.
fn lookup_reference(raw: &str) -> Result<Reference, ApiError> {
    raw.parse().map_err(|e| match e {
        ReferenceError::Digest(e) => ApiError::new(Code::DigestInvalid, e.to_string()),
        ReferenceError::Tag(_) => {
            ApiError::new(Code::ManifestUnknown, "manifest unknown to registry")
                .detail(json!({ "reference": raw }))
        }
    })
}

async fn resolve(state: &AppState, name: &RepoName, reference: &Reference) -> ApiResult<Digest> {
    match reference {
        Reference::Digest(d) => Ok(d.clone()),
        Reference::Tag(t) => state
            .storage
            .cached()
            .resolve_tag(name, t)
            .await?
            .ok_or_else(|| manifest_unknown(reference)),
    }
}

pub async fn get(state: &AppState, name: &RepoName, raw: &str, parts: &Parts) -> ApiResult {
    let reference = lookup_reference(raw)?;
    let digest = resolve(state, name, &reference).await?;
    let (body, media_type) = state
        .storage
        .cached()
        .read_manifest_typed(name, &digest)
        .await?
        .ok_or_else(|| manifest_unknown(&reference))?;
    let accept: Vec<&str> = parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !manifest::accepts(&accept, &media_type) {
        return Err(manifest_unknown(&reference).detail(json!({
            "reference": reference.to_string(),
            "mediaType": &*media_type,
            "reason": "the manifest's media type is not in the request's Accept header",
        })));
    }
    let digest_text = digest.to_string();
    let headers = [
        (header::CONTENT_TYPE, media_type.to_string()),
        (header::CONTENT_LENGTH, body.len().to_string()),
        (header::ETAG, format!("\"{digest_text}\"")),
        (DIGEST_HEADER, digest_text),
    ];
    // A pull by tag (GET, or HEAD as containerd resolves tags) is what
    // the cache's expiry and retention's keep_pulled_within count.
    if let Reference::Tag(tag) = &reference {
        state.pulls.note(name.as_str(), tag.as_str());
    }
    if parts.method == axum::http::Method::HEAD {
        return Ok((headers, Body::empty()).into_response());
    }
    Ok((headers, body).into_response())
}

async fn read_limited(parts: &Parts, body: Body) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(
            Code::ManifestInvalid,
            format!("manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if content_length(&parts.headers).is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(refuse_unread(too_large(), body).await);
    }
    match axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                Err(too_large().close_connection())
            } else {
                Err(ApiError::new(
                    Code::ManifestInvalid,
                    format!("reading the manifest failed: {e}"),
                )
                .close_connection())
            }
        }
    }
}

pub async fn put(
    state: &AppState,
    name: &RepoName,
    raw: &str,
    parts: &Parts,
    body: Body,
) -> ApiResult {
    let reference = match parse_reference(raw) {
        Ok(r) => r,
        Err(e) => return Err(refuse_unread(e, body).await),
    };
    // A namespace at its repository limit refuses the body unread.
    super::quota::before_manifest(state, name).await?;
    let body = read_limited(parts, body).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = manifest::parse(&body, content_type)
        .map_err(|e| ApiError::new(Code::ManifestInvalid, e.to_string()))?;
    let digest = match &reference {
        Reference::Digest(d) => {
            let computed = Digest::of(d.algorithm(), &body);
            if &computed != d {
                return Err(ApiError::new(
                    Code::DigestInvalid,
                    "manifest digest does not match its content",
                )
                .detail(json!({ "computed": computed.to_string() })));
            }
            computed
        }
        Reference::Tag(_) => Digest::sha256_of(&body),
    };
    check_references(state, name, &parsed).await?;
    // The tags this push sets: the reference's, or (a push by digest) every
    // `?tag=` (distribution-spec main, "Pushing manifests with multiple
    // tags"). All or none: a refused tag refuses the request.
    let tags: Vec<Tag> = match &reference {
        Reference::Tag(t) => vec![t.clone()],
        Reference::Digest(_) => query_tags(parts)?,
    };
    // An immutable tag is checked before anything is stored, and claimed
    // (created only if absent) after, so racing pushes cannot both win.
    let mut claims = Vec::new();
    let mut plain = Vec::new();
    for t in &tags {
        match binding_protection(state, name, t, requester_is_admin(state, parts)) {
            Some(p) => {
                if let Some(current) = state.storage.resolve_tag(name, t).await? {
                    if current != digest {
                        return Err(immutable_refusal(
                            name,
                            t,
                            &current,
                            &p,
                            "pushed with another digest",
                        ));
                    }
                }
                claims.push((t, p));
            }
            None => plain.push(t),
        }
    }
    let size = body.len() as u64;
    super::quota::before_link(state, name, &digest, size, None).await?;
    // One unprotected tag (a push by tag, as registry:2 knows it) is
    // written with the manifest; several after every claim held.
    let with_manifest = match (&claims[..], &plain[..]) {
        ([], [t]) => Some(*t),
        _ => None,
    };
    // Acknowledged only once the manifest is visible and everything it
    // references is still there and not being garbage-collected
    // (storage::gc_guard explains the race this closes).
    let stored = state
        .storage
        .put_manifest_checked(
            name,
            &digest,
            body,
            parsed.subject.as_ref(),
            with_manifest,
            &parsed.blobs,
            &parsed.children,
        )
        .await?;
    if let Err(conflict) = stored {
        use crate::storage::gc_guard::PutConflict;
        let (d, message) = match conflict {
            PutConflict::BeingCollected(d) => (
                d,
                "garbage collection is removing content this manifest references; push it again",
            ),
            PutConflict::Missing(d) => (
                d,
                "content this manifest references was removed while it was pushed; push it again",
            ),
        };
        return Err(ApiError::new(Code::ManifestBlobUnknown, message)
            .detail(json!({ "digest": d.to_string() })));
    }
    for (i, (t, p)) in claims.iter().enumerate() {
        if let Err(current) = state.storage.claim_tag(name, t, &digest).await? {
            // The tags claimed before this one were absent: take them back.
            for (earlier, _) in &claims[..i] {
                state.storage.untag_if(name, earlier, &digest).await?;
            }
            return Err(immutable_refusal(
                name,
                t,
                &current,
                p,
                "pushed with another digest",
            ));
        }
    }
    if with_manifest.is_none() {
        for t in &plain {
            state.storage.tag_manifest(name, t, &digest).await?;
        }
    }
    // A whole-repository delete that began after the checks above takes
    // this push with it: refuse rather than acknowledge a tag it is
    // removing the manifest of (crate::storage::maintenance::repository_delete).
    if !state.storage.manifest_still_stands(name, &digest).await? {
        for t in &tags {
            state.storage.untag_if(name, t, &digest).await?;
        }
        return Err(ApiError::new(
            Code::ManifestBlobUnknown,
            "the repository was deleted while this manifest was pushed; push it again",
        )
        .detail(json!({ "digest": digest.to_string() })));
    }
    super::quota::after_link(state, name, &digest, size).await?;
    // Audited by the auth middleware, which knows the user and client.
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{name}/manifests/{digest}")),
            (DIGEST_HEADER, digest.to_string()),
            (header::CONTENT_LENGTH, "0".into()),
        ],
    )
        .into_response();
    // One `OCI-Tag` per tag a push by digest set with `?tag=` (a push by
    // tag answers as registry:2 does).
    if matches!(reference, Reference::Digest(_)) {
        for t in &tags {
            response.headers_mut().append(
                OCI_TAG,
                t.as_str().parse().expect("a tag is a valid header value"),
            );
        }
    }
    if let Some(subject) = &parsed.subject {
        response.headers_mut().insert(
            "oci-subject",
            subject
                .to_string()
                .parse()
                .expect("digest is a valid header"),
        );
    }
    Ok(response)
}

/// Every blob a manifest names must be in the repository, and every child
/// manifest of an index too; the subject need not exist (the spec lets
/// referrers be pushed before their subject).
async fn check_references(state: &AppState, name: &RepoName, m: &Manifest) -> ApiResult<()> {
    for d in &m.blob_descriptors {
        match state.storage.repo_blob_size(name, &d.digest).await? {
            None => {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    "manifest references a blob unknown to this repository",
                )
                .detail(json!({ "digest": d.digest.to_string(), "descriptor": d.field })))
            }
            // A wrong size makes clients fail their pull (they verify it)
            // after the push was accepted; refuse it now, naming it.
            Some(stored) if stored != d.size => {
                return Err(ApiError::new(
                    Code::ManifestInvalid,
                    format!(
                        "descriptor {} says size {} but blob {} is {stored} bytes",
                        d.field, d.size, d.digest
                    ),
                )
                .detail(json!({
                    "descriptor": d.field,
                    "digest": d.digest.to_string(),
                    "size": d.size,
                    "stored": stored,
                })))
            }
            Some(_) => {}
        }
    }
    for child in &m.children {
        if !state.storage.manifest_in_repo(name, child).await? {
            return Err(ApiError::new(
                Code::ManifestBlobUnknown,
                "index references a manifest unknown to this repository",
            )
            .detail(json!({ "digest": child.to_string() })));
        }
    }
    Ok(())
}

pub async fn delete(state: &AppState, name: &RepoName, raw: &str, parts: &Parts) -> ApiResult {
    let reference = lookup_reference(raw)?;
    let admin = requester_is_admin(state, parts);
    let untagged = manifests::delete(state, name, &reference, admin).await?;
    let mut response = (StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response();
    response.extensions_mut().insert(Untagged(untagged));
    Ok(response)
}

pub(crate) fn requester_is_admin(state: &AppState, parts: &Parts) -> bool {
    let acl = state.auth.acl.get();
    match parts.extensions.get::<crate::auth::Grant>() {
        Some(grant) => grant.is_admin(&acl),
        // The UI names its user (a local htpasswd session) without a grant.
        None => {
            let user = parts.extensions.get::<User>().map(|u| u.0.as_str());
            user.is_some_and(|u| u != crate::auth::ANONYMOUS) && acl.is_admin(user)
        }
    }
}
