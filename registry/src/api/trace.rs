//! One span per request, for OpenTelemetry (`crate::otel`): named
//! "<method> <route template>" with the semantic-convention attributes,
//! continuing the caller's trace when the request carries a `traceparent`.
//! Storage operations open their spans beneath it. The span is debug level:
//! with tracing off it is never built.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::Instrument as _;

use crate::auth::User;
use crate::protocol::route;

/// The route template and repository of `path`, the way the metrics label it.
fn route_of(path: &str) -> (&'static str, Option<String>) {
    match path {
        "/v2" | "/v2/" => ("/v2/", None),
        _ => match path.strip_prefix("/v2/").map(route::parse) {
            Some(Ok(r)) => (r.template(), r.repository().map(|n| n.to_string())),
            Some(Err(_)) => ("/v2/{invalid}", None),
            None => match path {
                "/livez" => ("/livez", None),
                "/readyz" => ("/readyz", None),
                "/auth/token" => ("/auth/token", None),
                // Span names must stay few: no page path in them.
                p if p == "/ui" || p.starts_with("/ui/") => ("/ui/*", None),
                _ => ("other", None),
            },
        },
    }
}

pub async fn span(request: Request, next: Next) -> Response {
    let span = tracing::debug_span!(
        target: "registry::http",
        "request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method(),
        http.route = Empty,
        repository = Empty,
        http.response.status_code = Empty,
        enduser.id = Empty,
    );
    if !span.is_disabled() {
        let (template, repository) = route_of(request.uri().path());
        span.record(
            "otel.name",
            format_args!("{} {template}", request.method()).to_string(),
        );
        span.record("http.route", template);
        if let Some(r) = repository {
            span.record("repository", r);
        }
        crate::otel::continue_trace(&span, request.headers());
    }
    let response = next.run(request).instrument(span.clone()).await;
    if !span.is_disabled() {
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        // Server spans are errors on 5xx only; a 404 is an answer.
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
        if let Some(user) = response.extensions().get::<User>() {
            span.record("enduser.id", user.0.as_str());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_by_their_templates() {
        for (path, template, repository) in [
            ("/v2/", "/v2/", None),
            (
                "/v2/a/b/manifests/latest",
                "/v2/{name}/manifests/{reference}",
                Some("a/b"),
            ),
            (
                "/v2/x/blobs/sha256:00",
                "/v2/{name}/blobs/{digest}",
                Some("x"),
            ),
            (
                "/v2/x/blobs/uploads/9f0c",
                "/v2/{name}/blobs/uploads/{uuid}",
                Some("x"),
            ),
            ("/v2/_catalog", "/v2/_catalog", None),
            ("/v2/A/tags/list", "/v2/{invalid}", None),
            ("/livez", "/livez", None),
            ("/ui/r/team-a/app", "/ui/*", None),
            ("/favicon.ico", "other", None),
        ] {
            let (t, r) = route_of(path);
            assert_eq!((t, r.as_deref()), (template, repository), "{path}");
        }
    }
}
