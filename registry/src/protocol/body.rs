//! Request-body helpers shared by the handlers that take a body.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use futures::StreamExt;

/// Whether the request announces a body (so refusing it early needs care).
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || content_length(headers).is_some_and(|n| n > 0)
}

pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads and discards up to `limit` bytes of a body we are refusing, so a
/// small request ends cleanly and the connection can be reused. Returns
/// false when the body was larger (the caller then closes the connection).
pub async fn drain(body: Body, limit: usize) -> bool {
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                seen += bytes.len();
                if seen > limit {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// `request` with its body counted as it is read (chunked uploads, what
/// docker sends, have no Content-Length), and the count.
pub fn counted(
    request: axum::extract::Request,
) -> (
    axum::extract::Request,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    let request = request.map(|body| {
        Body::new(body.inspect_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }))
    });
    (request, received)
}
