//! Listing extensions: `GET /v2/_ext/repositories` (repositories with tag
//! count, size, last push) and `GET /v2/<name>/_ext/tags` (tags with
//! digest, media type, size, platforms, push time), paginated with `n` and
//! `last` and a `Link` header like the catalog, sorted by `sort=name` or
//! `sort=pushed`. Authorised like the catalog and the tags list, and
//! filtered by the ACL: a user sees only repositories they may pull.
//! Documented in `docs/api-extensions.md`.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::query;
use crate::auth::Grant;
use crate::oci::RepoName;
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::service::listing;
use crate::storage::listing::Sort;
use crate::App;

/// Page size when `n` is not given, and the largest one served.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

fn bad(message: &str) -> ApiError {
    // The spec has no pagination error code; UNSUPPORTED is the nearest.
    ApiError::new(Code::Unsupported, message).status(StatusCode::BAD_REQUEST)
}

/// `n`, `last`, `sort` (and `q` for repositories) of a listing request.
struct Params {
    n: usize,
    last: Option<String>,
    sort: Sort,
    filter: Option<String>,
}

fn params(q: &HashMap<String, String>) -> ApiResult<Params> {
    let n = match q.get("n") {
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| bad("n must be a non-negative integer"))?
            .min(MAX_PAGE),
        None => DEFAULT_PAGE,
    };
    let sort = match q.get("sort") {
        Some(s) => Sort::parse(s).ok_or_else(|| bad("sort must be name or pushed"))?,
        None => Sort::Name,
    };
    Ok(Params {
        n,
        last: q.get("last").cloned(),
        sort,
        filter: q.get("q").filter(|f| !f.is_empty()).cloned(),
    })
}

pub fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

fn with_next(mut response: Response, path: &str, p: &Params, last: Option<&str>) -> Response {
    if let Some(last) = last {
        let mut pairs = vec![
            ("n", p.n.to_string()),
            ("last", last.to_owned()),
            ("sort", p.sort.as_str().to_owned()),
        ];
        if let Some(f) = &p.filter {
            pairs.push(("q", f.clone()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if let Ok(v) = format!("<{path}?{query}>; rel=\"next\"").parse() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

pub async fn repositories(state: &App, parts: &Parts) -> ApiResult {
    let p = params(&query(parts))?;
    let names =
        listing::visible_repositories(state, parts.extensions.get::<Grant>(), p.filter.as_deref())
            .await?;
    let (page, more) =
        listing::repository_page(state, names, p.sort, p.last.as_deref(), p.n).await?;
    let items: Vec<_> = page
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "tags": r.tags,
                "size": r.size,
                "last_push": rfc3339(r.last_push),
            })
        })
        .collect();
    let next = page.last().filter(|_| more).map(|r| r.name.as_str());
    let response = axum::Json(json!({ "repositories": items })).into_response();
    Ok(with_next(response, "/v2/_ext/repositories", &p, next))
}

pub async fn tags(state: &App, name: &RepoName, parts: &Parts) -> ApiResult {
    let p = params(&query(parts))?;
    let (page, more) = listing::tags_page(state, name, p.sort, p.last.as_deref(), p.n).await?;
    let items: Vec<_> = page
        .iter()
        .map(|t| {
            json!({
                "tag": t.tag,
                "digest": t.digest.to_string(),
                "media_type": t.media_type,
                "size": t.size,
                "platforms": t.platforms,
                "pushed": rfc3339(t.pushed),
            })
        })
        .collect();
    let next = page.last().filter(|_| more).map(|t| t.tag.as_str());
    let mut body = json!({ "name": name.as_str(), "tags": items });
    let quotas = state.policies.get().quota.clone();
    if !quotas.is_empty() {
        // The limits the repository is under, with what each scope holds.
        let report = state.quota.report(&quotas, name).await?;
        body["quota"] = report
            .into_iter()
            .map(|(limit, used)| {
                json!({
                    "rule": limit.rule,
                    "scope": limit.scope.to_string(),
                    "used_bytes": used,
                    "max_bytes": limit.max_bytes,
                    "max_repositories": limit.max_repositories,
                })
            })
            .collect();
    }
    let response = axum::Json(body).into_response();
    Ok(with_next(
        response,
        &format!("/v2/{name}/_ext/tags"),
        &p,
        next,
    ))
}
