//! Bad input: every refused request gets the spec's error code and a 4xx
//! status, never a panic or a 5xx, and leaves storage exactly as it was.
//! Where a test opens an upload session itself, the files of that session
//! (under `<name>/_uploads/<id>/`) are the only difference allowed.

use crate::support;

use serde_json::json;
use support::{
    basic_auth_value, error_body, expect_error, expect_spec_error, image_manifest, raw_request,
    raw_request_write_first, sha256_digest, upload_id, Client, RawResponse, TestServer,
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, SPEC_ERROR_CODES,
};

const REPO: &str = "bad/input";
const DUMMY_DIGEST: &str =
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
const MIB: usize = 1024 * 1024;

/// A request head with alice's credentials.
fn head(method: &str, path: &str, extra: &[(&str, String)]) -> String {
    let mut h = format!(
        "{method} {path} HTTP/1.1\nHost: registry.test\nAuthorization: {}\n",
        basic_auth_value()
    );
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\n"));
    }
    h
}

fn assert_raw_error(r: &RawResponse, status: u16, codes: &[&str], what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: status; body {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let code = r.error_code();
    assert!(
        codes.contains(&code.as_str()),
        "{what}: code {code}, expected one of {codes:?}"
    );
}

/// A repository with an image in it, so refusals are judged against real
/// content; returns (manifest digest, config digest).
async fn populated(c: &Client) -> (String, Vec<u8>) {
    c.push_image(REPO, "v1", &[b"existing layer"]).await
}

// ----- repository names -----

#[tokio::test]
async fn dot_dot_names_are_name_invalid_and_store_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let root = s.storage_root();
    let before = s.stored().await;
    for path in [
        "/v2/../x/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/%2e%2e/x/tags/list",
        "/v2/../x/manifests/latest",
        "/v2/bad/../../x/blobs/uploads/",
    ] {
        let method = if path.ends_with("uploads/") {
            "POST"
        } else {
            "GET"
        };
        let r = raw_request(
            s.addr,
            &head(method, path, &[("Content-Length", "0".into())]),
            b"",
            false,
        )
        .await;
        assert_raw_error(&r, 400, &["NAME_INVALID"], path);
    }
    let manifest = image_manifest(DUMMY_DIGEST, 1, &[]);
    let r = raw_request(
        s.addr,
        &head(
            "PUT",
            "/v2/../escape/manifests/latest",
            &[
                ("Content-Type", OCI_MANIFEST.into()),
                ("Content-Length", manifest.len().to_string()),
            ],
        ),
        &manifest,
        false,
    )
    .await;
    assert_raw_error(&r, 400, &["NAME_INVALID"], "PUT ../escape");
    s.assert_stored_unchanged(&before, "dot-dot names").await;
    assert!(!s.dir().join("escape").exists());
    assert!(!root.parent().unwrap().join("x").exists());
}

#[tokio::test]
async fn uppercase_names_are_name_invalid_and_store_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    for name in ["Upper", "bad/Input", "ALLCAPS/x"] {
        let r = c
            .get(&format!("/v2/{name}/tags/list"))
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(r, 400).await, "NAME_INVALID", "{name} tags");
        let r = c.get_manifest(name, "v1").send().await.unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "NAME_INVALID",
            "{name} manifest"
        );
        let r = c
            .post(&format!(
                "/v2/{name}/blobs/uploads/?digest={}",
                sha256_digest(b"abc")
            ))
            .body("abc")
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(r, 400).await, "NAME_INVALID", "{name} upload");
        let r = c
            .put(&format!("/v2/{name}/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(image_manifest(DUMMY_DIGEST, 1, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "NAME_INVALID",
            "{name} manifest put"
        );
    }
    s.assert_stored_unchanged(&before, "uppercase names").await;
}

#[tokio::test]
async fn malformed_name_components_are_name_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    for path in [
        "/v2/a//b/tags/list",
        "/v2/-a/tags/list",
        "/v2/a-/tags/list",
        "/v2/a___b/tags/list",
        "/v2/a..b/tags/list",
        "/v2/_a/tags/list",
        "/v2/a%20b/tags/list",
        "/v2/a%2Fb/tags/list",
    ] {
        let r = c.get(path).send().await.unwrap();
        assert_eq!(expect_error(r, 400).await, "NAME_INVALID", "{path}");
    }
}

