//! Pull workflow of the OCI Distribution Spec v1.1 (conformance suite
//! `01_pull_test.go`), plus the pull-side behaviours real clients need:
//! byte ranges, content negotiation, repository scoping.

use crate::support;

use serde_json::json;
use support::{
    error_body, expect_error, sha256_digest, Client, TestServer, ALL_MANIFEST_TYPES,
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, SPEC_ERROR_CODES,
};

const REPO: &str = "conformance/pull";
/// The conformance suite's `dummyDigest`: sha256 of "hello world".
const DUMMY_DIGEST: &str =
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
/// The conformance suite's `nonexistentManifest`.
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";

struct Image {
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    manifest: Vec<u8>,
    digest: String,
}

/// The conformance setup: a config blob, a layer blob, and a pretty-printed
/// OCI manifest (as Go's MarshalIndent writes it) pushed under `tag`.
async fn push_test_image(c: &Client, name: &str, tag: &str, seed: &str) -> Image {
    let config = serde_json::to_vec_pretty(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "author": seed,
    }))
    .unwrap();
    let layer = format!("layer bytes of {seed}").repeat(50).into_bytes();
    let config_digest = c.push_blob(name, &config).await;
    let layer_digest = c.push_blob(name, &layer).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let digest = c.push_manifest(name, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(digest, sha256_digest(&manifest));
    Image {
        config,
        config_digest,
        layer,
        layer_digest,
        manifest,
        digest,
    }
}

