//! TLS with rustls when a certificate and key are configured, checked with
//! curl against a CA the test makes with openssl.

use crate::support;

use std::process::Command;

use support::{TestServer, PASSWORD, USER};

#[tokio::test(flavor = "multi_thread")]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl makes a certificate");
    let (c, k) = (cert.clone(), key.clone());
    let s = TestServer::start_with(move |config| {
        config.http.tls = Some(registry::config::Tls {
            certificate: c,
            key: k,
        });
    })
    .await;
    let url = format!("https://{}/v2/", s.addr);
    let curl = |args: Vec<String>| async move {
        tokio::process::Command::new("curl")
            .args(args)
            .output()
            .await
            .unwrap()
    };
    let out = curl(vec![
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "--cacert".into(),
        cert.display().to_string(),
        "-u".into(),
        format!("{USER}:{PASSWORD}"),
        url.clone(),
    ])
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "authenticated GET /v2/ over TLS"
    );
    let out = curl(vec![
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "--cacert".into(),
        cert.display().to_string(),
        url.clone(),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    // Plain HTTP on the TLS port is not served.
    let out = curl(vec![
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        format!("http://{}/v2/", s.addr),
    ])
    .await;
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
}
