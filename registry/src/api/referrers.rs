//! `GET /v2/<name>/referrers/<digest>[?artifactType=...]`: an image index of
//! the manifests whose `subject` is `<digest>`.

use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::blobs::parse_digest;
use super::error::ApiResult;
use super::query;
use crate::oci::manifest::{self, OCI_INDEX};
use crate::oci::RepoName;
use crate::AppState;

pub async fn list(state: &AppState, name: &RepoName, raw: &str, parts: &Parts) -> ApiResult {
    let subject = parse_digest(raw)?;
    let q = query(parts);
    let filter = q.get("artifactType").filter(|t| !t.is_empty());
    let mut descriptors: Vec<Value> = Vec::new();
    for digest in state.storage.referrers(name, &subject).await? {
        // A referrer deleted since it was indexed is simply skipped.
        let Some(body) = state.storage.read_manifest(name, &digest).await? else {
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
    Ok(response)
}
