use crate::support;

use support::TestServer;

#[tokio::test]
async fn base_requires_auth_and_answers_version() {
    let s = TestServer::start().await;
    let r = s.anonymous().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Registry Realm\""
    );
    let r = s.client().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}

#[tokio::test]
async fn push_and_pull_an_image_with_a_multi_component_name() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, bytes) = c
        .push_image("team/app/api", "v1", &[b"layer one", b"layer two"])
        .await;
    let r = c
        .get("/v2/team/app/api/manifests/v1")
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    support::assert_served(r, &digest, bytes.as_slice()).await;
    let s = s.restart().await;
    let r = s
        .client()
        .get(&format!("/v2/team/app/api/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The "stores nothing" checks of the suites compare `TestServer::stored`
/// snapshots: on either backend (the S3 rerun too) a snapshot must see
/// what a push stores, or those checks would pass on an empty listing.
#[tokio::test]
async fn the_store_snapshot_sees_what_a_push_stores() {
    let s = TestServer::start().await;
    let before = s.stored().await;
    let digest = s.client().push_blob("smoke/app", b"snapshot me").await;
    let hex = digest.strip_prefix("sha256:").unwrap();
    let after = s.stored().await;
    assert!(
        after
            .iter()
            .any(|k| k.contains(hex) && k.ends_with("/data")),
        "no blob data under {hex} in {after:?}"
    );
    assert!(after.len() > before.len(), "{before:?} → {after:?}");
}