/// "The total length of a repository name, including slashes, MUST be less
/// than 256 characters."
#[tokio::test]
async fn over_long_names_are_name_invalid_and_store_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let single = "a".repeat(256);
    let multi = format!("{}/{}/{}", "b".repeat(100), "c".repeat(100), "d".repeat(54));
    assert_eq!(multi.len(), 256);
    let huge = "e/".repeat(2000) + "e";
    for name in [&single, &multi, &huge] {
        let r = c
            .post(&format!("/v2/{name}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "NAME_INVALID",
            "{} chars",
            name.len()
        );
        let r = c
            .put(&format!("/v2/{name}/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(image_manifest(DUMMY_DIGEST, 1, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "NAME_INVALID",
            "{} chars",
            name.len()
        );
    }
    s.assert_stored_unchanged(&before, "over-long names").await;
}

#[tokio::test]
async fn name_of_255_characters_is_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let name = format!("{}/{}/{}", "b".repeat(100), "c".repeat(100), "d".repeat(53));
    assert_eq!(name.len(), 255);
    let (digest, _) = c.push_image(&name, "v1", &[b"long name"]).await;
    let r = c.get_manifest(&name, "v1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
}

// ----- digests -----

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let upper = DUMMY_DIGEST.to_uppercase().replacen("SHA256", "sha256", 1);
    let short = "sha256:abc".to_owned();
    let no_colon = "sha256".to_owned();
    let empty_hex = "sha256:".to_owned();
    let not_hex = format!("sha256:{}", "g".repeat(64));
    for bad in [&upper, &short, &no_colon, &empty_hex, &not_hex] {
        let r = c
            .get(&format!("/v2/{REPO}/blobs/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "DIGEST_INVALID",
            "GET blob {bad}"
        );
        let r = c
            .head(&format!("/v2/{REPO}/blobs/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "HEAD blob {bad}");
        let r = c
            .post(&format!("/v2/{REPO}/blobs/uploads/?digest={bad}"))
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "DIGEST_INVALID",
            "POST ?digest={bad}"
        );
        let r = c
            .post(&format!("/v2/{REPO}/blobs/uploads/?mount={bad}&from=other"))
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID", "mount {bad}");
        let r = c
            .delete(&format!("/v2/{REPO}/blobs/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "DIGEST_INVALID",
            "DELETE blob {bad}"
        );
    }
    s.assert_stored_unchanged(&before, "malformed digests")
        .await;
}

#[tokio::test]
async fn digest_with_path_traversal_is_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    for path in [
        format!("/v2/{REPO}/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd"),
        format!("/v2/{REPO}/blobs/sha256:%2e%2e"),
        format!("/v2/{REPO}/manifests/sha256:..%2F..%2Fx"),
    ] {
        let r = raw_request(s.addr, &head("GET", &path, &[]), b"", false).await;
        assert_raw_error(&r, 400, &["DIGEST_INVALID"], &path);
    }
    s.assert_stored_unchanged(&before, "traversal digests")
        .await;
}

#[tokio::test]
async fn unknown_digest_algorithms_are_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let md5 = "md5:5eb63bbbe01eeed093cb22bb8f5acdc3";
    let sha384 = format!("sha384:{}", "a".repeat(96));
    let blake3 = format!("blake3:{}", "b".repeat(64));
    for bad in [md5, &sha384, &blake3] {
        let r = c
            .get(&format!("/v2/{REPO}/blobs/{bad}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "GET {bad}: {status}");
        let code = expect_error(r, status).await;
        assert!(
            ["DIGEST_INVALID", "UNSUPPORTED", "BLOB_UNKNOWN"].contains(&code.as_str()),
            "{code}"
        );
        let r = c
            .post(&format!("/v2/{REPO}/blobs/uploads/?digest={bad}"))
            .body("data")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "POST {bad}: {status}");
        let code = expect_error(r, status).await;
        assert!(
            ["DIGEST_INVALID", "UNSUPPORTED"].contains(&code.as_str()),
            "{code}"
        );
    }
    s.assert_stored_unchanged(&before, "unknown algorithms")
        .await;
}

#[tokio::test]
async fn completing_an_upload_with_an_unknown_algorithm_stores_no_blob() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let loc = c.start_upload(REPO).await;
    let r = c.patch(&loc).body("some data").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(&format!("{loc}?digest=sha384:{}", "a".repeat(96)))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    let code = expect_error(r, status).await;
    assert!(
        ["DIGEST_INVALID", "UNSUPPORTED"].contains(&code.as_str()),
        "{code}"
    );
    s.assert_only_upload_session_changed(&before, &upload_id(&loc), "unknown algorithm on PUT")
        .await;
}

#[tokio::test]
async fn completing_an_upload_without_a_digest_is_digest_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    let before = s.stored().await;
    let loc = c.start_upload(REPO).await;
    let r = c.put(&loc).body("final chunk").send().await.unwrap();
    assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
    s.assert_only_upload_session_changed(&before, &upload_id(&loc), "PUT without digest")
        .await;
    let r = c
        .get(&format!(
            "/v2/{REPO}/blobs/{}",
            sha256_digest(b"final chunk")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// The digest is verified before a blob becomes visible: a mismatch is
/// `DIGEST_INVALID` and nothing is stored under either digest.
#[tokio::test]
async fn wrong_digest_on_upload_completion_is_digest_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let data = b"the real content".to_vec();
    let claimed = sha256_digest(b"some other content");
    let loc = c.start_upload(REPO).await;
    let r = c.patch(&loc).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(&format!("{loc}?digest={claimed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
    for d in [&claimed, &sha256_digest(&data)] {
        let r = c
            .head(&format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{d}");
    }
    s.assert_only_upload_session_changed(&before, &upload_id(&loc), "wrong digest on PUT")
        .await;
}

#[tokio::test]
async fn wrong_digest_on_put_with_body_is_digest_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let loc = c.start_upload(REPO).await;
    let claimed = sha256_digest(b"not this");
    let r = c
        .put(&format!("{loc}?digest={claimed}"))
        .header("content-type", "application/octet-stream")
        .body("but this")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
    assert_eq!(
        c.head(&format!("/v2/{REPO}/blobs/{claimed}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    s.assert_only_upload_session_changed(
        &before,
        &upload_id(&loc),
        "wrong digest on PUT with body",
    )
    .await;
}

#[tokio::test]
async fn wrong_digest_on_monolithic_post_stores_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    for (claimed, body) in [
        (sha256_digest(b"expected"), b"actual".to_vec()),
        (sha256_digest(b"non-empty"), Vec::new()),
    ] {
        let r = c
            .post(&format!("/v2/{REPO}/blobs/uploads/?digest={claimed}"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
    }
    s.assert_stored_unchanged(&before, "monolithic POST with wrong digest")
        .await;
}

// ----- truncated bodies and wrong lengths -----

/// A `Content-Length` larger than the body actually sent: the client sends
/// half and closes its write side. Nothing may be stored.
#[tokio::test]
async fn truncated_monolithic_upload_stores_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let data = vec![7u8; 100_000];
    let digest = sha256_digest(&data);
    let r = raw_request(
        s.addr,
        &head(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Length", data.len().to_string()),
            ],
        ),
        &data[..50_000],
        true,
    )
    .await;
    assert_raw_error(
        &r,
        400,
        &["BLOB_UPLOAD_INVALID", "SIZE_INVALID"],
        "truncated POST",
    );
    s.assert_stored_unchanged(&before, "truncated monolithic upload")
        .await;
    let r = c
        .head(&format!("/v2/{REPO}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A request refused before its body is read, and what it must get.
struct Early {
    what: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// Refusals sent before the body is read reach a client that writes its
/// whole request before reading (lingering close): the spec error, not a
/// reset. Each case is sent twice, so the connection after it is shown
/// to be fine too.
#[tokio::test]
async fn early_refusals_reach_a_client_that_sends_everything_first() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let loc = c.start_upload(REPO).await;
    let r = c.patch(&loc).body(vec![1u8; 100]).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let config_digest = c.push_blob(REPO, b"{}").await;
    let big_manifest = manifest_of_size(&config_digest, 2, 5 * MIB);
    let just_over = manifest_of_size(&config_digest, 2, 4 * MIB + 1);
    let before = s.stored().await;
    let chunked = {
        let mut b = format!("{:x}\r\n", big_manifest.len()).into_bytes();
        b.extend_from_slice(&big_manifest);
        b.extend_from_slice(b"\r\n0\r\n\r\n");
        b
    };
    let manifest_path = format!("/v2/{REPO}/manifests/big");
    let cases = [
        Early {
            what: "4 MiB + 1 byte manifest",
            path: manifest_path.clone(),
            headers: vec![
                ("Content-Type", OCI_MANIFEST.into()),
                ("Content-Length", just_over.len().to_string()),
            ],
            body: just_over,
            status: 413,
            code: "MANIFEST_INVALID",
        },
        Early {
            what: "5 MiB manifest, length announced",
            path: manifest_path.clone(),
            headers: vec![
                ("Content-Type", OCI_MANIFEST.into()),
                ("Content-Length", big_manifest.len().to_string()),
            ],
            body: big_manifest,
            status: 413,
            code: "MANIFEST_INVALID",
        },
        Early {
            what: "5 MiB manifest, chunked",
            path: manifest_path,
            headers: vec![
                ("Content-Type", OCI_MANIFEST.into()),
                ("Transfer-Encoding", "chunked".into()),
            ],
            body: chunked,
            status: 413,
            code: "MANIFEST_INVALID",
        },
        Early {
            what: "32 MiB PATCH out of order",
            path: loc.clone(),
            headers: vec![
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Range", format!("5000-{}", 5000 + 32 * MIB - 1)),
                ("Content-Length", (32 * MIB).to_string()),
            ],
            body: vec![9u8; 32 * MIB],
            status: 416,
            code: "BLOB_UPLOAD_INVALID",
        },
    ];
    for Early {
        what,
        path,
        headers,
        body,
        status,
        code,
    } in &cases
    {
        for attempt in 1..=2 {
            let method = if path.contains("/manifests/") {
                "PUT"
            } else {
                "PATCH"
            };
            let r = raw_request_write_first(s.addr, &head(method, path, headers), body)
                .await
                .unwrap_or_else(|e| panic!("{what} (attempt {attempt}): {e}"));
            assert_raw_error(&r, *status, &[code], what);
        }
    }
    s.assert_stored_unchanged(&before, "early refusals").await;
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-99");
}

/// RFC 9112 §3.2: two Host headers are a 400, whichever comes first.
#[tokio::test]
async fn two_host_headers_are_refused() {
    let s = TestServer::start().await;
    for path in ["/v2/", &format!("/v2/{REPO}/tags/list"), "/livez"] {
        let h = head("GET", path, &[("Host", "other.test".into())]);
        let r = raw_request(s.addr, &h, b"", false).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert!(SPEC_ERROR_CODES.contains(&r.error_code().as_str()), "{r:?}");
    }
    let r = raw_request(s.addr, &head("GET", "/v2/", &[]), b"", false).await;
    assert_eq!(r.status, 200);
}

/// A manifest whose descriptor sizes are negative or not the stored blobs'
/// sizes is refused, naming the descriptor; nothing is stored.
#[tokio::test]
async fn descriptor_sizes_must_be_the_stored_sizes() {
    let s = TestServer::start().await;
    let c = s.client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"layer bytes";
    let config_digest = c.push_blob(REPO, config).await;
    let layer_digest = c.push_blob(REPO, layer).await;
    let before = s.stored().await;
    let manifest = |config_size: i64, layer_size: i64| {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        })
    };
    let (c_len, l_len) = (config.len() as i64, layer.len() as i64);
    let cases = [
        ("negative layer size", manifest(c_len, -1), "layers[0]"),
        ("negative config size", manifest(-5, l_len), "config"),
        (
            "layer size too large",
            manifest(c_len, l_len + 1),
            "layers[0]",
        ),
        (
            "layer size too small",
            manifest(c_len, l_len - 1),
            "layers[0]",
        ),
        ("config size wrong", manifest(0, l_len), "config"),
    ];
    for (what, body, field) in cases {
        let r = c
            .put(&format!("/v2/{REPO}/manifests/sized"))
            .header("content-type", OCI_MANIFEST)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let body = error_body(r).await;
        assert_eq!(
            body["errors"][0]["code"], "MANIFEST_INVALID",
            "{what}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(field), "{what}: {message}");
    }
    s.assert_stored_unchanged(&before, "manifests with wrong sizes")
        .await;
    let r = c
        .put(&format!("/v2/{REPO}/manifests/sized"))
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest(c_len, l_len)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the right sizes");
}

#[tokio::test]
async fn truncated_patch_records_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    let loc = c.start_upload(REPO).await;
    let r = c.patch(&loc).body(vec![1u8; 1000]).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let before = s.stored().await;
    let r = raw_request(
        s.addr,
        &head(
            "PATCH",
            &loc,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Length", "200000".into()),
            ],
        ),
        &[2u8; 80_000],
        true,
    )
    .await;
    assert_eq!(r.status / 100, 4, "truncated PATCH: {r:?}");
    let code = r.error_code();
    assert!(
        ["BLOB_UPLOAD_INVALID", "SIZE_INVALID"].contains(&code.as_str()),
        "{code}"
    );
    s.assert_stored_unchanged(&before, "truncated PATCH").await;
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["range"],
        "0-999",
        "the truncated chunk was not recorded"
    );
}

#[tokio::test]
async fn truncated_final_put_stores_no_blob() {
    let s = TestServer::start().await;
    let c = s.client();
    let before = s.stored().await;
    let data = vec![3u8; 64_000];
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    let r = raw_request(
        s.addr,
        &head(
            "PUT",
            &format!("{loc}?digest={digest}"),
            &[("Content-Length", data.len().to_string())],
        ),
        &data[..10_000],
        true,
    )
    .await;
    assert_eq!(r.status / 100, 4, "truncated PUT: {r:?}");
    let code = r.error_code();
    assert!(
        ["BLOB_UPLOAD_INVALID", "SIZE_INVALID"].contains(&code.as_str()),
        "{code}"
    );
    s.assert_only_upload_session_changed(&before, &upload_id(&loc), "truncated PUT")
        .await;
    let r = c
        .head(&format!("/v2/{REPO}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn truncated_manifest_put_stores_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, manifest) = populated(&c).await;
    let before = s.stored().await;
    let r = raw_request(
        s.addr,
        &head(
            "PUT",
            &format!("/v2/{REPO}/manifests/truncated"),
            &[
                ("Content-Type", OCI_MANIFEST.into()),
                ("Content-Length", manifest.len().to_string()),
            ],
        ),
        &manifest[..manifest.len() / 2],
        true,
    )
    .await;
    assert_raw_error(
        &r,
        400,
        &["MANIFEST_INVALID", "SIZE_INVALID"],
        "truncated manifest",
    );
    s.assert_stored_unchanged(&before, "truncated manifest")
        .await;
    let r = c.get_manifest(REPO, "truncated").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn content_range_disagreeing_with_content_length_is_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    let before = s.stored().await;
    let loc = c.start_upload(REPO).await;
    let r = c
        .patch(&loc)
        .header("content-range", "0-99")
        .body(vec![0u8; 50])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 400 || status == 416, "{status}");
    let code = expect_error(r, status).await;
    assert!(
        ["SIZE_INVALID", "BLOB_UPLOAD_INVALID"].contains(&code.as_str()),
        "{code}"
    );
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0");
    s.assert_only_upload_session_changed(&before, &upload_id(&loc), "Content-Range mismatch")
        .await;
}

#[tokio::test]
async fn malformed_content_range_is_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    let before = s.stored().await;
    let loc = c.start_upload(REPO).await;
    for range in [
        "bytes=0-9",
        "bytes 0-9/10",
        "0 - 9",
        "+0-9",
        "0-+9",
        "abc",
        "9-0",
        "0-",
        "-9",
    ] {
        let r = c
            .patch(&loc)
            .header("content-range", range)
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 400 || status == 416, "{range}: {status}");
        let code = expect_error(r, status).await;
        assert!(SPEC_ERROR_CODES.contains(&code.as_str()), "{range}: {code}");
    }
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0");
    s.assert_only_upload_session_changed(&before, &upload_id(&loc), "malformed Content-Range")
        .await;
}

// ----- manifests -----

async fn put_manifest(
    c: &Client,
    reference: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    c.put(&format!("/v2/{REPO}/manifests/{reference}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A manifest of exactly `len` bytes: a valid image manifest padded with an
/// annotation.
fn manifest_of_size(config_digest: &str, config_size: usize, len: usize) -> Vec<u8> {
    let base = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [],
        "annotations": {"pad": ""},
    }))
    .unwrap();
    let pad = len - base.len();
    let text = String::from_utf8(base)
        .unwrap()
        .replace("\"pad\":\"\"", &format!("\"pad\":\"{}\"", "x".repeat(pad)));
    assert_eq!(text.len(), len);
    text.into_bytes()
}

/// "Clients and registries SHOULD expect to support manifest uploads of at
/// least 4 MiB."
#[tokio::test]
async fn manifest_of_exactly_4_mib_is_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let config = b"{}";
    let config_digest = c.push_blob(REPO, config).await;
    let manifest = manifest_of_size(&config_digest, 2, 4 * MIB);
    let r = put_manifest(&c, "big", OCI_MANIFEST, manifest.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c.get_manifest(REPO, "big").send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 4 * MIB);
}

// Manifests over the limit (413, announced or streamed, just over 4 MiB
// and at 5 MiB): `early_refusals_reach_a_client_that_sends_everything_first`.

#[tokio::test]
async fn manifest_referencing_missing_blobs_is_manifest_blob_unknown() {
    let s = TestServer::start().await;
    let c = s.client();
    let config = br#"{"os":"linux"}"#;
    let config_digest = c.push_blob(REPO, config).await;
    let layer_digest = c.push_blob(REPO, b"present layer").await;
    let before = s.stored().await;
    let missing = sha256_digest(b"never uploaded");
    let cases = [
        (
            "missing layer",
            image_manifest(
                &config_digest,
                config.len(),
                &[(&layer_digest, 13), (&missing, 14)],
            ),
        ),
        (
            "missing config",
            image_manifest(&missing, 14, &[(&layer_digest, 13)]),
        ),
    ];
    for (what, manifest) in cases {
        let r = put_manifest(&c, "v1", OCI_MANIFEST, manifest.clone()).await;
        assert_eq!(
            expect_error(r, 400).await,
            "MANIFEST_BLOB_UNKNOWN",
            "{what}"
        );
        let r = put_manifest(&c, &sha256_digest(&manifest), OCI_MANIFEST, manifest).await;
        assert_eq!(
            expect_error(r, 400).await,
            "MANIFEST_BLOB_UNKNOWN",
            "{what} by digest"
        );
    }
    s.assert_stored_unchanged(&before, "manifest with missing blobs")
        .await;
}

/// What a refused manifest row may refer to: the repository holds an
/// image (`populated`) and the config `{"os":"linux"}`; another repository
/// holds a layer.
struct Held {
    config_digest: String,
    config_len: usize,
    /// A layer of `someone/else`, not of this repository.
    foreign: String,
}

/// Manifests whose references do not hold are refused with 400 and one of
/// the row's codes, and store nothing. One row a manifest, each on a fresh
/// registry. Took over
/// `manifest_referencing_a_blob_of_another_repository_is_manifest_blob_unknown`,
/// `index_referencing_a_missing_manifest_is_manifest_blob_unknown`,
/// `index_naming_a_blob_as_child_is_manifest_blob_unknown` and
/// `subject_with_malformed_digest_is_manifest_invalid`.
#[tokio::test]
async fn manifests_with_references_that_do_not_hold_are_refused() {
    type Build = fn(&Held) -> Vec<u8>;
    // (what, reference, content type, manifest, allowed codes)
    let rows: [(&str, &str, &str, Build, &[&str]); 4] = [
        (
            "a blob held by another repository does not satisfy a manifest here",
            "v1",
            OCI_MANIFEST,
            |h| image_manifest(&h.config_digest, h.config_len, &[(&h.foreign, 11)]),
            &["MANIFEST_BLOB_UNKNOWN"],
        ),
        (
            "an index with a missing child",
            "multi",
            OCI_INDEX,
            |_| {
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [{"mediaType": OCI_MANIFEST, "digest": DUMMY_DIGEST, "size": 100}],
                }))
                .unwrap()
            },
            &["MANIFEST_BLOB_UNKNOWN"],
        ),
        (
            "an index naming a layer blob of the repository as a child (not a manifest)",
            "multi",
            OCI_INDEX,
            |_| {
                let layer = sha256_digest(b"existing layer");
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [{"mediaType": OCI_MANIFEST, "digest": layer, "size": 14}],
                }))
                .unwrap()
            },
            &["MANIFEST_BLOB_UNKNOWN"],
        ),
        (
            "a subject with a malformed digest",
            "v1",
            OCI_MANIFEST,
            |h| {
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": h.config_digest, "size": h.config_len},
                    "layers": [],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:../../../x", "size": 1},
                }))
                .unwrap()
            },
            &["MANIFEST_INVALID", "DIGEST_INVALID"],
        ),
    ];
    for (what, reference, content_type, build, codes) in rows {
        let s = TestServer::start().await;
        let c = s.client();
        populated(&c).await;
        let config = br#"{"os":"linux"}"#;
        let held = Held {
            config_digest: c.push_blob(REPO, config).await,
            config_len: config.len(),
            foreign: c.push_blob("someone/else", b"their layer").await,
        };
        let before = s.stored().await;
        let r = put_manifest(&c, reference, content_type, build(&held)).await;
        let code = expect_error(r, 400).await;
        assert!(codes.contains(&code.as_str()), "{what}: {code}");
        s.assert_stored_unchanged(&before, what).await;
    }
}

