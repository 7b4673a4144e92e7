//! Where the events of `/v2` traffic are made (other entrances send theirs
//! through `service::events`): from a request and its successful
//! response, after the handler ran and before the response leaves (so the
//! event is stored before the client hears of success). What registry:2
//! emits: manifest push (PUT 201), pull (GET 200), delete (DELETE 202);
//! blob push (upload completed, 201), pull (GET 200 or a 307 redirect),
//! delete; a cross-repository mount (POST 201 with `mount`). HEADs emit
//! nothing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use super::event::{RequestInfo, Target};
use super::Notifier;
use crate::auth::User;
use crate::oci::Digest;
use crate::protocol::client_addr::TrustedProxies;
use crate::protocol::route::{self, Route};
use crate::protocol::Untagged;

/// Wraps `router` so events are made (no-op without endpoints).
pub fn add(router: Router, notifier: Option<Arc<Notifier>>, proxies: TrustedProxies) -> Router {
    let Some(n) = notifier else {
        return router;
    };
    let proxies = Arc::new(proxies);
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let (n, proxies) = (n.clone(), proxies.clone());
            async move { track(n, &proxies, req, next).await }
        },
    ))
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn track(
    n: Arc<Notifier>,
    proxies: &TrustedProxies,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let Some(rest) = request.uri().path().strip_prefix("/v2/") else {
        return next.run(request).await;
    };
    let Ok(route) = route::parse(rest) else {
        return next.run(request).await;
    };
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::PUT | Method::POST | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    // `request.addr`: the TCP peer (`ip:port`, as registry:2 reports it),
    // or behind a proxy of `http.trusted_proxies` the client it forwarded
    // for (an address only), as the access and audit logs name it.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| {
            let client = proxies.client(c.0.ip(), &headers);
            if client == c.0.ip() {
                c.0.to_string()
            } else {
                client.to_string()
            }
        })
        .unwrap_or_default();
    // A manifest's size is the bytes of the PUT body.
    let (request, received) = crate::protocol::body::counted(request);
    let response = next.run(request).await;
    let status = response.status();
    let rh = response.headers();
    let digest_header = header_str(rh, header::HeaderName::from_static("docker-content-digest"));
    let length = |h: &HeaderMap| {
        h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let is_digest = |r: &str| r.parse::<Digest>().is_ok();
    let mut target = Target::default();
    let action = match (&method, &route, status) {
        (&Method::PUT, Route::Manifest(name, reference), StatusCode::CREATED) => {
            target.repository = name.to_string();
            target.digest = digest_header.clone();
            target.media_type = header_str(&headers, header::CONTENT_TYPE);
            target.size = received.load(Ordering::Relaxed);
            if !is_digest(reference) {
                target.tag = reference.clone();
            }
            "push"
        }
        (&Method::GET | &Method::HEAD, Route::Manifest(name, reference), StatusCode::OK) => {
            target.repository = name.to_string();
            target.digest = digest_header.clone();
            target.media_type = header_str(rh, header::CONTENT_TYPE);
            target.size = length(rh);
            if !is_digest(reference) {
                target.tag = reference.clone();
            }
            "pull"
        }
        (&Method::DELETE, Route::Manifest(name, reference), StatusCode::ACCEPTED) => {
            // Deleting a manifest untags it: registry:2 sends a delete event
            // per tag as well. The handler says which tags it removed, so
            // nothing is read here (and nothing before authentication).
            let untagged: Vec<String> = response
                .extensions()
                .get::<Untagged>()
                .map(|u| u.0.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let targets = Notifier::delete_targets(name.as_str(), reference, &untagged);
            let request = request_info(&n.host, &headers, peer, &method);
            n.emit_action("delete", targets, &request, &actor_of(&response))
                .await;
            return response;
        }
        (
            &Method::GET,
            Route::Blob(name, digest),
            StatusCode::OK | StatusCode::TEMPORARY_REDIRECT,
        ) => {
            target.repository = name.to_string();
            target.digest = digest.clone();
            target.media_type = "application/octet-stream".into();
            target.size = length(rh);
            "pull"
        }
        (&Method::DELETE, Route::Blob(name, digest), StatusCode::ACCEPTED) => {
            target.repository = name.to_string();
            target.digest = digest.clone();
            "delete"
        }
        (&Method::POST, Route::UploadStart(name), StatusCode::CREATED)
            if query_param(&query, "mount").is_some() =>
        {
            target.repository = name.to_string();
            target.digest = query_param(&query, "mount").unwrap_or_default();
            target.from_repository = query_param(&query, "from").unwrap_or_default();
            target.media_type = "application/octet-stream".into();
            "mount"
        }
        (&Method::PUT, Route::Upload(name, _), StatusCode::CREATED)
        | (&Method::POST, Route::UploadStart(name), StatusCode::CREATED) => {
            target.repository = name.to_string();
            target.digest = digest_header.clone();
            target.media_type = "application/octet-stream".into();
            "push"
        }
        _ => return response,
    };
    if matches!(target.media_type.as_str(), "application/octet-stream") && target.size == 0 {
        if let Ok(d) = target.digest.parse::<Digest>() {
            target.size = n.storage.blob_size(&d).await.ok().flatten().unwrap_or(0);
        }
    }
    target.length = target.size;
    if !target.digest.is_empty() && action != "delete" {
        let kind = if target.media_type == "application/octet-stream" {
            "blobs"
        } else {
            "manifests"
        };
        target.url = format!(
            "{}://{}/v2/{}/{kind}/{}",
            n.scheme, n.host, target.repository, target.digest
        );
    }
    // A push by digest with `?tag=`: one push event per tag it set, as
    // if each had been pushed by tag (the handler names them in OCI-Tag).
    let pushed_tags: Vec<String> = match (&method, &route) {
        (&Method::PUT, Route::Manifest(..)) if action == "push" => rh
            .get_all(crate::protocol::OCI_TAG)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let targets = if pushed_tags.is_empty() {
        vec![target]
    } else {
        pushed_tags
            .into_iter()
            .map(|tag| Target {
                tag,
                ..target.clone()
            })
            .collect()
    };
    let request = request_info(&n.host, &headers, peer, &method);
    n.emit_action(action, targets, &request, &actor_of(&response))
        .await;
    response
}

/// The event's actor: the authenticated user, empty for anonymous.
fn actor_of(response: &Response) -> String {
    response
        .extensions()
        .get::<User>()
        .map(|u| u.0.clone())
        .filter(|u| u != crate::auth::ANONYMOUS)
        .unwrap_or_default()
}

/// registry:2's `request` block of an event; `host` is the registry's
/// (`Notifier::host`), not the client's `Host` header.
pub fn request_info(host: &str, headers: &HeaderMap, addr: String, method: &Method) -> RequestInfo {
    RequestInfo {
        id: uuid::Uuid::new_v4().to_string(),
        addr,
        host: host.to_owned(),
        method: method.to_string(),
        useragent: header_str(headers, header::USER_AGENT),
    }
}
