//! Listings for people (the `/v2/_ext/` API and the web UI): what the
//! caller may see, a page of repository summaries, a page of tags.

use serde_json::json;

use crate::auth::Grant;
use crate::oci::RepoName;
use crate::protocol::error::{ApiError, ApiResult, Code};
use crate::storage::listing::{self, Sort};
use crate::App;

/// The repositories this request may see, by name, matching `filter` (a
/// substring) when given.
pub async fn visible_repositories(
    state: &App,
    grant: Option<&Grant>,
    filter: Option<&str>,
) -> ApiResult<Vec<String>> {
    let Some(grant) = grant else {
        return Ok(Vec::new());
    };
    let acl = state.auth.acl.get();
    Ok(state
        .listing
        .repository_names()
        .await?
        .into_iter()
        .filter(|n| filter.is_none_or(|f| n.contains(f)))
        .filter(|n| grant.lists(&acl, n))
        .collect())
}

/// One page of repository summaries. By name, only the page's repositories
/// are summarised; by push time every visible one is.
pub async fn repository_page(
    state: &App,
    names: Vec<String>,
    sort: Sort,
    last: Option<&str>,
    n: usize,
) -> ApiResult<(Vec<listing::RepoInfo>, bool)> {
    let parse = |names: Vec<String>| -> Vec<RepoName> {
        names.iter().filter_map(|n| n.parse().ok()).collect()
    };
    match sort {
        Sort::Name => {
            let named: Vec<listing::RepoInfo> = names
                .into_iter()
                .map(|name| listing::RepoInfo {
                    name,
                    tags: 0,
                    size: 0,
                    last_push: None,
                })
                .collect();
            let (page, more) = listing::page(named, Sort::Name, last, Some(n));
            let names = parse(page.into_iter().map(|r| r.name).collect());
            Ok((state.listing.repositories(&names).await?, more))
        }
        Sort::Pushed => {
            let mut all = state.listing.repositories(&parse(names)).await?;
            listing::sort(&mut all, Sort::Pushed);
            Ok(listing::page(all, Sort::Pushed, last, Some(n)))
        }
    }
}

/// One page of the tags of `name`; 404 `NAME_UNKNOWN` when the
/// repository does not exist.
pub async fn tags_page(
    state: &App,
    name: &RepoName,
    sort: Sort,
    last: Option<&str>,
    n: usize,
) -> ApiResult<(Vec<listing::TagInfo>, bool)> {
    state
        .listing
        .tags_page(name, sort, last, n)
        .await?
        .ok_or_else(|| {
            ApiError::new(Code::NameUnknown, "repository name not known to registry")
                .detail(json!({ "name": name.as_str() }))
        })
}