#[tokio::test]
async fn schema1_manifests_are_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let schema1 = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": REPO,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": DUMMY_DIGEST}],
        "history": [{"v1Compatibility": "{\"id\":\"x\"}"}],
        "signatures": [{"header": {"alg": "ES256"}, "signature": "abc", "protected": "def"}],
    }))
    .unwrap();
    for content_type in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/json",
    ] {
        let r = put_manifest(&c, "old", content_type, schema1.clone()).await;
        let status = r.status().as_u16();
        assert!(status == 400 || status == 415, "{content_type}: {status}");
        let body = error_body(r).await;
        let code = body["errors"][0]["code"].as_str().unwrap();
        assert!(
            ["MANIFEST_INVALID", "UNSUPPORTED"].contains(&code),
            "{content_type}: {code}"
        );
    }
    s.assert_stored_unchanged(&before, "schema1 manifests")
        .await;
}

#[tokio::test]
async fn non_object_and_garbage_manifests_are_manifest_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    for body in [
        "null",
        "[]",
        "\"string\"",
        "42",
        "true",
        "{}",
        "blablabla",
        "",
        "{",
        "\u{feff}{}",
        r#"{"schemaVersion":2}"#,
        r#"{"schemaVersion":3,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
        r#"{"schemaVersion":"2","mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#,
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#,
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x/y","size":1},"layers":[]}"#,
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}}"#,
    ] {
        let r = put_manifest(&c, "garbage", OCI_MANIFEST, body.as_bytes().to_vec()).await;
        assert_eq!(expect_error(r, 400).await, "MANIFEST_INVALID", "{body:?}");
    }
    s.assert_stored_unchanged(&before, "garbage manifests")
        .await;
}

