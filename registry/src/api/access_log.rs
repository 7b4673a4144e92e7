//! One structured log line per request: method, route, status, bytes,
//! duration, user. Never a header value or query string (they can carry
//! credentials or upload state).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

use super::RouteKind;
use crate::auth::User;

pub async fn log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    // Counted as the body is read: chunked uploads (what docker sends) have
    // no Content-Length.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let request = request.map(|body| {
        Body::new(body.inspect_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }))
    });
    let response = next.run(request).await;
    let bytes_in = received.load(Ordering::Relaxed);
    let route = response
        .extensions()
        .get::<RouteKind>()
        .map_or("other", |k| k.0);
    let user = response
        .extensions()
        .get::<User>()
        .map(|u| u.0.clone())
        .unwrap_or_default();
    let cache = response
        .extensions()
        .get::<crate::proxy::CacheStatus>()
        .map_or("", |c| c.as_str());
    let bytes_out = super::body::content_length(response.headers()).unwrap_or(0);
    tracing::info!(
        target: "access",
        method = %method,
        route,
        status = response.status().as_u16(),
        bytes_in,
        bytes_out,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        user = %user,
        client = %peer,
        cache,
    );
    response
}
