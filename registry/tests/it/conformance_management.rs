//! Content management of the OCI Distribution Spec v1.1 (conformance suite
//! `04_management_test.go`): deleting tags, manifests and blobs, and what a
//! registry with deletes disabled must answer.

use crate::support;

use support::{expect_error, sha256_digest, status, Client, TestServer, OCI_MANIFEST};

const REPO: &str = "conformance/management";
const DUMMY_DIGEST: &str =
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

struct Setup {
    digest: String,
    config_digest: String,
    layer_digest: String,
}

/// The suite's setup: config, layer, a manifest tagged `tagtest0`, and (so
/// the repository holds more than the content under test) another image.
async fn setup(c: &Client) -> Setup {
    c.push_image(REPO, "keep", &[b"another image"]).await;
    let config = br#"{"architecture":"amd64","os":"linux","author":"management"}"#;
    let layer = b"management layer".repeat(10);
    let config_digest = c.push_blob(REPO, config).await;
    let layer_digest = c.push_blob(REPO, &layer).await;
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let digest = c
        .push_manifest(REPO, "tagtest0", OCI_MANIFEST, &manifest)
        .await;
    Setup {
        digest,
        config_digest,
        layer_digest,
    }
}

/// "DELETE request to manifest tag should return 202, unless tag deletion
/// is disallowed (400/405)"; "Once deleted, a GET to
/// `/v2/<name>/manifests/<tag>` will return a 404."
#[tokio::test]
async fn delete_tag_is_202_and_removes_only_the_tag() {
    let s = TestServer::start().await;
    let c = s.client();
    let st = setup(&c).await;
    let before = c.tag_list(REPO).await;
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/tagtest0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c.get_manifest(REPO, "tagtest0").send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN");
    assert_eq!(
        status(c.head(&format!("/v2/{REPO}/manifests/tagtest0"))).await,
        404
    );
    // The manifest itself stays, by digest.
    assert_eq!(status(c.get_manifest(REPO, &st.digest)).await, 200);
    let after = c.tag_list(REPO).await;
    assert!(after.len() < before.len());
    assert!(!after.contains(&"tagtest0".to_owned()));
    assert!(after.contains(&"keep".to_owned()));
}

/// "DELETE request to manifest (digest) should yield 202 response unless
/// already deleted", "GET request to deleted manifest URL should yield 404
/// response", "GET request to tags list should reflect manifest deletion".
#[tokio::test]
async fn delete_manifest_by_digest_is_202_and_removes_it_and_its_tags() {
    let s = TestServer::start().await;
    let c = s.client();
    let st = setup(&c).await;
    let (_, manifest) = c.push_image(REPO, "other", &[b"x"]).await;
    // A second tag on the manifest under test.
    c.push_manifest(REPO, "alias", OCI_MANIFEST, &{
        let r = c.get_manifest(REPO, &st.digest).send().await.unwrap();
        r.bytes().await.unwrap().to_vec()
    })
    .await;
    let before = c.tag_list(REPO).await;
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{}", st.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c.get_manifest(REPO, &st.digest).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN");
    assert_eq!(
        status(c.head(&format!("/v2/{REPO}/manifests/{}", st.digest))).await,
        404
    );
    // "... and any tag pointing to that digest will return a 404."
    for tag in ["tagtest0", "alias"] {
        assert_eq!(status(c.get_manifest(REPO, tag)).await, 404, "{tag}");
    }
    let after = c.tag_list(REPO).await;
    assert!(after.len() < before.len());
    assert_eq!(after, ["keep", "other"]);
    // Other manifests are untouched.
    assert_eq!(
        status(c.get_manifest(REPO, &sha256_digest(&manifest))).await,
        200
    );
    // Deleting again: the manifest is gone.
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{}", st.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_of_unknown_manifest_or_tag_is_404() {
    let s = TestServer::start().await;
    let c = s.client();
    setup(&c).await;
    for reference in [DUMMY_DIGEST, "nosuchtag"] {
        let r = c
            .delete(&format!("/v2/{REPO}/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 404).await,
            "MANIFEST_UNKNOWN",
            "{reference}"
        );
    }
}

/// "If the repository does not exist, the response MUST return 404".
#[tokio::test]
async fn delete_manifest_in_unknown_repository_is_404() {
    let s = TestServer::start().await;
    let r = s
        .client()
        .delete(&format!("/v2/never/pushed/manifests/{DUMMY_DIGEST}"))
        .send()
        .await
        .unwrap();
    let code = expect_error(r, 404).await;
    assert!(
        ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].contains(&code.as_str()),
        "{code}"
    );
}