#[tokio::test]
async fn descriptor_with_malformed_digest_is_refused() {
    let s = TestServer::start().await;
    let c = s.client();
    let config = br#"{"os":"linux"}"#;
    let config_digest = c.push_blob(REPO, config).await;
    let before = s.stored().await;
    for bad in [
        "sha256:xyz",
        "md5:5eb63bbbe01eeed093cb22bb8f5acdc3",
        "nonsense",
        "sha256:../../x",
    ] {
        let manifest = image_manifest(&config_digest, config.len(), &[(bad, 1)]);
        let r = put_manifest(&c, "v1", OCI_MANIFEST, manifest).await;
        let code = expect_error(r, 400).await;
        assert!(
            [
                "MANIFEST_INVALID",
                "DIGEST_INVALID",
                "MANIFEST_BLOB_UNKNOWN"
            ]
            .contains(&code.as_str()),
            "{bad}: {code}"
        );
    }
    s.assert_stored_unchanged(&before, "descriptors with bad digests")
        .await;
}

/// "If a manifest includes a `mediaType` field, clients MUST set
/// `Content-Type` to exactly that value."
#[tokio::test]
async fn content_type_contradicting_media_type_field_is_manifest_invalid() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, manifest) = populated(&c).await;
    let before = s.stored().await;
    for content_type in [DOCKER_MANIFEST, OCI_INDEX] {
        let r = put_manifest(&c, "mismatch", content_type, manifest.clone()).await;
        assert_eq!(
            expect_error(r, 400).await,
            "MANIFEST_INVALID",
            "{content_type}"
        );
    }
    s.assert_stored_unchanged(&before, "Content-Type mismatch")
        .await;
}

