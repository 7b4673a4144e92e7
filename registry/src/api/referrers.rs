//! `GET /v2/<name>/referrers/<digest>[?artifactType=...]`: an image index of
//! the manifests whose `subject` is `<digest>`, in pages. A page holds at
//! most [`PAGE_ENTRIES`] descriptors and about [`PAGE_BYTES`] of them (a
//! referrer's annotations are the client's to fill: ten of 512 KiB each
//! made a 5 MiB response built several times over); when more remain, a
//! `Link: <...?last=<digest>>; rel="next"` header names the next page, as
//! the spec allows. Referrers are in digest order, so `last` resumes after
//! the last digest served, and a page reads only the manifests it lists.

use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::blobs::parse_digest;
use super::query;
use crate::oci::manifest::{self, OCI_INDEX};
use crate::oci::{Digest, RepoName};
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::AppState;

/// Descriptors in one page at most.
pub const PAGE_ENTRIES: usize = 256;
/// Bytes of descriptors in one page, about: a page ends once it passes
/// this. A lone referrer larger than it is still served, alone (it is a
/// manifest, so at most 4 MiB).
pub const PAGE_BYTES: usize = 1 << 20;

pub async fn list(state: &AppState, name: &RepoName, raw: &str, parts: &Parts) -> ApiResult {
    let subject = parse_digest(raw)?;
    let q = query(parts);
    let filter = q.get("artifactType").filter(|t| !t.is_empty());
    let after = match q.get("last") {
        Some(last) => Some(last.parse::<Digest>().map_err(|_| {
            ApiError::new(Code::DigestInvalid, "last must be a referrer's digest")
                .status(axum::http::StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let all = state.storage.referrers(name, &subject).await?;
    let start = match &after {
        Some(last) => all.partition_point(|d| d <= last),
        None => 0,
    };
    let mut descriptors: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let mut next = None;
    for digest in &all[start..] {
        if descriptors.len() == PAGE_ENTRIES || bytes >= PAGE_BYTES {
            next = descriptors
                .last()
                .and_then(|d| d["digest"].as_str())
                .map(str::to_owned);
            break;
        }
        // A referrer deleted since it was indexed is simply skipped.
        let Some(body) = state.storage.read_manifest(name, digest).await? else {
            continue;
        };
        let Ok(m) = manifest::parse(&body, None) else {
            continue;
        };
        if filter.is_some_and(|f| m.artifact_type.as_deref() != Some(f.as_str())) {
            continue;
        }
        let mut d = json!({
            "mediaType": m.media_type,
            "digest": digest.to_string(),
            "size": body.len(),
        });
        if let Some(t) = &m.artifact_type {
            d["artifactType"] = json!(t);
        }
        if let Some(a) = &m.annotations {
            d["annotations"] = json!(a);
        }
        bytes += d.to_string().len();
        descriptors.push(d);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    let mut response: Response =
        ([(header::CONTENT_TYPE, OCI_INDEX)], index.to_string()).into_response();
    if filter.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            "artifactType".parse().expect("static header"),
        );
    }
    if let Some(last) = next {
        let mut link = format!("</v2/{name}/referrers/{subject}?last={last}");
        if let Some(f) = filter {
            let f: String = url_escape(f);
            link.push_str(&format!("&artifactType={f}"));
        }
        link.push_str(">; rel=\"next\"");
        if let Ok(v) = link.parse() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

/// An artifact type for a query string (`+` and `/` are common in them).
fn url_escape(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|p| p.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
