//! Manifests as every entrance sees them: the delete the `/v2` API, the
//! web UI and repository deletes share, and the immutable-tag rules a push
//! and a delete obey, decided here once.

use serde_json::json;

use axum::http::StatusCode;

use crate::oci::manifest;
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::policy::immutable::Protection;
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::App;

pub fn manifest_unknown(reference: &Reference) -> ApiError {
    ApiError::new(Code::ManifestUnknown, "manifest unknown to registry")
        .detail(json!({ "reference": reference.to_string() }))
}

/// Deletes a manifest by digest (with the tags that name it) or a tag,
/// after the checks every entrance shares: deletes enabled, and no
/// immutable tag broken unless `admin` and the rule allows it. Returns
/// the tags removed (a delete by digest names them for its events).
pub async fn delete(
    state: &App,
    name: &RepoName,
    reference: &Reference,
    admin: bool,
) -> ApiResult<Vec<Tag>> {
    if !state.delete_enabled {
        return Err(ApiError::new(
            Code::Unsupported,
            "deletes are disabled on this registry",
        ));
    }
    let untagged = match reference {
        Reference::Tag(t) => {
            if let Some(p) = binding_protection(state, name, t, admin) {
                if let Some(current) = state.storage.resolve_tag(name, t).await? {
                    return Err(immutable_refusal(name, t, &current, &p, "deleted"));
                }
            }
            state.storage.delete_tag(name, t).await?.then(Vec::new)
        }
        Reference::Digest(d) => {
            refuse_if_protected(state, name, d, admin).await?;
            let subject = match state.storage.read_manifest(name, d).await? {
                Some(body) => manifest::parse(&body, None).ok().and_then(|m| m.subject),
                None => None,
            };
            state
                .storage
                .delete_manifest(name, d, subject.as_ref())
                .await?
        }
    };
    untagged.ok_or_else(|| manifest_unknown(reference))
}

/// The immutable rule that protects `tag` in `name` from this request's
/// user (an admin is exempt where the rule allows it).
pub fn binding_protection(
    state: &App,
    name: &RepoName,
    tag: &Tag,
    admin: bool,
) -> Option<Protection> {
    let policies = state.policies.get();
    let p = policies.immutable.protection(name.as_str(), tag.as_str())?;
    p.binds(admin).then_some(p)
}

/// Refuses deleting `d` from `name` (a manifest by digest, or a blob) when
/// a tag an immutable rule protects reaches it: the manifest the tag names,
/// a child of that index, or a blob either references. Deleting any of them
/// would break the protected image.
pub async fn refuse_if_protected(
    state: &App,
    name: &RepoName,
    d: &Digest,
    admin: bool,
) -> ApiResult<()> {
    if state.policies.get().immutable.is_empty() {
        return Ok(());
    }
    for tag in state.storage.tags(name).await?.unwrap_or_default() {
        let Ok(tag) = tag.parse::<Tag>() else {
            continue;
        };
        let Some(p) = binding_protection(state, name, &tag, admin) else {
            continue;
        };
        let Some(top) = state.storage.resolve_tag(name, &tag).await? else {
            continue;
        };
        if reaches(state, name, &top, d).await? {
            let what = if &top == d {
                "untagged by deleting its manifest".to_owned()
            } else {
                format!("broken by deleting {d}, which its image includes")
            };
            return Err(immutable_refusal(name, &tag, &top, &p, &what));
        }
    }
    Ok(())
}

/// Whether `d` is `top`, or a manifest or blob `top` references (through
/// index children, to any depth).
async fn reaches(state: &App, name: &RepoName, top: &Digest, d: &Digest) -> ApiResult<bool> {
    let mut pending = vec![top.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(m) = pending.pop() {
        if &m == d {
            return Ok(true);
        }
        if !seen.insert(m.clone()) {
            continue;
        }
        let Some(body) = state.storage.read_manifest(name, &m).await? else {
            continue;
        };
        let Ok(parsed) = manifest::parse(&body, None) else {
            continue;
        };
        if parsed.blobs.contains(d) {
            return Ok(true);
        }
        pending.extend(parsed.children);
    }
    Ok(false)
}

/// 409 `DENIED`, naming the rule: what registries with immutable tags
/// (Harbor, ECR) answer, and what docker and skopeo print as `denied: ...`.
pub fn immutable_refusal(
    name: &RepoName,
    tag: &Tag,
    current: &Digest,
    p: &Protection,
    what: &str,
) -> ApiError {
    ApiError::new(
        Code::Denied,
        format!(
            "tag {tag} of {name} is immutable under {} and cannot be {what}; it points at {current}",
            p.rule
        ),
    )
    .status(StatusCode::CONFLICT)
    .detail(json!({ "repository": name.as_str(), "tag": tag.as_str(), "digest": current.to_string(), "rule": p.rule }))
}