/// "DELETE request to blob URL should yield 202 response", "GET request to
/// deleted blob URL should yield 404 response".
#[tokio::test]
async fn delete_blob_is_202_and_then_404() {
    let s = TestServer::start().await;
    let c = s.client();
    let st = setup(&c).await;
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{}", st.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for digest in [&st.config_digest, &st.layer_digest] {
        let r = c
            .delete(&format!("/v2/{REPO}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{digest}");
        let r = c
            .get(&format!("/v2/{REPO}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(r, 404).await, "BLOB_UNKNOWN");
        assert_eq!(
            status(c.head(&format!("/v2/{REPO}/blobs/{digest}"))).await,
            404
        );
    }
}

/// "If the blob is not found, a `404 Not Found` code MUST be returned."
#[tokio::test]
async fn delete_of_unknown_blob_is_404_blob_unknown() {
    let s = TestServer::start().await;
    let c = s.client();
    setup(&c).await;
    let r = c
        .delete(&format!("/v2/{REPO}/blobs/{DUMMY_DIGEST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UNKNOWN");
}

/// Blob content is shared: deleting it from one repository leaves it in
/// every other repository that holds it.
#[tokio::test]
async fn delete_blob_in_one_repository_keeps_it_in_another() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = b"shared blob content";
    let digest = c.push_blob("team/a", data).await;
    c.push_blob("team/b", data).await;
    let r = c
        .delete(&format!("/v2/team/a/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        status(c.get(&format!("/v2/team/a/blobs/{digest}"))).await,
        404
    );
    let r = c
        .get(&format!("/v2/team/b/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data);
}

#[tokio::test]
async fn deleted_manifest_can_be_pushed_again() {
    let s = TestServer::start().await;
    let c = s.client();
    let st = setup(&c).await;
    let bytes = c
        .get_manifest(REPO, &st.digest)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{}", st.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        c.push_manifest(REPO, "again", OCI_MANIFEST, &bytes).await,
        st.digest
    );
    assert_eq!(status(c.get_manifest(REPO, "again")).await, 200);
}

/// "If tag deletion is disabled, the registry MUST respond with either a
/// `400 Bad Request` or a `405 Method Not Allowed`" (likewise manifests and
/// blobs); nothing is deleted.
#[tokio::test]
async fn deletes_disabled_answer_400_or_405_unsupported_and_change_nothing() {
    let s = TestServer::start_with(|c| c.storage.delete_enabled = false).await;
    let c = s.client();
    let st = setup(&c).await;
    let before = s.stored().await;
    let paths = [
        format!("/v2/{REPO}/manifests/tagtest0"),
        format!("/v2/{REPO}/manifests/{}", st.digest),
        format!("/v2/{REPO}/blobs/{}", st.layer_digest),
    ];
    for path in &paths {
        let r = c.delete(path).send().await.unwrap();
        let code = r.status().as_u16();
        assert!(code == 400 || code == 405, "{path}: {code}");
        assert_eq!(expect_error(r, code).await, "UNSUPPORTED", "{path}");
    }
    s.assert_stored_unchanged(&before, "refused deletes").await;
    assert_eq!(status(c.get_manifest(REPO, "tagtest0")).await, 200);
    assert_eq!(
        status(c.get(&format!("/v2/{REPO}/blobs/{}", st.layer_digest))).await,
        200
    );
}

/// A 405 must say which methods are allowed (RFC 9110 15.5.6).
#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let s = TestServer::start().await;
    let c = s.client();
    setup(&c).await;
    let r = c
        .post(&format!("/v2/{REPO}/manifests/tagtest0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    for m in ["GET", "HEAD", "PUT", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
    assert_eq!(expect_error(r, 405).await, "UNSUPPORTED");
}

/// The management category run on its own (`OCI_TEST_CONTENT_MANAGEMENT=1`
/// only): the repository holds just the one manifest under test. After the
/// tag and the manifest are deleted, "GET request to tags list should
/// reflect manifest deletion" still expects `200 OK` with fewer tags.
#[tokio::test]
async fn tags_list_after_deleting_the_only_manifest_is_still_200() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, _) = c.push_image(REPO, "tagtest0", &[b"only image"]).await;
    assert_eq!(c.tag_list(REPO).await, ["tagtest0"]);
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/tagtest0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(status(c.get_manifest(REPO, &digest)).await, 404);
    assert_eq!(c.tag_list(REPO).await, Vec::<String>::new());
}

/// Deleting a tag leaves the manifest's other tags alone.
#[tokio::test]
async fn delete_tag_keeps_other_tags_of_the_same_manifest() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, manifest) = c.push_image(REPO, "a", &[b"l"]).await;
    c.push_manifest(REPO, "b", OCI_MANIFEST, &manifest).await;
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(c.tag_list(REPO).await, ["b"]);
    let r = c.get_manifest(REPO, "b").send().await.unwrap();
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
}
