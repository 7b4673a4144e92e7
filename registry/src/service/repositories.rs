//! Deleting a whole repository (`DELETE /v2/_ext/repositories/<name>`):
//! the checks every entrance shares (deletes enabled, no immutable tag in
//! it unless the caller is an admin a rule exempts), the delete under the
//! GC lock (`repository_delete`), quota usage reconciled, and registry:2's
//! repository delete event.

use crate::oci::{RepoName, Tag};
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::service::events::{self, Origin};
use crate::service::manifests::{binding_protection, immutable_refusal};
use crate::storage::maintenance::repository_delete::{delete_repository, DeleteError, Removed};
use crate::App;

pub async fn delete(
    state: &App,
    name: &RepoName,
    admin: bool,
    origin: &Origin,
) -> ApiResult<Removed> {
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
            if let Some(p) = binding_protection(state, name, &tag, admin) {
                if let Some(current) = state.storage.resolve_tag(name, &tag).await? {
                    return Err(immutable_refusal(name, &tag, &current, &p, "deleted"));
                }
            }
        }
    }
    match delete_repository(&state.storage, name).await {
        Ok(removed) => {
            let quotas = state.policies.get().quota.clone();
            if !quotas.is_empty() {
                if let Err(e) = state.quota.after_delete(&quotas, name).await {
                    tracing::warn!(repository = %name, error = %e, "quota usage not reconciled after a delete (the next gc does it)");
                }
            }
            events::repository_deleted(state, origin, name.as_str()).await;
            Ok(removed)
        }
        Err(DeleteError::NotFound) => Err(ApiError::new(
            Code::NameUnknown,
            "repository name not known to registry",
        )
        .detail(serde_json::json!({ "name": name.as_str() }))),
        Err(e @ DeleteError::Busy { .. }) => Err(ApiError::new(Code::Unavailable, e.to_string())
            .header(axum::http::header::RETRY_AFTER, "10")),
        Err(DeleteError::Storage(e)) => Err(e.into()),
    }
}
