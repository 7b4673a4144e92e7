//! One structured log line per request: method, route, status, bytes,
//! duration, user. Never a header value or query string (they can carry
//! credentials or upload state).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::User;
use crate::protocol::client_addr::ClientAddr;
use crate::protocol::RouteKind;
use crate::AppState;

pub async fn log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let peer = ClientAddr::of(&state, request.extensions(), request.headers())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let (request, received) = crate::protocol::body::counted(request);
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
    let bytes_out = crate::protocol::body::content_length(response.headers()).unwrap_or(0);
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
