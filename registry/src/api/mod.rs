//! The HTTP edge: routes, the access log, health endpoints. One module per
//! resource; each handler validates its input, calls `storage`, and maps the
//! outcome to the spec's statuses and headers.

pub mod access_log;
pub mod blobs;
pub mod client;
pub mod ext;
pub mod headers;
pub mod manifests;
pub mod proxied;
pub mod quota;
pub mod readonly;
pub mod referrers;
pub mod repositories;
pub mod tags;
pub mod token_endpoint;
pub mod trace;
pub mod uploads;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::protocol::client_addr::ClientAddr;
use crate::protocol::error::{ApiError, Code};
use crate::protocol::route::{self, Route, RouteError};
use crate::protocol::{add_warning, body, RouteKind};
use crate::AppState;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// The whole HTTP surface: `/v2`, the token endpoint, the probes, and
/// `pages` (the web UI's routes, or none) beside them under the same outer
/// layers; the server assembles the two so neither imports the other.
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let v2 = Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            readonly::refuse_writes,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .merge(v2)
        .merge(pages)
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/auth/token",
            get(token_endpoint::get).post(token_endpoint::post),
        )
        .fallback(|| async {
            ApiError::new(Code::Unsupported, "no such endpoint").status(StatusCode::NOT_FOUND)
        })
        .layer(middleware::from_fn(one_host))
        .layer(middleware::map_response(add_api_version))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access_log::log,
        ))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .layer(middleware::from_fn(trace::span))
        .with_state(state)
}

/// In front of every `/v2` route: the request is authenticated and
/// authorized (`auth::check`) before any handler or storage sees it.
async fn require_auth(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
    next: middleware::Next,
) -> Response {
    crate::auth::check(&state.auth, client, request, next).await
}

/// RFC 9112 §3.2: a request with more than one `Host` header is answered
/// 400. Which one a proxy in front used and which one we would use (for
/// the token realm, for redirects) could differ.
async fn one_host(request: Request, next: middleware::Next) -> Response {
    if request
        .headers()
        .get_all(header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        let has_body = body::has_body(request.headers());
        let error = ApiError::new(Code::Unsupported, "more than one Host header")
            .status(StatusCode::BAD_REQUEST);
        return if has_body {
            error.close_connection().into_response()
        } else {
            error.into_response()
        };
    }
    next.run(request).await
}

async fn add_api_version(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    response
}

async fn base(State(state): State<AppState>, method: Method) -> Response {
    let mut response = match method {
        Method::GET | Method::HEAD => {
            ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
        }
        _ => method_not_allowed("GET, HEAD"),
    };
    // The spec's "Warnings": configuration this registry carries out
    // otherwise than asked, told where clients check the API (`/v2/`).
    for w in &state.config_warnings {
        add_warning(
            response.headers_mut(),
            &format!("this registry's configuration: {w}"),
        );
    }
    response.extensions_mut().insert(RouteKind("base"));
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.storage.ready().await {
        Ok(()) => "ready".into_response(),
        // Anyone may ask: the backend's error (endpoint, bucket) is logged.
        Err(e) => {
            tracing::warn!(error = %e, "readyz: storage is not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "storage: unavailable").into_response()
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    ApiError::new(Code::Unsupported, "method not allowed on this resource")
        .header(header::ALLOW, allow)
        .into_response()
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let rest = path.strip_prefix("/v2/").unwrap_or_default();
    let route = match route::parse(rest) {
        Ok(route) => route,
        Err(RouteError::Name(e)) => {
            return ApiError::new(Code::NameInvalid, e.to_string()).into_response()
        }
        Err(RouteError::NoSuchEndpoint) => {
            return ApiError::new(Code::Unsupported, "no such endpoint")
                .status(StatusCode::NOT_FOUND)
                .into_response()
        }
    };
    let kind = RouteKind(route.kind());
    let method = request.method().clone();
    let (parts, body) = request.into_parts();
    if let Some(proxy) = &state.proxy {
        if let Some(error) = proxied::refuse_write(&state, &route, &method, &parts) {
            let mut response = refuse_unread(error, body).await.into_response();
            response.extensions_mut().insert(kind);
            return response;
        }
        if matches!(method, Method::GET | Method::HEAD) {
            if let Some(result) = proxied::read(&state, proxy, &route, &parts).await {
                let mut response = result.unwrap_or_else(IntoResponse::into_response);
                response.extensions_mut().insert(kind);
                return response;
            }
        }
    }
    let result = match (route, method) {
        (Route::Catalog, Method::GET | Method::HEAD) => tags::catalog(&state, &parts).await,
        (Route::Tags(name), Method::GET | Method::HEAD) => tags::list(&state, &name, &parts).await,
        (Route::Manifest(name, r), Method::GET | Method::HEAD) => {
            manifests::get(&state, &name, &r, &parts).await
        }
        (Route::Manifest(name, r), Method::PUT) => {
            manifests::put(&state, &name, &r, &parts, body).await
        }
        (Route::Manifest(name, r), Method::DELETE) => {
            manifests::delete(&state, &name, &r, &parts).await
        }
        (Route::Blob(name, d), Method::GET | Method::HEAD) => {
            blobs::get(&state, &name, &d, &parts).await
        }
        (Route::Blob(name, d), Method::DELETE) => blobs::delete(&state, &name, &d, &parts).await,
        (Route::UploadStart(name), Method::POST) => {
            uploads::start(&state, &name, &parts, body).await
        }
        (Route::Upload(name, id), Method::GET) => uploads::status(&state, &name, &id, &parts).await,
        (Route::Upload(name, id), Method::PATCH) => {
            uploads::patch(&state, &name, &id, &parts, body).await
        }
        (Route::Upload(name, id), Method::PUT) => {
            uploads::put(&state, &name, &id, &parts, body).await
        }
        (Route::Upload(name, id), Method::DELETE) => uploads::cancel(&state, &name, &id).await,
        (Route::Referrers(name, d), Method::GET) => {
            referrers::list(&state, &name, &d, &parts).await
        }
        (Route::ExtRepositories, Method::GET | Method::HEAD) => {
            ext::repositories(&state, &parts).await
        }
        (Route::ExtTags(name), Method::GET | Method::HEAD) => {
            ext::tags(&state, &name, &parts).await
        }
        (Route::Repository(name), Method::DELETE) => {
            repositories::delete(&state, &name, &parts).await
        }
        (Route::Repository(_), _) => Ok(method_not_allowed("DELETE")),
        (Route::Catalog | Route::Tags(_) | Route::ExtRepositories | Route::ExtTags(_), _) => {
            Ok(method_not_allowed("GET, HEAD"))
        }
        (Route::Manifest(..), _) => Ok(method_not_allowed("GET, HEAD, PUT, DELETE")),
        (Route::Blob(..), _) => Ok(method_not_allowed("GET, HEAD, DELETE")),
        (Route::UploadStart(_), _) => Ok(method_not_allowed("POST")),
        (Route::Upload(..), _) => Ok(method_not_allowed("GET, PATCH, PUT, DELETE")),
        (Route::Referrers(..), _) => Ok(method_not_allowed("GET")),
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(kind);
    response
}

/// Refuses a request whose body was not read: drains a small body so the
/// connection stays usable, and closes the connection after a large one.
pub async fn refuse_unread(error: ApiError, body: Body) -> ApiError {
    if body::drain(body, 1 << 20).await {
        error
    } else {
        error.close_connection()
    }
}

/// The request's query parameters (an unparsable query counts as none).
pub fn query(parts: &axum::http::request::Parts) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default()
}
