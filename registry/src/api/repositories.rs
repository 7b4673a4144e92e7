//! `DELETE /v2/_ext/repositories/<name>`: deletes a whole repository (its
//! tags, manifests, links and uploads; blobs are left to garbage
//! collection). Needs `delete` on the repository (admins have it) and
//! `storage.delete_enabled`; refused while an immutable tag protects
//! something in it.

use axum::http::{header, request::Parts, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use super::manifests::requester_is_admin;
use crate::oci::{RepoName, Tag};
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::repository_delete::{delete_repository, DeleteError};
use crate::service::manifests::{binding_protection, immutable_refusal};
use crate::AppState;

pub async fn delete(state: &AppState, name: &RepoName, parts: &Parts) -> ApiResult {
    if !state.delete_enabled {
        return Err(ApiError::new(
            Code::Unsupported,
            "deletes are disabled on this registry",
        ));
    }
    if !state.policies.get().immutable.is_empty() {
        for tag in state.storage.tags(name).await?.unwrap_or_default() {
            let Ok(tag) = tag.parse::<Tag>() else {
                continue;
            };
            if let Some(p) = binding_protection(state, name, &tag, requester_is_admin(state, parts))
            {
                if let Some(current) = state.storage.resolve_tag(name, &tag).await? {
                    return Err(immutable_refusal(name, &tag, &current, &p, "deleted"));
                }
            }
        }
    }
    match delete_repository(&state.storage, name).await {
        Ok(removed) => {
            super::quota::after_delete(state, name).await;
            let body = serde_json::to_string(&removed).expect("serializes");
            Ok((
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response())
        }
        Err(DeleteError::NotFound) => Err(ApiError::new(
            Code::NameUnknown,
            "repository name not known to registry",
        )
        .detail(json!({ "name": name.as_str() }))),
        Err(e @ DeleteError::Busy { .. }) => {
            Err(ApiError::new(Code::Unavailable, e.to_string()).header(header::RETRY_AFTER, "10"))
        }
        Err(DeleteError::Storage(e)) => Err(e.into()),
    }
}
