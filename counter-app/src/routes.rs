//! HTTP surface: `/`, `/api/count`, `/health`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde_json::json;

use crate::metrics::{self, Metrics, Snapshot};
use crate::redis_client::{Store, StoreError};

/// Lets load-balancer tests see which replica answered without parsing the body.
const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub hostname: Arc<str>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index).head(index_head))
        .route("/api/count", get(api_count))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
}

/// The seed's greeting, with the replica's hostname; HTML for browsers.
async fn index(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let count = state.store.incr().await.map_err(AppError::text)?;
    let mut response = if wants_html(&headers) {
        Html(html_page(count, &state.hostname)).into_response()
    } else {
        format!(
            "Hello World! I have been seen {count} times.\nServed by: {}\n",
            state.hostname
        )
        .into_response()
    };
    let headers = response.headers_mut();
    // The body changes on every hit; no cache may answer for us.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(value) = HeaderValue::from_str(&state.hostname) {
        headers.insert(SERVED_BY, value);
    }
    Ok(response)
}

/// HEAD / must not count a visit: uptime checkers and load balancers send it.
async fn index_head() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        (),
    )
}

/// The current count as JSON, without incrementing it (GET stays safe).
async fn api_count(State(state): State<AppState>) -> Result<Response, AppError> {
    let count = state.store.get().await.map_err(AppError::json)?;
    let mut response =
        Json(json!({ "count": count, "hostname": &*state.hostname })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// 200 when Redis answers PING, 503 otherwise: what Docker's HEALTHCHECK,
/// Swarm and Kubernetes probes look at.
async fn health(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok", "redis": "ok" })).into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "redis": err.to_string() })),
        )
            .into_response(),
    }
}

async fn prometheus(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&Snapshot {
        redis_up: state.store.is_up(),
        redis_errors: state.store.error_count(),
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "Not found. Endpoints: GET /, /api/count, /health, /metrics\n",
    )
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

fn html_page(count: u64, hostname: &str) -> String {
    let hostname = escape_html(hostname);
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Counter</title></head>\n\
         <body>\n<h1>Hello World!</h1>\n<p>I have been seen <strong>{count}</strong> times.</p>\n\
         <p>Served by <code>{hostname}</code>.</p>\n</body>\n</html>\n"
    )
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A failed Redis call, rendered in the representation the route speaks.
pub struct AppError {
    error: StoreError,
    json: bool,
}

impl AppError {
    fn text(error: StoreError) -> Self {
        Self { error, json: false }
    }

    fn json(error: StoreError) -> Self {
        Self { error, json: true }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, kind, hint) = match &self.error {
            StoreError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "The counter is temporarily unavailable; it resumes by itself when Redis is back.",
            ),
            StoreError::Command(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "redis_error",
                "The counter could not be updated.",
            ),
        };
        let message = self.error.to_string();
        let mut response = if self.json {
            (
                status,
                Json(json!({ "error": kind, "message": message, "hint": hint })),
            )
                .into_response()
        } else {
            (status, format!("{hint}\n{message}\n")).into_response()
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_chosen_by_accept_header() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&headers));
    }

    #[test]
    fn html_page_escapes_the_hostname() {
        let page = html_page(7, "<b>&\"'");
        assert!(page.contains("<strong>7</strong>"));
        assert!(page.contains("&lt;b&gt;&amp;&quot;&#39;"));
        assert!(!page.contains("<b>"));
    }
}
