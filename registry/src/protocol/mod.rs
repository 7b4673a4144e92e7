//! The protocol's vocabulary, below every layer that serves it: the
//! `/v2` routes (`route`), the spec's error codes and the one error body
//! (`error`), request-body helpers (`body`), who the client is
//! (`client_addr`), and the `Warning` header. It imports nothing of the
//! registry but the OCI model (`crate::oci`): handlers, the UI, auth,
//! metrics and events all read the same words from here.

pub mod body;
pub mod client_addr;
pub mod error;
pub mod route;

use axum::http::{header, HeaderName, HeaderValue};

use crate::oci::Tag;

/// `OCI-Tag`: one per tag a push by digest set with `?tag=`
/// (distribution-spec main, "Pushing manifests with multiple tags").
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");

/// The tags a manifest delete by digest removed with it (registry:2 sends
/// a delete event for each), in the response's extensions: what the delete
/// itself saw, so nothing reads the tags before the request is authorized.
#[derive(Debug, Clone, Default)]
pub struct Untagged(pub Vec<Tag>);

/// The label a response carries for the access log and the metrics.
#[derive(Debug, Clone, Copy)]
pub struct RouteKind(pub &'static str);

/// The most bytes all `Warning` headers of one response may hold
/// (distribution-spec main, "Warnings").
pub const MAX_WARNING_BYTES: usize = 4096;

/// Adds `Warning: 299 - "<text>"` (the spec's only warn-code and agent):
/// quotes and backslashes in `text` become `'` and control characters
/// spaces; a text too long is cut; a warning that would take the response's
/// warnings past `MAX_WARNING_BYTES` is left out.
pub fn add_warning(headers: &mut axum::http::HeaderMap, text: &str) {
    let used: usize = headers
        .get_all(header::WARNING)
        .iter()
        .map(|v| v.len())
        .sum();
    let room = MAX_WARNING_BYTES.saturating_sub(used);
    let frame = "299 - \"\"".len();
    if room <= frame {
        tracing::debug!(warning = text, "warning left out: no room under 4096 bytes");
        return;
    }
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        let c = match c {
            '"' | '\\' => '\'',
            c if c.is_control() || !c.is_ascii() => ' ',
            c => c,
        };
        if clean.len() + frame + 1 > room {
            break;
        }
        clean.push(c);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{clean}\"")) {
        headers.append(header::WARNING, v);
    }
}

#[cfg(test)]
mod warning_tests {
    use super::*;

    #[test]
    fn warnings_are_299_quoted_and_bounded() {
        let mut h = axum::http::HeaderMap::new();
        add_warning(&mut h, "say \"hi\"\\\nnow é");
        assert_eq!(h[header::WARNING], "299 - \"say 'hi'' now  \"");
        add_warning(&mut h, &"x".repeat(10_000));
        let total: usize = h.get_all(header::WARNING).iter().map(|v| v.len()).sum();
        assert_eq!(total, MAX_WARNING_BYTES);
        add_warning(&mut h, "no room");
        assert_eq!(h.get_all(header::WARNING).iter().count(), 2);
    }
}