#[tokio::test]
async fn base_endpoint_answers_200_with_api_version_header() {
    let s = TestServer::start().await;
    let r = s.client().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let r = s.client().head("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Unknown blobs and manifests are 404: one row a request, naming what it
/// checks (HEAD answers without a body; a GET's error body carries a code
/// where the row names one).
/// Took over `head_nonexistent_blob_is_404`,
/// `get_nonexistent_blob_is_404_blob_unknown`, `head_unknown_tag_is_404`,
/// `head_nonexistent_manifest_as_conformance_names_it_is_404` and
/// `get_nonexistent_manifest_as_conformance_names_it_is_404`.
#[tokio::test]
async fn unknown_blobs_and_manifests_are_404() {
    struct Row {
        what: &'static str,
        method: reqwest::Method,
        path: String,
        /// The error code a GET's body must carry.
        code: Option<&'static str>,
        /// Whether the (HEAD) answer must have no body.
        empty: bool,
    }
    let rows = [
        Row {
            what: "HEAD of a nonexistent blob is 404 without a body",
            method: reqwest::Method::HEAD,
            path: format!("/v2/{REPO}/blobs/{DUMMY_DIGEST}"),
            code: None,
            empty: true,
        },
        Row {
            what: "GET of a nonexistent blob is 404 BLOB_UNKNOWN",
            method: reqwest::Method::GET,
            path: format!("/v2/{REPO}/blobs/{DUMMY_DIGEST}"),
            code: Some("BLOB_UNKNOWN"),
            empty: false,
        },
        Row {
            what: "HEAD of an unknown tag is 404 without a body",
            method: reqwest::Method::HEAD,
            path: format!("/v2/{REPO}/manifests/nosuchtag"),
            code: None,
            empty: true,
        },
        // `01_pull_test.go` "HEAD request to nonexistent manifest should
        // return 404" uses the reference `.INVALID_MANIFEST_NAME` and
        // requires exactly 404.
        Row {
            what: "HEAD of the conformance suite's nonexistent manifest is 404",
            method: reqwest::Method::HEAD,
            path: format!("/v2/{REPO}/manifests/{NONEXISTENT_MANIFEST}"),
            code: None,
            empty: false,
        },
        // `01_pull_test.go` / `02_push_test.go` "GET nonexistent manifest
        // should return 404", with the suite's reference.
        Row {
            what: "GET of the conformance suite's nonexistent manifest is 404",
            method: reqwest::Method::GET,
            path: format!("/v2/{REPO}/manifests/{NONEXISTENT_MANIFEST}"),
            code: None,
            empty: false,
        },
    ];
    let s = TestServer::start().await;
    let c = s.client();
    push_test_image(&c, REPO, "tagtest0", "a").await;
    for row in rows {
        let what = row.what;
        let r = c.request(row.method, &row.path).send().await.unwrap();
        match row.code {
            Some(code) => assert_eq!(expect_error(r, 404).await, code, "{what}"),
            None => {
                assert_eq!(r.status(), 404, "{what}");
                if row.empty {
                    assert!(r.bytes().await.unwrap().is_empty(), "{what}: a body");
                }
            }
        }
    }
}

#[tokio::test]
async fn get_blob_in_unknown_repository_is_404() {
    let s = TestServer::start().await;
    let r = s
        .client()
        .get(&format!("/v2/no/such/repo/blobs/{DUMMY_DIGEST}"))
        .send()
        .await
        .unwrap();
    let code = expect_error(r, 404).await;
    assert!(
        ["BLOB_UNKNOWN", "NAME_UNKNOWN"].contains(&code.as_str()),
        "{code}"
    );
}

/// A pushed blob answers HEAD and GET with its digest and length: HEAD
/// without a body, GET with its bytes. One row a request.
/// Took over `head_existing_blob_is_200_with_digest_and_length` and
/// `get_existing_blob_returns_its_bytes_and_digest`.
#[tokio::test]
async fn existing_blob_answers_head_and_get_with_digest_and_length() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    let (head, get) = (reqwest::Method::HEAD, reqwest::Method::GET);
    // (what, method, digest, bytes)
    let rows = [
        ("HEAD of the config", head, &img.config_digest, &img.config),
        (
            "GET of the config",
            get.clone(),
            &img.config_digest,
            &img.config,
        ),
        ("GET of the layer", get, &img.layer_digest, &img.layer),
    ];
    for (what, method, digest, bytes) in rows {
        let is_head = method == reqwest::Method::HEAD;
        let r = c
            .request(method, &format!("/v2/{REPO}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest.as_str(),
            "{what}"
        );
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            bytes.len().to_string(),
            "{what}"
        );
        let body = r.bytes().await.unwrap();
        if is_head {
            assert!(body.is_empty(), "{what}: HEAD must not have a body");
        } else {
            assert_eq!(body.as_ref(), bytes.as_slice(), "{what}");
        }
    }
}

#[tokio::test]
async fn blob_of_another_repository_is_not_served() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    push_test_image(&c, "other/repo", "v1", "b").await;
    let r = c
        .get(&format!("/v2/other/repo/blobs/{}", img.layer_digest))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UNKNOWN");
    let r = c
        .head(&format!("/v2/other/repo/blobs/{}", img.layer_digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn get_unknown_tag_and_unknown_digest_are_404_manifest_unknown() {
    let s = TestServer::start().await;
    let c = s.client();
    push_test_image(&c, REPO, "tagtest0", "a").await;
    for reference in ["nosuchtag", DUMMY_DIGEST] {
        let r = c.get_manifest(REPO, reference).send().await.unwrap();
        assert_eq!(
            expect_error(r, 404).await,
            "MANIFEST_UNKNOWN",
            "{reference}"
        );
    }
}

#[tokio::test]
async fn get_manifest_in_unknown_repository_is_404() {
    let s = TestServer::start().await;
    let r = s
        .client()
        .get_manifest("never/pushed", "latest")
        .send()
        .await
        .unwrap();
    let code = expect_error(r, 404).await;
    assert!(
        ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].contains(&code.as_str()),
        "{code}"
    );
}

/// A pushed manifest answers HEAD and GET, by digest and by tag, with its
/// digest: HEAD with the length and no body, GET with the stored bytes;
/// by digest, with its content type too. One row a request.
/// Took over `head_manifest_by_digest_is_200_with_headers_and_no_body`,
/// `head_manifest_by_tag_is_200_with_its_digest`,
/// `get_manifest_by_digest_returns_the_stored_bytes` and
/// `get_manifest_by_tag_returns_the_stored_bytes`.
#[tokio::test]
async fn manifest_answers_head_and_get_by_digest_and_by_tag() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    let (head, get) = (reqwest::Method::HEAD, reqwest::Method::GET);
    // (what, method, reference, whether the content type is checked)
    let rows = [
        ("HEAD by digest", head.clone(), img.digest.as_str(), true),
        ("HEAD by tag", head, "tagtest0", false),
        ("GET by digest", get.clone(), img.digest.as_str(), true),
        ("GET by tag", get, "tagtest0", false),
    ];
    for (what, method, reference, content_type) in rows {
        let is_head = method == reqwest::Method::HEAD;
        let r = c
            .request(method, &format!("/v2/{REPO}/manifests/{reference}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            img.digest,
            "{what}"
        );
        if content_type {
            assert_eq!(
                r.headers()["content-type"].to_str().unwrap(),
                OCI_MANIFEST,
                "{what}"
            );
        }
        if is_head {
            assert_eq!(
                r.headers()["content-length"].to_str().unwrap(),
                img.manifest.len().to_string(),
                "{what}"
            );
            assert!(
                r.bytes().await.unwrap().is_empty(),
                "{what}: HEAD must not have a body"
            );
        } else {
            assert_eq!(
                r.bytes().await.unwrap().as_ref(),
                img.manifest.as_slice(),
                "{what}"
            );
        }
    }
}

/// The suite pushes `manifests[1]` by digest only (no tag) and pulls it.
#[tokio::test]
async fn manifest_pushed_by_digest_is_pullable_by_digest() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": img.config_digest, "size": img.config.len()},
        "layers": [],
        "annotations": {"which": "by digest"},
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    assert_eq!(
        c.push_manifest(REPO, &digest, OCI_MANIFEST, &manifest)
            .await,
        digest
    );
    let r = c
        .head(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
    // Pushing by digest creates no tag.
    let tags: serde_json::Value = c.get_json(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(tags["tags"], json!(["tagtest0"]));
}

/// `01_pull_test.go` "400 response body should contain OCI-conforming JSON
/// message": GET `manifests/sha256:totallywrong` is 400 or 404, and a 400
/// carries a code from the spec's table.
#[tokio::test]
async fn malformed_digest_reference_gets_400_or_404_with_a_spec_error_body() {
    let s = TestServer::start().await;
    let c = s.client();
    push_test_image(&c, REPO, "tagtest0", "a").await;
    let r = c
        .get(&format!("/v2/{REPO}/manifests/sha256:totallywrong"))
        .header("content-type", OCI_MANIFEST)
        .body("blablabla")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 400 || status == 404, "status {status}");
    if status == 400 {
        let body = error_body(r).await;
        let code = body["errors"][0]["code"].as_str().unwrap();
        assert!(SPEC_ERROR_CODES.contains(&code), "{code}");
    }
}

#[tokio::test]
async fn manifest_of_another_repository_is_not_served() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    push_test_image(&c, "other", "v1", "b").await;
    let r = c.get_manifest("other", &img.digest).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN");
    let r = c.get_manifest("other", "tagtest0").send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn blob_range_request_returns_206_with_content_range() {
    let s = TestServer::start().await;
    let c = s.client();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let digest = c.push_blob(REPO, &data).await;
    let r = c
        .get(&format!("/v2/{REPO}/blobs/{digest}"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/1000");
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
}

/// Resumed pulls ask for "the rest from offset N" (`bytes=N-`); tail reads
/// use the suffix form (`bytes=-N`).
#[tokio::test]
async fn blob_open_ended_and_suffix_ranges_resume_a_pull() {
    let s = TestServer::start().await;
    let c = s.client();
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = c.push_blob(REPO, &data).await;
    let url = format!("/v2/{REPO}/blobs/{digest}");
    let r = c
        .get(&url)
        .header("range", "bytes=600-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 600-999/1000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[600..]);
    let r = c
        .get(&url)
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 900-999/1000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[900..]);
    // A range running past the end is cut at the end (RFC 9110 14.1.2).
    let r = c
        .get(&url)
        .header("range", "bytes=990-5000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 990-999/1000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[990..]);
}

#[tokio::test]
async fn blob_range_past_the_end_is_416_with_the_size() {
    let s = TestServer::start().await;
    let c = s.client();
    let digest = c.push_blob(REPO, b"0123456789").await;
    let r = c
        .get(&format!("/v2/{REPO}/blobs/{digest}"))
        .header("range", "bytes=10-20")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10");
}

#[tokio::test]
async fn head_blob_advertises_byte_ranges() {
    let s = TestServer::start().await;
    let c = s.client();
    let digest = c.push_blob(REPO, b"0123456789").await;
    let r = c
        .head(&format!("/v2/{REPO}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
}

/// Content negotiation: a Docker schema2 manifest is served as such, and a
/// client that lists only OCI types is told it is not there.
#[tokio::test]
async fn manifest_is_negotiated_by_accept_header() {
    let s = TestServer::start().await;
    let c = s.client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = c.push_blob(REPO, config).await;
    let layer_digest = c.push_blob(REPO, b"docker layer").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer_digest, "size": 12}],
    }))
    .unwrap();
    let digest = c
        .push_manifest(REPO, "docker", DOCKER_MANIFEST, &manifest)
        .await;

    let r = c
        .get(&format!("/v2/{REPO}/manifests/docker"))
        .header("accept", OCI_MANIFEST)
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN");

    let r = c
        .get(&format!("/v2/{REPO}/manifests/docker"))
        .header("accept", format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        DOCKER_MANIFEST
    );
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());

    let r = c
        .get(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        DOCKER_MANIFEST
    );
}

/// "The value should match the `Content-Type` used when the manifest was
/// pushed", and HEAD and GET describe the same object.
#[tokio::test]
async fn head_and_get_agree_for_an_index() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": img.digest,
            "size": img.manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let digest = c.push_manifest(REPO, "multi", OCI_INDEX, &index).await;
    let head = c
        .head(&format!("/v2/{REPO}/manifests/multi"))
        .header("accept", ALL_MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    let get = c.get_manifest(REPO, "multi").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(get.status(), 200);
    for h in ["content-type", "docker-content-digest", "content-length"] {
        assert_eq!(head.headers()[h], get.headers()[h], "{h}");
    }
    assert_eq!(get.headers()["content-type"].to_str().unwrap(), OCI_INDEX);
    assert_eq!(
        get.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(get.bytes().await.unwrap().as_ref(), index.as_slice());
}

/// The manifest's own digest algorithm is kept: pushed by a sha512 digest,
/// it is answered with that digest (`Docker-Content-Digest` "MUST match the
/// digest provided by the client").
#[tokio::test]
async fn manifest_pushed_by_sha512_digest_is_served_by_it() {
    use sha2::Digest as _;
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": img.config_digest, "size": img.config.len()},
        "layers": [],
        "annotations": {"algorithm": "sha512"},
    }))
    .unwrap();
    let digest = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&manifest)));
    assert_eq!(
        c.push_manifest(REPO, &digest, OCI_MANIFEST, &manifest)
            .await,
        digest
    );
    let r = c.get_manifest(REPO, &digest).send().await.unwrap();
    support::assert_served(r, &digest, manifest.as_slice()).await;
}

