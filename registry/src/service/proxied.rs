//! The pull-through cache's rule every entrance obeys: a proxied
//! repository is the upstream's, so nothing writes or deletes there.

use serde_json::json;

use crate::oci::RepoName;
use crate::protocol::error::{ApiError, Code};
use crate::proxy::Routed;
use crate::App;

/// A write or delete into `name` (no `?ns=`): refused when proxied.
pub fn refuse_write(state: &App, name: &RepoName) -> Option<ApiError> {
    refuse_write_ns(state, name, None)
}

/// A write or delete into `name`, routed with `ns` (the `?ns=` of a
/// request): refused, naming the prefix, when proxied.
pub fn refuse_write_ns(state: &App, name: &RepoName, ns: Option<&str>) -> Option<ApiError> {
    let proxy = state.proxy.as_ref()?;
    let Routed::Proxied(t) = proxy.route(name, ns) else {
        return None;
    };
    let message = if t.upstream.prefix.is_empty() {
        "this registry is a pull-through cache: pushes and deletes are refused".to_owned()
    } else {
        format!(
            "repository {name} is under the proxied prefix {:?} (a pull-through cache): pushes and deletes are refused there",
            t.upstream.prefix
        )
    };
    let mut detail = json!({});
    if !t.upstream.prefix.is_empty() {
        detail["prefix"] = json!(t.upstream.prefix);
    }
    Some(ApiError::new(Code::Unsupported, message).detail(detail))
}
