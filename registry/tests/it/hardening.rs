//! Small defences a user can see from outside: response headers, file modes.

use crate::support;

use std::os::unix::fs::PermissionsExt as _;

use support::TestServer;

/// A browser sent to a blob must not sniff it into HTML: every `/v2`
/// response says `nosniff`, without any `http.headers` configured.
#[tokio::test]
async fn v2_responses_forbid_content_sniffing() {
    let s = TestServer::start().await;
    let client = s.client();
    let digest = client
        .push_blob("sniff/me", b"<html><script>alert(1)</script>")
        .await;
    for path in [
        "/v2/".to_owned(),
        format!("/v2/sniff/me/blobs/{digest}"),
        "/v2/sniff/me/manifests/missing".to_owned(),
    ] {
        let r = client.get(&path).send().await.unwrap();
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}: {}",
            r.status()
        );
    }
    let r = s.anonymous().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    s.stop().await;
}

/// The audit log names users and their addresses: only the registry's own
/// user may read it.
#[tokio::test]
async fn the_audit_log_is_readable_by_the_registry_user_only() {
    let log = tempfile::tempdir().unwrap();
    let path = log.path().join("audit/audit.jsonl");
    let p = path.clone();
    let s = TestServer::start_with(move |c| c.auth.audit_log = Some(p)).await;
    let r = s.anonymous().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "audit log mode {mode:o}");
    s.stop().await;
}