#[tokio::test]
async fn pull_works_with_deeply_nested_repository_names() {
    let s = TestServer::start().await;
    let c = s.client();
    let name = "a/b.c/d_e/f--g/manifests/blobs/tags";
    let img = push_test_image(&c, name, "v1", "nested").await;
    let r = c.get_manifest(name, "v1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    let r = c
        .get(&format!("/v2/{name}/blobs/{}", img.layer_digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.layer.as_slice());
    let tags: serde_json::Value = c.get_json(&format!("/v2/{name}/tags/list")).await;
    assert_eq!(tags, json!({"name": name, "tags": ["v1"]}));
}

/// A blob digest is not a manifest: the manifests endpoint does not serve
/// layers or configs.
#[tokio::test]
async fn blob_digest_is_not_a_manifest() {
    let s = TestServer::start().await;
    let c = s.client();
    let img = push_test_image(&c, REPO, "tagtest0", "a").await;
    for d in [&img.layer_digest, &img.config_digest] {
        let r = c.get_manifest(REPO, d).send().await.unwrap();
        assert_eq!(expect_error(r, 404).await, "MANIFEST_UNKNOWN", "{d}");
        let r = c
            .head(&format!("/v2/{REPO}/manifests/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{d}");
    }
}

/// distribution-spec main, "Warnings": what the configuration asks that
/// this registry does otherwise (a registry:2 key it reads but does not
/// carry out) is told to clients of `/v2/` as `Warning: 299 - "..."`, all
/// within 4,096 bytes; a configuration without such keys adds none.
#[tokio::test]
async fn base_endpoint_warns_of_configuration_it_does_otherwise() {
    let yaml = "version: 0.1\nstorage: {filesystem: {}}\nhttp: {adress: x}\n";
    let loaded = registry::config::distribution::load(
        std::path::Path::new("config.yml"),
        yaml,
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    let warnings = loaded.config.warnings.clone();
    assert!(!warnings.is_empty());
    let s = TestServer::start_with(move |c| c.warnings = warnings.clone()).await;
    let r = s.client().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got: Vec<String> = r
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        got.iter()
            .any(|w| w.starts_with("299 - \"this registry's configuration: ")
                && w.contains("http.adress")
                && w.ends_with('"')),
        "{got:?}"
    );
    assert!(got.iter().map(String::len).sum::<usize>() <= 4096);
    let plain = TestServer::start().await;
    let r = plain.client().get("/v2/").send().await.unwrap();
    assert!(r.headers().get("warning").is_none());
}