/// References that look like digests but are not the manifest's digest, or
/// are no valid digest at all, and tags the grammar refuses.
#[tokio::test]
async fn digest_shaped_and_invalid_references_are_refused_on_put() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, manifest) = populated(&c).await;
    let before = s.stored().await;

    let other = sha256_digest(b"another manifest");
    let r = put_manifest(&c, &other, OCI_MANIFEST, manifest.clone()).await;
    assert_eq!(
        expect_error(r, 400).await,
        "DIGEST_INVALID",
        "digest of other content"
    );

    let sha512_of_other = format!("sha512:{}", "0".repeat(128));
    let r = put_manifest(&c, &sha512_of_other, OCI_MANIFEST, manifest.clone()).await;
    assert_eq!(
        expect_error(r, 400).await,
        "DIGEST_INVALID",
        "sha512 mismatch"
    );

    for bad in ["sha256:abc", "sha256:", "latest:v1", ":tag"] {
        let r = put_manifest(&c, bad, OCI_MANIFEST, manifest.clone()).await;
        let code = expect_error(r, 400).await;
        assert!(
            ["DIGEST_INVALID", "TAG_INVALID", "MANIFEST_INVALID"].contains(&code.as_str()),
            "{bad}: {code}"
        );
    }
    let too_long = "t".repeat(129);
    for bad in [
        ".hidden",
        "-dash",
        too_long.as_str(),
        "a+b",
        "%C3%A9t%C3%A9",
    ] {
        let r = put_manifest(&c, bad, OCI_MANIFEST, manifest.clone()).await;
        let code = expect_error(r, 400).await;
        assert!(
            ["TAG_INVALID", "MANIFEST_INVALID"].contains(&code.as_str()),
            "{bad}: {code}"
        );
    }
    s.assert_stored_unchanged(&before, "bad references").await;
    let tags: serde_json::Value = c.get_json(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(tags["tags"], json!(["v1"]));
}

