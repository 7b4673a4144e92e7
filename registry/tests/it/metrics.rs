//! `/metrics` on its own listener: after a known amount of traffic the
//! counters show exactly that traffic.

use crate::support;

use std::time::{Duration, Instant};

use support::{basic_auth_value, sample, sha256_digest, sum_samples, TestServer};

async fn scrape(s: &TestServer) -> String {
    let addr = s.metrics_addr().expect("metrics listener");
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

/// The value of one series (`name{labels}`); None when absent.
fn requests(method: &str, route: &str, status: u16) -> String {
    format!(
        "registry_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
    )
}

/// Scrapes until `series` has `value` (histograms and gauges settle when a
/// response body is done), or fails with the last scrape.
async fn wait_for(s: &TestServer, series: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(s).await;
        if sample(&text, series) == Some(value) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn counts_match_the_traffic() {
    let s = TestServer::start_with(|c| c.metrics.addr = Some("127.0.0.1:0".into())).await;
    let c = s.client();
    let anon = s.anonymous();
    for _ in 0..3 {
        let r = c.get("/v2/").send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Counting body bytes must not turn sized bodies into chunked ones.
        assert_eq!(
            r.headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap()),
            Some("2")
        );
    }
    for _ in 0..2 {
        assert_eq!(anon.get("/v2/").send().await.unwrap().status(), 401);
    }
    let r = anon
        .get("/v2/")
        .basic_auth(support::USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A monolithic push of N bytes, a chunked one of M bytes.
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let digest = c.push_blob("m", &blob).await;
    let chunk: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
    let location = c.start_upload("m").await;
    let r = c
        .patch(&location)
        .header("content-type", "application/octet-stream")
        .body(chunk.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .put(&format!("{location}?digest={}", sha256_digest(&chunk)))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // One download of the N bytes, one HEAD, one miss.
    let r = c
        .get(&format!("/v2/m/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), blob.len());
    assert_eq!(
        c.head(&format!("/v2/m/blobs/{digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get("/v2/m/manifests/nope").send().await.unwrap().status(),
        404
    );

    let text = wait_for(
        &s,
        "registry_http_request_duration_seconds_count{method=\"GET\",route=\"base\"}",
        6.0,
    )
    .await;
    let expect = [
        (requests("GET", "base", 200), 3.0),
        (requests("GET", "base", 401), 3.0),
        (requests("POST", "upload_start", 201), 1.0),
        (requests("POST", "upload_start", 202), 1.0),
        (requests("PATCH", "upload", 202), 1.0),
        (requests("PUT", "upload", 201), 1.0),
        (requests("GET", "blob", 200), 1.0),
        (requests("HEAD", "blob", 200), 1.0),
        (requests("GET", "manifest", 404), 1.0),
        (
            "registry_auth_failures_total{reason=\"missing\"}".into(),
            2.0,
        ),
        (
            "registry_auth_failures_total{reason=\"invalid\"}".into(),
            1.0,
        ),
        (
            "registry_http_request_bytes_total{route=\"upload_start\"}".into(),
            blob.len() as f64,
        ),
        (
            "registry_http_request_bytes_total{route=\"upload\"}".into(),
            chunk.len() as f64,
        ),
        (
            "registry_http_response_bytes_total{route=\"blob\"}".into(),
            blob.len() as f64,
        ),
        ("registry_uploads_in_flight".into(), 0.0),
        ("registry_read_only".into(), 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    let total = sum_samples(&text, "registry_http_requests_total{");
    assert_eq!(total, 13.0, "no other request was counted:\n{text}");
    assert_eq!(
        sample(&text, "registry_storage_errors_total{operation=\"put\"}"),
        None
    );

    // Not on the API port.
    let r = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn uploads_in_flight_and_storage_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| c.metrics.addr = Some("127.0.0.1:0".into())).await;
    let c = s.client();
    let location = c.start_upload("slow").await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n",
        basic_auth_value()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[1u8; 500]).await.unwrap();
    wait_for(&s, "registry_uploads_in_flight", 1.0).await;
    tcp.write_all(&[2u8; 500]).await.unwrap();
    let mut reply = vec![0u8; 12];
    tcp.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HTTP/1.1 202");
    wait_for(&s, "registry_uploads_in_flight", 0.0).await;

    // A file where the repository's _layers directory should be: linking a
    // pushed blob fails in the backend.
    let repo = s
        .storage_root()
        .join("docker/registry/v2/repositories/broken");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("_layers"), b"not a directory").unwrap();
    let data = b"cannot be linked";
    let r = c
        .post(&format!(
            "/v2/broken/blobs/uploads/?digest={}",
            sha256_digest(data)
        ))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = scrape(&s).await;
    let errors = sample(&text, "registry_storage_errors_total{operation=\"put\"}");
    assert!(errors.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(
        sample(&text, &requests("POST", "upload_start", 503)),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_metrics_address_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut config = registry::config::Config::default();
    config.http.addr = "127.0.0.1:0".into();
    config.storage.filesystem.rootdirectory = dir.path().join("storage");
    config.auth.mode = registry::config::AuthMode::None;
    config.metrics.addr = Some(addr.clone());
    let err = registry::server::start(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("metrics.addr"), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}
