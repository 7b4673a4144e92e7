//! `http.headers`: headers added to every response, as registry:2 adds them
//! (`X-Content-Type-Options: nosniff` in its default file).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use axum::Router;

#[derive(Debug, thiserror::Error)]
#[error("http.headers: {name:?}: {message}")]
pub struct HeaderError {
    name: String,
    message: &'static str,
}

/// The configured headers, checked once at start.
///
/// `X-Content-Type-Options: nosniff` is always sent unless configured
/// otherwise: a browser must not run a blob (any bytes a pusher chose) as
/// HTML or script because it looks like one.
pub fn parse(config: &BTreeMap<String, Vec<String>>) -> Result<HeaderMap, HeaderError> {
    let mut map = HeaderMap::new();
    map.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (name, values) in config {
        let header = HeaderName::try_from(name.as_str()).map_err(|_| HeaderError {
            name: name.clone(),
            message: "is not a header name",
        })?;
        for value in values {
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| HeaderError {
                name: name.clone(),
                message: "has a value that is not a header value",
            })?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

/// Wraps `router` so every response carries `headers` (replacing a header of
/// the same name the handler set, as registry:2 does).
pub fn add(router: Router, headers: HeaderMap) -> Router {
    if headers.is_empty() {
        return router;
    }
    let headers = Arc::new(headers);
    router.layer(axum::middleware::map_response(move |mut r: Response| {
        let headers = headers.clone();
        async move {
            for name in headers.keys() {
                r.headers_mut().remove(name);
            }
            for (name, value) in headers.iter() {
                r.headers_mut().append(name.clone(), value.clone());
            }
            r
        }
    }))
}