/// The referrers tag schema (`sha256-<hex>`) looks like a digest but is a
/// valid tag, and must work as one.
#[tokio::test]
async fn referrers_schema_tag_is_an_ordinary_tag() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, manifest) = populated(&c).await;
    let tag = digest.replace(':', "-");
    assert_eq!(tag.len(), 71);
    assert_eq!(
        c.push_manifest(REPO, &tag, OCI_MANIFEST, &manifest).await,
        digest
    );
    let r = c.get_manifest(REPO, &tag).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let max = "T".repeat(128);
    assert_eq!(
        c.push_manifest(REPO, &max, OCI_MANIFEST, &manifest).await,
        digest
    );
}

// ----- other requests -----

#[tokio::test]
async fn invalid_upload_ids_are_blob_upload_unknown_and_store_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    for id in [
        "..%2F..%2Fx",
        "%2e%2e",
        "abc",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let path = format!("/v2/{REPO}/blobs/uploads/{id}");
        let r = raw_request(
            s.addr,
            &head("PATCH", &path, &[("Content-Length", "3".into())]),
            b"abc",
            false,
        )
        .await;
        assert_raw_error(&r, 404, &["BLOB_UPLOAD_UNKNOWN"], &path);
        let r = raw_request(
            s.addr,
            &head(
                "PUT",
                &format!("{path}?digest={}", sha256_digest(b"abc")),
                &[("Content-Length", "3".into())],
            ),
            b"abc",
            false,
        )
        .await;
        assert_raw_error(&r, 404, &["BLOB_UPLOAD_UNKNOWN"], &path);
    }
    s.assert_stored_unchanged(&before, "invalid upload ids")
        .await;
}

