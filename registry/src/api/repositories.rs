//! `DELETE /v2/_ext/repositories/<name>`: deletes a whole repository (its
//! tags, manifests, links and uploads; blobs are left to garbage
//! collection). Needs `delete` on the repository (admins have it) and
//! `storage.delete_enabled`; refused while an immutable tag protects
//! something in it (`service::repositories`).

use axum::http::{header, request::Parts, StatusCode};
use axum::response::IntoResponse;

use super::manifests::requester_is_admin;
use crate::auth::User;
use crate::oci::RepoName;
use crate::protocol::client_addr::ClientAddr;
use crate::protocol::error::ApiResult;
use crate::service::events::Origin;
use crate::AppState;

pub async fn delete(state: &AppState, name: &RepoName, parts: &Parts) -> ApiResult {
    let user = parts.extensions.get::<User>().map_or("", |u| u.0.as_str());
    let client = ClientAddr::of(state, &parts.extensions, &parts.headers)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let origin = Origin::request(state, user, client, &parts.method, &parts.headers);
    let admin = requester_is_admin(state, parts);
    let removed = crate::service::repositories::delete(state, name, admin, &origin).await?;
    let body = serde_json::to_string(&removed).expect("serializes");
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}
