//! Graceful shutdown of the `registry` binary: on SIGTERM it stops
//! accepting connections at once, lets an upload that is streaming in
//! finish, and exits; an upload that does not finish within
//! `http.drain_timeout` is cut off without being half-recorded.

use crate::support;
use crate::support::registry_bin;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{basic_auth_value, sha256_digest, PASSWORD, USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn start_upload(addr: &str) -> String {
    let r = client()
        .post(format!("http://{addr}/v2/slow/blobs/uploads/"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Sends a PATCH head and the first `first` bytes of a `total`-byte body.
async fn begin_patch(
    addr: &str,
    location: &str,
    total: usize,
    first: &[u8],
) -> tokio::net::TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n",
        basic_auth_value()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(first).await.unwrap();
    tcp
}

/// Polls the metrics listener until an upload request is being received.
async fn wait_upload_in_flight(metrics: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(format!("http://{metrics}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == "registry_uploads_in_flight 1") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never started:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn upload_size(addr: &str, location: &str) -> (u16, Option<String>) {
    let r = client()
        .get(format!("http://{addr}{location}"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.headers()
            .get("range")
            .map(|v| v.to_str().unwrap().to_owned()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_in_flight_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let htpasswd = support::write_htpasswd(dir.path());
    let mut cmd = registry_bin::command(&root, &htpasswd, &[]);
    cmd.env("REGISTRY_METRICS_ADDR", "127.0.0.1:0")
        .env("REGISTRY_HTTP_DRAINTIMEOUT", "30s");
    let mut server = registry_bin::serve(cmd);
    let addr = server.addr.clone();
    let location = start_upload(&addr).await;

    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let (first, rest) = body.split_at(1_000_000);
    let mut tcp = begin_patch(&addr, &location, body.len(), first).await;
    wait_upload_in_flight(server.metrics_addr.as_deref().unwrap()).await;

    server.sigterm();
    // New connections are refused as soon as the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(addr.parse::<SocketAddr>().unwrap()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(Instant::now() < deadline, "still accepting after SIGTERM");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with an upload in flight"
    );

    // The rest of the body arrives after the signal; the upload completes.
    tcp.write_all(rest).await.unwrap();
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline.into(), tcp.read(&mut buf))
            .await
            .expect("a reply to the upload")
            .unwrap();
        assert!(n > 0, "connection closed without a reply");
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply).to_lowercase();
    assert!(reply.starts_with("http/1.1 202"), "{reply}");
    assert!(reply.contains("range: 0-1999999"), "{reply}");

    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exits once the upload is done");
    assert!(status.success(), "{status}");

    // Nothing was lost: a new process sees the whole upload and completes it.
    let server = registry_bin::serve(registry_bin::command(&root, &htpasswd, &[]));
    assert_eq!(
        upload_size(&server.addr, &location).await,
        (204, Some("0-1999999".into()))
    );
    let r = client()
        .put(format!(
            "http://{}{location}?digest={}",
            server.addr,
            sha256_digest(&body)
        ))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_up_on_a_stalled_upload_after_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let htpasswd = support::write_htpasswd(dir.path());
    let mut cmd = registry_bin::command(&root, &htpasswd, &[]);
    cmd.env("REGISTRY_METRICS_ADDR", "127.0.0.1:0")
        .env("REGISTRY_HTTP_DRAINTIMEOUT", "1s");
    let mut server = registry_bin::serve(cmd);
    let location = start_upload(&server.addr).await;
    let _tcp = begin_patch(&server.addr, &location, 1_000_000, &[9u8; 1000]).await;
    wait_upload_in_flight(server.metrics_addr.as_deref().unwrap()).await;

    let signalled = Instant::now();
    server.sigterm();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the drain timeout");
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(took >= Duration::from_millis(900), "waited {took:?}");

    // The cut-off chunk was not recorded: the session is still at 0 bytes.
    let server = registry_bin::serve(registry_bin::command(&root, &htpasswd, &[]));
    assert_eq!(
        upload_size(&server.addr, &location).await,
        (204, Some("0-0".into()))
    );
}