#[tokio::test]
async fn post_starting_a_session_with_a_body_is_refused_or_ignored_without_storing_it() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c
        .post(&format!("/v2/{REPO}/blobs/uploads/"))
        .body("unexpected body")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 202 {
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let r = c.get(&loc).send().await.unwrap();
        assert_eq!(r.headers()["range"], "0-0", "the body was not stored");
    } else {
        assert_eq!(status, 400);
        let code = expect_error(r, 400).await;
        assert!(SPEC_ERROR_CODES.contains(&code.as_str()));
        assert!(s.stored().await.is_empty());
    }
}

#[tokio::test]
async fn unknown_endpoints_are_404_with_an_error_body() {
    let s = TestServer::start().await;
    let c = s.client();
    for path in [
        "/v2/x",
        "/v2/x/y",
        "/v2/x/blobs",
        "/v2/x/tags",
        "/v3/",
        "/v2/x/manifests",
    ] {
        let r = c.get(path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        error_body(r).await;
    }
}

/// Unsatisfiable blob ranges are 416; a JSON error body "MUST" use a code
/// from the spec's table ("The `code` field MUST be one of the following").
#[tokio::test]
async fn unsatisfiable_range_error_uses_a_spec_error_code() {
    let s = TestServer::start().await;
    let c = s.client();
    let digest = c.push_blob(REPO, b"0123456789").await;
    for range in ["bytes=10-", "bytes=5-2", "bytes=x-y"] {
        let r = c
            .get(&format!("/v2/{REPO}/blobs/{digest}"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        expect_spec_error(r, 416, range).await;
    }
}

/// A non-numeric or negative `n` is a client error; its JSON error body
/// "MUST" use a code from the spec's table.
#[tokio::test]
async fn invalid_pagination_number_is_400_with_a_spec_error_code() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    for path in [
        format!("/v2/{REPO}/tags/list?n=abc"),
        format!("/v2/{REPO}/tags/list?n=-1"),
        "/v2/_catalog?n=1.5".to_owned(),
    ] {
        let r = c.get(&path).send().await.unwrap();
        expect_spec_error(r, 400, &path).await;
    }
}

#[tokio::test]
async fn huge_n_is_not_an_error() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let r = c
        .get(&format!("/v2/{REPO}/tags/list?n=18446744073709551615"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(&format!("/v2/{REPO}/tags/list?n=99999999999999999999999"))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 200 || r.status() == 400, "{}", r.status());
}

/// docker streams a layer with chunked encoding; when the connection dies
/// mid-stream, the bytes that did arrive must not be recorded.
#[tokio::test]
async fn interrupted_chunked_patch_records_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    let loc = c.start_upload(REPO).await;
    let before = s.stored().await;
    let mut body = Vec::new();
    for _ in 0..4 {
        body.extend_from_slice(format!("{:x}\r\n", 10_000).as_bytes());
        body.extend_from_slice(&[9u8; 10_000]);
        body.extend_from_slice(b"\r\n");
    }
    // No terminating zero-length chunk: the stream just stops.
    let r = raw_request(
        s.addr,
        &head("PATCH", &loc, &[("Transfer-Encoding", "chunked".into())]),
        &body,
        true,
    )
    .await;
    assert_eq!(r.status / 100, 4, "{r:?}");
    let code = r.error_code();
    assert!(
        ["BLOB_UPLOAD_INVALID", "SIZE_INVALID"].contains(&code.as_str()),
        "{code}"
    );
    s.assert_stored_unchanged(&before, "interrupted chunked PATCH")
        .await;
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0");
}

#[tokio::test]
async fn interrupted_chunked_monolithic_upload_stores_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let mut body = format!("{:x}\r\n", 5_000).into_bytes();
    body.extend_from_slice(&[4u8; 5_000]);
    body.extend_from_slice(b"\r\n");
    let r = raw_request(
        s.addr,
        &head(
            "POST",
            &format!(
                "/v2/{REPO}/blobs/uploads/?digest={}",
                sha256_digest(&[4u8; 5_000])
            ),
            &[("Transfer-Encoding", "chunked".into())],
        ),
        &body,
        true,
    )
    .await;
    assert_eq!(r.status / 100, 4, "{r:?}");
    r.error_code();
    s.assert_stored_unchanged(&before, "interrupted chunked POST")
        .await;
}

