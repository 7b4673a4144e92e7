//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, paginated with `n` and
//! `last` and a `Link: <...>; rel="next"` header when more remain.

use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::query;
use crate::oci::RepoName;
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::AppState;

/// One page of a sorted list, and (n, last) for the next page if any.
struct Page<'a> {
    items: &'a [String],
    next: Option<(usize, &'a str)>,
}

/// `items` is sorted, so `last` is found by binary search: a page of a
/// long tag list costs what the page holds, not the whole list.
fn paginate<'a>(items: &'a [String], parts: &Parts) -> ApiResult<Page<'a>> {
    let q = query(parts);
    let n = match q.get("n") {
        Some(raw) => Some(raw.parse::<usize>().map_err(|_| {
            // The spec has no pagination error code; UNSUPPORTED is the nearest.
            ApiError::new(Code::Unsupported, "n must be a non-negative integer")
                .status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let after = match q.get("last") {
        Some(last) => &items[items.partition_point(|i| i.as_str() <= last.as_str())..],
        None => items,
    };
    match n {
        Some(n) if after.len() > n => {
            let items = &after[..n];
            let next = items.last().map(|last| (n, last.as_str()));
            Ok(Page { items, next })
        }
        _ => Ok(Page {
            items: after,
            next: None,
        }),
    }
}

fn with_link(mut response: Response, path: &str, next: Option<(usize, &str)>) -> Response {
    // Tags and repository names hold only characters that need no escaping
    // in a query string.
    if let Some((n, last)) = next {
        let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        if let Ok(v) = link.parse() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

pub async fn list(state: &AppState, name: &RepoName, parts: &Parts) -> ApiResult {
    let tags = state.storage.cached().tags(name).await?.ok_or_else(|| {
        ApiError::new(Code::NameUnknown, "repository name not known to registry")
            .detail(json!({ "name": name.as_str() }))
    })?;
    let page = paginate(&tags, parts)?;
    let response = axum::Json(json!({ "name": name.as_str(), "tags": page.items })).into_response();
    Ok(with_link(
        response,
        &format!("/v2/{name}/tags/list"),
        page.next,
    ))
}

pub async fn catalog(state: &AppState, parts: &Parts) -> ApiResult {
    // Only what the user may pull (issue 16): names are not secret from
    // someone who may read the repository, and are from everyone else.
    let repositories = crate::service::listing::visible_repositories(
        state,
        parts.extensions.get::<crate::auth::Grant>(),
        None,
    )
    .await?;
    let page = paginate(&repositories, parts)?;
    let response = axum::Json(json!({ "repositories": page.items })).into_response();
    Ok(with_link(response, "/v2/_catalog", page.next))
}
