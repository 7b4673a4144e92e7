//! Read-only mode (`storage.maintenance.readonly`): pulls work; every other
//! method under `/v2` is refused with 405 `UNSUPPORTED`, as registry:2 does,
//! with a message that says why. 405 rather than 503: clients retry a 5xx
//! (docker does, several times), while maintenance can last long; a 4xx with
//! a clear message ends the push at once and tells the user what happened.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::refuse_unread;
use crate::protocol::error::{ApiError, Code};
use crate::AppState;

pub const MESSAGE: &str =
    "the registry is in read-only mode for maintenance: pulls work, pushes and deletes are refused";

pub async fn refuse_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.read_only || matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let error = ApiError::new(Code::Unsupported, MESSAGE)
        .detail(json!({ "readOnly": true }))
        .header(header::ALLOW, "GET, HEAD");
    let (_, body) = request.into_parts();
    refuse_unread(error, body).await.into_response()
}
