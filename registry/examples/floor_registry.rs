//! The fastest registry this machine could run, for the "floor" column of
//! `bench/registry.sh`: it reads upload bodies and keeps nothing of them
//! but their length, and serves a pull as that many bytes of one buffer
//! sent again and again. No authentication, no hashing, no storage, no
//! memory to fill. Its push and pull rates are what the client, the
//! loopback network and the two shared cores leave to any server, so a
//! ratio against docker-registry above the floor's cannot be reached here.
//! (regbench counts the bytes of a pull; it does not check them.)
//!
//! It answers only what regbench's push and pull scenarios send (POST,
//! PATCH and PUT of uploads, GET and HEAD of blobs).
//!
//!   cargo run --release -p registry --example floor_registry -- 127.0.0.1:5099

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;

/// Lengths only: of the uploads in progress, of the blobs by digest.
#[derive(Default)]
struct Blobs {
    uploads: HashMap<String, u64>,
    blobs: HashMap<String, u64>,
    next_id: u64,
}

/// What every pull is cut from.
const BLOCK: usize = 1 << 20;

type Shared = Arc<Mutex<Blobs>>;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5099".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state((Shared::default(), Bytes::from(vec![7u8; BLOCK])));
    axum::serve(listener, app).await.expect("serve");
}

fn answer(status: StatusCode, location: Option<String>) -> Response {
    let mut r = Response::builder().status(status);
    if let Some(location) = location {
        r = r.header(header::LOCATION, location);
    }
    r.body(Body::empty()).expect("response")
}

/// Reads the body to its end; its length.
async fn drain(body: Body) -> Result<u64, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut len = 0;
    while let Some(frame) = stream.next().await {
        len += frame?.len() as u64;
    }
    Ok(len)
}

/// `len` bytes as slices of `block`.
fn pieces(
    block: Bytes,
    len: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let whole = len / BLOCK as u64;
    let tail = (len % BLOCK as u64) as usize;
    let tail = (tail > 0).then(|| block.slice(..tail));
    futures::stream::iter(
        std::iter::repeat_n(block, whole as usize)
            .chain(tail)
            .map(Ok),
    )
}

async fn handle(State((blobs, block)): State<(Shared, Bytes)>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/v2/" {
        return answer(StatusCode::OK, None);
    }
    let digest = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("digest="))
        .map(str::to_owned);
    let Some((repo, rest)) = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/blobs/"))
    else {
        return answer(StatusCode::NOT_FOUND, None);
    };
    match (parts.method, rest.strip_prefix("uploads/")) {
        (Method::POST, Some("")) => {
            let mut b = blobs.lock().unwrap();
            b.next_id += 1;
            let id = b.next_id.to_string();
            b.uploads.insert(id.clone(), 0);
            answer(
                StatusCode::ACCEPTED,
                Some(format!("/v2/{repo}/blobs/uploads/{id}")),
            )
        }
        (method @ (Method::PATCH | Method::PUT), Some(id)) => {
            let Ok(len) = drain(body).await else {
                return answer(StatusCode::BAD_REQUEST, None);
            };
            let mut b = blobs.lock().unwrap();
            let Some(upload) = b.uploads.remove(id) else {
                return answer(StatusCode::NOT_FOUND, None);
            };
            let upload = upload + len;
            match (method, digest) {
                (Method::PUT, Some(d)) => {
                    b.blobs.insert(d.clone(), upload);
                    answer(StatusCode::CREATED, Some(format!("/v2/{repo}/blobs/{d}")))
                }
                (Method::PUT, None) => answer(StatusCode::BAD_REQUEST, None),
                _ => {
                    b.uploads.insert(id.to_owned(), upload);
                    answer(
                        StatusCode::ACCEPTED,
                        Some(format!("/v2/{repo}/blobs/uploads/{id}")),
                    )
                }
            }
        }
        (method @ (Method::GET | Method::HEAD), None) => {
            let Some(len) = blobs.lock().unwrap().blobs.get(rest).copied() else {
                return answer(StatusCode::NOT_FOUND, None);
            };
            let body = match method {
                Method::HEAD => Body::empty(),
                _ => Body::from_stream(pieces(block.clone(), len)),
            };
            Response::builder()
                .header(header::CONTENT_LENGTH, len)
                .body(body)
                .expect("response")
        }
        _ => answer(StatusCode::NOT_FOUND, None),
    }
}