/// A `Content-Length` shorter than the body: the server takes the announced
/// bytes only, which do not match the digest; nothing is stored.
#[tokio::test]
async fn content_length_shorter_than_the_body_stores_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    populated(&c).await;
    let before = s.stored().await;
    let data = b"0123456789";
    let r = raw_request(
        s.addr,
        &head(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest={}", sha256_digest(data)),
            &[("Content-Length", "5".into())],
        ),
        data,
        true,
    )
    .await;
    assert_raw_error(
        &r,
        400,
        &["DIGEST_INVALID", "SIZE_INVALID"],
        "short Content-Length",
    );
    let (_, manifest) = c.push_image(REPO, "v2", &[b"x"]).await;
    let before_manifest = s.stored().await;
    let r = raw_request(
        s.addr,
        &head(
            "PUT",
            &format!("/v2/{REPO}/manifests/short"),
            &[
                ("Content-Type", OCI_MANIFEST.into()),
                ("Content-Length", (manifest.len() - 10).to_string()),
            ],
        ),
        &manifest,
        true,
    )
    .await;
    assert_raw_error(
        &r,
        400,
        &["MANIFEST_INVALID", "SIZE_INVALID"],
        "short manifest",
    );
    s.assert_stored_unchanged(&before_manifest, "short manifest")
        .await;
    let (added, _) = support::storage_diff(&before, &before_manifest);
    assert!(
        added.iter().all(|f| !f.contains(&sha256_digest(data)[7..])),
        "the short blob was stored: {added:?}"
    );
}

// ----- request heads -----

/// A connection's read buffer is capped (64 KiB) to bound memory; heads
/// well past any real client's (large bearer tokens are a few KiB) still
/// work, a bigger one is refused with 431 (or the connection is closed
/// while the client is still sending), and the server goes on serving.
#[tokio::test]
async fn large_request_heads_work_up_to_the_limit_and_are_refused_past_it() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c
        .get("/v2/")
        .header("X-Padding", "a".repeat(32 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a 32 KiB head is served");

    let r = c
        .get("/v2/")
        .header("X-Padding", "a".repeat(128 * 1024))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 431, "a 128 KiB head is refused");
    }
    assert_eq!(c.get("/v2/").send().await.unwrap().status(), 200);
}
