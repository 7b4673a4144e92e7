//! Read-only mode (`storage.maintenance.readonly`): everything a pull needs
//! works; every push and delete is refused with 405 UNSUPPORTED and a
//! message that says the registry is in read-only mode; nothing changes in
//! storage.

use crate::support;

use support::{
    basic_auth_value, error_body, raw_request, sha256_digest, TestServer, ALL_MANIFEST_TYPES,
    OCI_MANIFEST,
};

async fn expect_read_only(r: reqwest::Response, what: &str) {
    let status = r.status();
    let allow = r
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = error_body(r).await;
    assert_eq!(status, 405, "{what}: {body}");
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED", "{what}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("read-only mode"),
        "{what}: {body}"
    );
    assert_eq!(allow.as_deref(), Some("GET, HEAD"), "{what}");
}

#[tokio::test]
async fn read_only_serves_pulls_and_refuses_pushes_and_deletes() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, bytes) = c.push_image("team/app", "v1", &[b"a layer"]).await;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let open_upload = c.start_upload("team/app").await;

    let mut s = s;
    s.config.storage.maintenance.readonly.enabled = true;
    let s = s.restart().await;
    let c = s.client();
    let before = s.stored().await;

    // Pulls.
    let r = c
        .get("/v2/team/app/manifests/v1")
        .header("accept", ALL_MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    support::assert_served(r, &digest, bytes.as_slice()).await;
    let r = c
        .get(&format!("/v2/team/app/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"a layer");
    assert_eq!(
        c.head(&format!("/v2/team/app/manifests/{digest}"))
            .header("accept", ALL_MANIFEST_TYPES)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let tags: serde_json::Value = c.get_json("/v2/team/app/tags/list").await;
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let catalog: serde_json::Value = c.get_json("/v2/_catalog").await;
    assert_eq!(catalog["repositories"], serde_json::json!(["team/app"]));
    assert_eq!(c.get("/v2/").send().await.unwrap().status(), 200);

    // Pushes and deletes.
    expect_read_only(
        c.post("/v2/team/app/blobs/uploads/")
            .header("content-length", "0")
            .send()
            .await
            .unwrap(),
        "start upload",
    )
    .await;
    let data = b"new blob";
    expect_read_only(
        c.post(&format!(
            "/v2/team/app/blobs/uploads/?digest={}",
            sha256_digest(data)
        ))
        .body(data.to_vec())
        .send()
        .await
        .unwrap(),
        "monolithic upload",
    )
    .await;
    expect_read_only(
        c.post(&format!(
            "/v2/other/blobs/uploads/?mount={layer}&from=team/app"
        ))
        .send()
        .await
        .unwrap(),
        "cross-repository mount",
    )
    .await;
    expect_read_only(
        c.patch(&open_upload)
            .header("content-type", "application/octet-stream")
            .body(b"chunk".to_vec())
            .send()
            .await
            .unwrap(),
        "PATCH of an upload opened before",
    )
    .await;
    expect_read_only(
        c.delete(&open_upload).send().await.unwrap(),
        "cancel upload",
    )
    .await;
    expect_read_only(
        c.put("/v2/team/app/manifests/v2")
            .header("content-type", OCI_MANIFEST)
            .body(bytes.clone())
            .send()
            .await
            .unwrap(),
        "manifest push",
    )
    .await;
    expect_read_only(
        c.delete(&format!("/v2/team/app/manifests/{digest}"))
            .send()
            .await
            .unwrap(),
        "manifest delete",
    )
    .await;
    expect_read_only(
        c.delete("/v2/team/app/manifests/v1").send().await.unwrap(),
        "tag delete",
    )
    .await;
    expect_read_only(
        c.delete(&format!("/v2/team/app/blobs/{layer}"))
            .send()
            .await
            .unwrap(),
        "blob delete",
    )
    .await;
    // A large body is refused without being read, and the client is told
    // the connection ends (not reset mid-upload).
    let big = vec![7u8; 4 << 20];
    let head = format!(
        "POST /v2/team/app/blobs/uploads/?digest={} HTTP/1.1\nHost: x\nAuthorization: {}\nContent-Length: {}",
        sha256_digest(&big),
        basic_auth_value(),
        big.len()
    );
    let r = raw_request(s.addr, &head, &big, false).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.error_code(), "UNSUPPORTED");
    assert_eq!(r.header("connection"), Some("close"));

    // Anonymous writes are still a login problem first.
    assert_eq!(
        s.anonymous()
            .post("/v2/team/app/blobs/uploads/")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    s.assert_stored_unchanged(&before, "read-only mode").await;

    // Back to normal: the upload opened before still works.
    let mut s = s;
    s.config.storage.maintenance.readonly.enabled = false;
    let s = s.restart().await;
    let r = s
        .client()
        .put(&format!("{open_upload}?digest={}", sha256_digest(b"")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn read_only_from_the_registry2_environment_variable() {
    let c = registry::config::Config::load(
        None,
        [(
            "REGISTRY_STORAGE_MAINTENANCE_READONLY".to_owned(),
            "{\"enabled\": true}".to_owned(),
        )],
    )
    .unwrap();
    assert!(c.storage.maintenance.readonly.enabled);
}
