//! Push workflow of the OCI Distribution Spec v1.1 (conformance suite
//! `02_push_test.go`): streamed, monolithic and chunked blob uploads,
//! cross-repository mounts, manifest uploads (images, indexes, artifacts,
//! dangling subjects), and upload sessions surviving a restart.

use crate::support;

use bytes::Bytes;
use serde_json::json;
use support::{
    expect_error, sha256_digest, sha512_digest, upload_id, Client, TestServer, DOCKER_LIST,
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

const REPO: &str = "conformance/push";
const DUMMY_DIGEST: &str =
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The suite's `randomBlob(42, ...)`: 42 bytes of noise.
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("{} has no Location", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Appends `digest=` to an upload location, keeping any query it has.
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

async fn get_blob(c: &Client, name: &str, digest: &str) -> (u16, Bytes) {
    let r = c
        .get(&format!("/v2/{name}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap())
}

// ----- Blob Upload Streamed -----

#[tokio::test]
async fn post_starts_a_session_with_location_uuid_and_range() {
    let s = TestServer::start().await;
    let r = s
        .client()
        .post(&format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = location(&r);
    assert!(
        loc.starts_with(&format!("/v2/{REPO}/blobs/uploads/")),
        "{loc}"
    );
    let uuid = r.headers()["docker-upload-uuid"].to_str().unwrap();
    assert!(loc.contains(uuid), "{loc} does not name {uuid}");
    assert_eq!(r.headers()["range"], "0-0");
}

/// "PATCH request with blob in body should yield 202 response", then "PUT
/// request to session URL with digest should yield 201 response".
#[tokio::test]
async fn streamed_patch_then_put_with_digest_creates_the_blob() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(42, 1);
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    let r = c
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-41");
    let loc = location(&r);
    let r = c
        .put(&with_digest(&loc, &digest))
        .header("content-type", "application/octet-stream")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/{REPO}/blobs/{digest}"));
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));
}

/// docker streams a layer as one chunked-encoding PATCH of unknown length.
#[tokio::test]
async fn streamed_patch_without_content_length_is_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let pieces: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 64 * 1024 + i as usize]).collect();
    let data: Vec<u8> = pieces.concat();
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    let stream = futures::stream::iter(
        pieces
            .into_iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from(p))),
    );
    let r = c
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", data.len() - 1)
    );
    let r = c
        .put(&with_digest(&location(&r), &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, body) = get_blob(&c, REPO, &digest).await;
    assert_eq!(status, 200);
    assert!(body.as_ref() == data.as_slice(), "content differs");
}

// ----- Blob Upload Monolithic -----

/// "POST request with digest and blob should yield a 201 or 202", and "GET
/// request to blob URL from prior request should yield 200 or 404 based on
/// response code".
#[tokio::test]
async fn single_post_with_digest_uploads_the_blob() {
    let s = TestServer::start().await;
    let c = s.client();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let digest = sha256_digest(config);
    let r = c
        .post(&format!("/v2/{REPO}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", config.len().to_string())
        .body(config.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 201 || status == 202, "{status}");
    assert!(!location(&r).is_empty());
    let (got, body) = get_blob(&c, REPO, &digest).await;
    if status == 201 {
        assert_eq!(location(&r), format!("/v2/{REPO}/blobs/{digest}"));
        assert_eq!((got, body.as_ref()), (200, config.as_slice()));
    } else {
        assert_eq!(got, 404);
    }
}

/// "POST request should yield a session ID", "PUT upload of a blob should
/// yield a 201 Response", "GET request to existing blob should yield 200".
#[tokio::test]
async fn post_then_put_with_the_whole_blob_uploads_it() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(1234, 7);
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    let r = c
        .put(&with_digest(&loc, &digest))
        .header("content-type", "application/octet-stream")
        .header("content-length", data.len().to_string())
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/{REPO}/blobs/{digest}"));
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));
}

#[tokio::test]
async fn empty_blob_can_be_uploaded_and_pulled() {
    let s = TestServer::start().await;
    let c = s.client();
    let loc = c.start_upload(REPO).await;
    let r = c
        .put(&with_digest(&loc, EMPTY_DIGEST))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .head(&format!("/v2/{REPO}/blobs/{EMPTY_DIGEST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "0");
    assert_eq!(get_blob(&c, REPO, EMPTY_DIGEST).await, (200, Bytes::new()));
}

#[tokio::test]
async fn uploading_an_existing_blob_again_succeeds() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(100, 3);
    let digest = c.push_blob(REPO, &data).await;
    assert_eq!(c.push_blob(REPO, &data).await, digest);
    assert_eq!(c.push_blob("another/repo", &data).await, digest);
    assert_eq!(
        get_blob(&c, "another/repo", &digest).await,
        (200, Bytes::from(data))
    );
}

#[tokio::test]
async fn blob_with_sha512_digest_is_verified_and_served() {
    use sha2::Digest as _;
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(300, 9);
    let digest = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    let loc = c.start_upload(REPO).await;
    let r = c
        .patch(&loc)
        .body(data[..100].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(&with_digest(&location(&r), &digest))
        .body(data[100..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    let r = c
        .get(&format!("/v2/{REPO}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    support::assert_served(r, &digest, data.as_slice()).await;
}

// ----- Blob Upload Chunked -----

/// "Out-of-order blob upload should return 416": the first PATCH of a new
/// session claims to start at the second chunk's offset.
#[tokio::test]
async fn out_of_order_first_chunk_is_416() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(42, 2);
    let loc = c.start_upload(REPO).await;
    let r = c
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .header("content-length", "20")
        .header("content-range", "22-41")
        .body(data[22..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
}

/// The whole chunked sequence of `02_push_test.go`: first chunk 202 with
/// `Range`, retrying it 416, GET status 204 with `Location` and `Range`,
/// second chunk 202 with the full `Range`, PUT with digest 201.
#[tokio::test]
async fn chunked_upload_follows_the_conformance_sequence() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(42, 4);
    let digest = sha256_digest(&data);
    let (chunk1, chunk2) = data.split_at(22);

    let r = c
        .post(&format!("/v2/{REPO}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let first_location = location(&r);

    let r = c
        .patch(&first_location)
        .header("content-type", "application/octet-stream")
        .header("content-length", "22")
        .header("content-range", "0-21")
        .body(chunk1.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "first chunk");
    assert_eq!(r.headers()["range"], "0-21");
    assert!(!location(&r).is_empty());

    // "Retry previous blob chunk should return 416".
    let r = c
        .patch(&first_location)
        .header("content-type", "application/octet-stream")
        .header("content-length", "22")
        .header("content-range", "0-21")
        .body(chunk1.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416, "retried chunk");

    // "Get on stale blob upload should return 204 with a range and location".
    let r = c.get(&first_location).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-21");
    let status_location = location(&r);

    // "PATCH request with second chunk should return 202".
    let r = c
        .patch(&status_location)
        .header("content-length", "20")
        .header("content-range", "22-41")
        .header("content-type", "application/octet-stream")
        .body(chunk2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "second chunk");
    assert_eq!(r.headers()["range"], "0-41");
    let last_location = location(&r);

    // "PUT request with digest should return 201".
    let r = c
        .put(&with_digest(&last_location, &digest))
        .header("content-length", "0")
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/{REPO}/blobs/{digest}"));
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));
}

/// "The final chunk MAY be uploaded ... in the closing `PUT` request."
#[tokio::test]
async fn final_chunk_can_come_with_the_closing_put() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(1000, 5);
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    let r = c
        .patch(&loc)
        .header("content-range", "0-399")
        .header("content-length", "400")
        .body(data[..400].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .patch(&location(&r))
        .header("content-range", "400-699")
        .header("content-length", "300")
        .body(data[400..700].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-699");
    let r = c
        .put(&with_digest(&location(&r), &digest))
        .header("content-range", "700-999")
        .header("content-length", "300")
        .header("content-type", "application/octet-stream")
        .body(data[700..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));
}

#[tokio::test]
async fn chunk_that_skips_ahead_is_416_and_the_upload_continues() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(30, 6);
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    assert_eq!(patch_chunk(&c, &loc, 0, &data[..10]).await, 202);
    assert_eq!(patch_chunk(&c, &loc, 20, &data[20..]).await, 416);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["range"],
        "0-9",
        "the refused chunk left no trace"
    );
    assert_eq!(patch_chunk(&c, &loc, 10, &data[10..]).await, 202);
    let r = c.put(&with_digest(&loc, &digest)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));
}

/// PATCHes `chunk` as the bytes from `start` on (`Content-Range`
/// `start-end`); the status.
async fn patch_chunk(c: &Client, loc: &str, start: usize, chunk: &[u8]) -> u16 {
    c.patch(loc)
        .header(
            "content-range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn upload_status_of_a_fresh_session_is_204() {
    let s = TestServer::start().await;
    let c = s.client();
    let loc = c.start_upload(REPO).await;
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!location(&r).is_empty());
    assert_eq!(r.headers()["range"], "0-0");
    assert_eq!(
        r.headers()["docker-upload-uuid"].to_str().unwrap(),
        upload_id(&loc)
    );
}

/// Upload state lives in storage: a restarted server continues the upload.
#[tokio::test]
async fn upload_session_survives_a_restart() {
    let s = TestServer::start().await;
    let data = blob(5000, 8);
    let digest = sha256_digest(&data);
    let loc = s.client().start_upload(REPO).await;
    assert_eq!(patch_chunk(&s.client(), &loc, 0, &data[..3000]).await, 202);

    let s = s.restart().await;
    let c = s.client();
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-2999");
    assert_eq!(patch_chunk(&c, &loc, 3000, &data[3000..]).await, 202);
    let r = c.put(&with_digest(&loc, &digest)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));
}

/// What the store holds of the upload session at `loc`.
async fn files_of_session(s: &TestServer, loc: &str) -> Vec<String> {
    let id = upload_id(loc);
    s.stored()
        .await
        .into_iter()
        .filter(|f| f.contains(&id))
        .collect()
}

#[tokio::test]
async fn completed_upload_session_is_gone() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(10, 1);
    let loc = c.start_upload(REPO).await;
    let r = c
        .put(&with_digest(&loc, &sha256_digest(&data)))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UPLOAD_UNKNOWN");
    let leftovers = files_of_session(&s, &loc).await;
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ----- Cancel -----

#[tokio::test]
async fn delete_cancels_an_upload_and_removes_its_data() {
    let s = TestServer::start().await;
    let c = s.client();
    let loc = c.start_upload(REPO).await;
    let r = c.patch(&loc).body(blob(100, 2)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .delete(&loc)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UPLOAD_UNKNOWN");
    let r = c.patch(&loc).body(blob(10, 2)).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UPLOAD_UNKNOWN");
    let r = c.delete(&loc).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UPLOAD_UNKNOWN");
    let leftovers = files_of_session(&s, &loc).await;
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn unknown_upload_session_is_404_blob_upload_unknown() {
    let s = TestServer::start().await;
    let c = s.client();
    c.push_blob(REPO, b"makes the repository exist").await;
    for id in ["3f2b6c1e-0d6c-4c8e-9d1a-2b7a2f7f9a10", "not-a-uuid"] {
        let loc = format!("/v2/{REPO}/blobs/uploads/{id}");
        let r = c.get(&loc).send().await.unwrap();
        assert_eq!(
            expect_error(r, 404).await,
            "BLOB_UPLOAD_UNKNOWN",
            "GET {id}"
        );
        let r = c.patch(&loc).body("x").send().await.unwrap();
        assert_eq!(
            expect_error(r, 404).await,
            "BLOB_UPLOAD_UNKNOWN",
            "PATCH {id}"
        );
        let r = c
            .put(&with_digest(&loc, &sha256_digest(b"x")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 404).await,
            "BLOB_UPLOAD_UNKNOWN",
            "PUT {id}"
        );
        let r = c.delete(&loc).send().await.unwrap();
        assert_eq!(
            expect_error(r, 404).await,
            "BLOB_UPLOAD_UNKNOWN",
            "DELETE {id}"
        );
    }
}

#[tokio::test]
async fn upload_session_belongs_to_its_repository() {
    let s = TestServer::start().await;
    let c = s.client();
    let loc = c.start_upload(REPO).await;
    let other = format!("/v2/other/blobs/uploads/{}", upload_id(&loc));
    let r = c.get(&other).send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UPLOAD_UNKNOWN");
    let r = c.patch(&other).body("abc").send().await.unwrap();
    assert_eq!(expect_error(r, 404).await, "BLOB_UPLOAD_UNKNOWN");
}

// ----- Cross-Repository Blob Mount -----

/// A mount that cannot link a blob starts an upload session in the target
/// repository instead: 202 with a session `Location`. One row a case, each
/// on a fresh registry. Took over
/// `mount_of_missing_blob_without_from_starts_a_session` ("Cross-mounting
/// of a blob without the from argument should yield session id"),
/// `mount_of_nonexistent_blob_with_from_starts_a_session` ("Cross-mounting
/// of nonexistent blob should yield session id") and
/// `mount_from_a_repository_without_the_blob_starts_a_session`.
#[tokio::test]
async fn mount_that_cannot_link_starts_a_session() {
    struct Row {
        what: &'static str,
        /// Blobs pushed first: (repository, bytes).
        pushes: Vec<(&'static str, Vec<u8>)>,
        query: String,
        /// Whether the session answers a status GET (204).
        session_usable: bool,
        /// A digest that must not have been linked into `crossmount`.
        not_linked: Option<String>,
    }
    let in_repo = sha256_digest(&blob(42, 13));
    let rows = [
        Row {
            what: "a blob that exists nowhere, without from",
            pushes: vec![],
            query: format!("mount={DUMMY_DIGEST}"),
            session_usable: false,
            not_linked: None,
        },
        Row {
            what: "a nonexistent blob, from a repository that exists",
            pushes: vec![(REPO, b"something".to_vec())],
            query: format!("mount={DUMMY_DIGEST}&from={REPO}"),
            session_usable: true,
            not_linked: None,
        },
        // A `from` repository that does not hold the blob (even though
        // another repository does) cannot be mounted from.
        Row {
            what: "from a repository without the blob",
            pushes: vec![
                (REPO, blob(42, 13)),
                ("unrelated", b"other content".to_vec()),
            ],
            query: format!("mount={in_repo}&from=unrelated"),
            session_usable: false,
            not_linked: Some(in_repo.clone()),
        },
    ];
    for row in rows {
        let what = row.what;
        let s = TestServer::start().await;
        let c = s.client();
        for (repo, data) in &row.pushes {
            c.push_blob(repo, data).await;
        }
        let r = c
            .post(&format!("/v2/crossmount/blobs/uploads/?{}", row.query))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{what}");
        let loc = location(&r);
        assert!(
            loc.starts_with("/v2/crossmount/blobs/uploads/"),
            "{what}: {loc}"
        );
        if row.session_usable {
            let r = c.get(&loc).send().await.unwrap();
            assert_eq!(r.status(), 204, "{what}: the session is usable");
        }
        if let Some(digest) = &row.not_linked {
            let r = c
                .head(&format!("/v2/crossmount/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{what}: nothing was linked");
        }
    }
}

/// "POST request to mount another repository's blob should return 201 or
/// 202" and "GET request to test digest within cross-mount namespace should
/// return 200" (with `Location` equal to `/v2/<target>/blobs/<digest>`).
#[tokio::test]
async fn mount_from_another_repository_links_the_blob() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(42, 11);
    let digest = c.push_blob(REPO, &data).await;
    let r = c
        .post(&format!(
            "/v2/crossmount/blobs/uploads/?mount={digest}&from={REPO}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/crossmount/blobs/{digest}"));
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    let r = c.get(&location(&r)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
}

/// "Cross-mounting without from, and automatic content discovery enabled
/// should return a 201".
#[tokio::test]
async fn automatic_mount_without_from_links_an_existing_blob() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(42, 12);
    let digest = c.push_blob(REPO, &data).await;
    let r = c
        .post(&format!("/v2/crossmount/blobs/uploads/?mount={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/crossmount/blobs/{digest}"));
    assert_eq!(
        get_blob(&c, "crossmount", &digest).await,
        (200, Bytes::from(data))
    );
}

#[tokio::test]
async fn mount_with_an_invalid_from_name_starts_a_session() {
    let s = TestServer::start().await;
    let c = s.client();
    let digest = c.push_blob(REPO, &blob(42, 14)).await;
    let r = c
        .post(&format!(
            "/v2/crossmount/blobs/uploads/?mount={digest}&from=..%2F{REPO}"
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 202 || status == 400, "{status}");
    let r = c
        .head(&format!("/v2/crossmount/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

// ----- Manifest Upload -----

struct Blobs {
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

async fn push_blobs(c: &Client, name: &str) -> Blobs {
    let config = serde_json::to_vec_pretty(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "author": "push test",
    }))
    .unwrap();
    let layer = blob(2048, 21);
    Blobs {
        config_digest: c.push_blob(name, &config).await,
        layer_digest: c.push_blob(name, &layer).await,
        config,
        layer,
    }
}

/// The suite's manifest: pretty-printed, and its config descriptor carries
/// `data` and a field the image spec does not define (which registries must
/// ignore, not refuse).
fn suite_manifest(b: &Blobs) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": b.config_digest,
            "size": b.config.len(),
            "data": b64.encode(&b.config),
            "newUnspecifiedField": b64.encode("hello world"),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": b.layer_digest,
            "size": b.layer.len(),
        }],
    }))
    .unwrap()
}

/// "PUT should accept a manifest upload": four tags, one manifest.
#[tokio::test]
async fn manifest_put_under_several_tags_is_201_with_location() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = suite_manifest(&b);
    let digest = sha256_digest(&manifest);
    for i in 0..4 {
        let r = c
            .put(&format!("/v2/{REPO}/manifests/test{i}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(location(&r), format!("/v2/{REPO}/manifests/{digest}"));
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
    }
    let r = c
        .get(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
    for i in 0..4 {
        let r = c
            .get_manifest(REPO, &format!("test{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
    }
}

/// "Registry should accept a manifest upload with no layers" (the suite's
/// manifest has no `mediaType` field; the Content-Type says what it is).
#[tokio::test]
async fn manifest_without_layers_or_media_type_field_is_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": b.config_digest, "size": b.config.len()},
        "layers": [],
    }))
    .unwrap();
    let r = c
        .put(&format!("/v2/{REPO}/manifests/emptylayer"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get_manifest(REPO, "emptylayer").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), OCI_MANIFEST);
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
}

async fn push_empty_json_and_ref_blob(c: &Client) -> (Vec<u8>, String) {
    assert_eq!(c.push_blob(REPO, b"{}").await, EMPTY_JSON_DIGEST);
    let ref_blob = b"NHL Peanut Butter on my NHL bagel".to_vec();
    let d = c.push_blob(REPO, &ref_blob).await;
    (ref_blob, d)
}

/// "Registry should accept a manifest upload with custom config/mediaType
/// (as artifact type) [OCI-Image v1.1]".
#[tokio::test]
async fn artifact_with_custom_config_media_type_is_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let (ref_blob, ref_digest) = push_empty_json_and_ref_blob(&c).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.nhl.peanut.butter.bagel", "digest": ref_digest, "size": ref_blob.len()},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2}],
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
}

/// "Registry should accept a manifest upload with custom artifactType
/// [OCI-Image v1.1]".
#[tokio::test]
async fn artifact_with_artifact_type_is_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let (ref_blob, ref_digest) = push_empty_json_and_ref_blob(&c).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.nhl.peanut.butter.bagel",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/vnd.nhl.peanut.butter.bagel", "digest": ref_digest, "size": ref_blob.len()}],
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// "Registry should accept a manifest upload with image index" and "...
/// with nested image index [OCI-Image v1.1]".
#[tokio::test]
async fn image_index_and_nested_index_are_accepted() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = suite_manifest(&b);
    let manifest_digest = c
        .push_manifest(REPO, "tagtest0", OCI_MANIFEST, &manifest)
        .await;
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.food.stand",
        "manifests": [{"mediaType": OCI_MANIFEST, "size": manifest.len(), "digest": manifest_digest}],
        "annotations": {"org.opencontainers.conformance.test": "test index"},
    }))
    .unwrap();
    let index_digest = sha256_digest(&index);
    assert_eq!(
        c.push_manifest(REPO, &index_digest, OCI_INDEX, &index)
            .await,
        index_digest
    );
    let nested = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.food.stand",
        "manifests": [{"mediaType": OCI_INDEX, "size": index.len(), "digest": index_digest}],
        "annotations": {"org.opencontainers.conformance.test": "test index"},
    }))
    .unwrap();
    let nested_digest = sha256_digest(&nested);
    assert_eq!(
        c.push_manifest(REPO, &nested_digest, OCI_INDEX, &nested)
            .await,
        nested_digest
    );
    for (d, bytes) in [(&index_digest, &index), (&nested_digest, &nested)] {
        let r = c.get_manifest(REPO, d).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"].to_str().unwrap(), OCI_INDEX);
        assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }
}

/// "Dangling subject [OCI-Image v1.1]": a manifest whose subject was never
/// pushed is accepted, and `OCI-Subject` names the subject.
#[tokio::test]
async fn manifest_with_dangling_subject_is_accepted_with_oci_subject_header() {
    let s = TestServer::start().await;
    let c = s.client();
    let (ref_blob, ref_digest) = push_empty_json_and_ref_blob(&c).await;
    let subject = sha256_digest(b"a manifest that was never pushed");
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.nba.strawberry.jam.croissant",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2},
        "subject": {"mediaType": OCI_MANIFEST, "size": 123, "digest": subject},
        "layers": [{"mediaType": "application/vnd.nba.strawberry.jam.croissant", "digest": ref_digest, "size": ref_blob.len()}],
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let header = r.headers()["oci-subject"].to_str().unwrap();
    let (alg, hex) = header.split_once(':').unwrap();
    assert!(alg
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(header, subject);
}

#[tokio::test]
async fn manifest_without_subject_has_no_oci_subject_header() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let r = c
        .put(&format!("/v2/{REPO}/manifests/plain"))
        .header("content-type", OCI_MANIFEST)
        .body(suite_manifest(&b))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("oci-subject").is_none());
}

/// "Registries SHOULD ignore any parameters" on the manifest Content-Type.
#[tokio::test]
async fn manifest_content_type_parameters_are_ignored() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = suite_manifest(&b);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/withparam"))
        .header("content-type", format!("{OCI_MANIFEST}; charset=utf-8"))
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get_manifest(REPO, "withparam").send().await.unwrap();
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), OCI_MANIFEST);
}

#[tokio::test]
async fn docker_manifest_and_manifest_list_round_trip() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": b.config_digest, "size": b.config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": b.layer_digest, "size": b.layer.len()}],
    }))
    .unwrap();
    let digest = c
        .push_manifest(REPO, "amd64", DOCKER_MANIFEST, &manifest)
        .await;
    let list = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST, "digest": digest, "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let list_digest = c.push_manifest(REPO, "latest", DOCKER_LIST, &list).await;
    let r = c.get_manifest(REPO, "latest").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), DOCKER_LIST);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        list_digest
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), list.as_slice());
    let r = c.get_manifest(REPO, &digest).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        DOCKER_MANIFEST
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
}

/// Foreign (non-distributable) layers are named by URL and never pushed.
#[tokio::test]
async fn manifest_with_foreign_layer_urls_needs_no_blob_for_it() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": b.config_digest, "size": b.config.len()},
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": DUMMY_DIGEST, "size": 11,
            "urls": ["https://example.invalid/layer.tar.gz"],
        }],
    }))
    .unwrap();
    let r = c
        .put(&format!("/v2/{REPO}/manifests/foreign"))
        .header("content-type", DOCKER_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn retagging_moves_the_tag_to_the_new_manifest() {
    let s = TestServer::start().await;
    let c = s.client();
    let (first, _) = c.push_image(REPO, "latest", &[b"one"]).await;
    let (second, _) = c.push_image(REPO, "latest", &[b"two"]).await;
    assert_ne!(first, second);
    let r = c.get_manifest(REPO, "latest").send().await.unwrap();
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        second
    );
    // The first manifest stays pullable by digest.
    let r = c.get_manifest(REPO, &first).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

// ----- concurrency -----

/// Two chunks racing for the same offset: exactly one is recorded, the
/// other is told 416, and the upload completes with the winner's bytes.
#[tokio::test]
async fn racing_chunks_at_the_same_offset_record_exactly_one() {
    let s = TestServer::start().await;
    let c = s.client();
    let a = blob(300_000, 1);
    let b = blob(300_000, 2);
    let loc = c.start_upload(REPO).await;
    let send = |data: Vec<u8>| {
        c.patch(&loc)
            .header("content-range", format!("0-{}", data.len() - 1))
            .body(data)
            .send()
    };
    let (ra, rb) = tokio::join!(send(a.clone()), send(b.clone()));
    let mut statuses = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [202, 416]);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-299999");
    // The session holds one of the two contents, whole: completing with the
    // other's digest is DIGEST_INVALID, with its own digest 201.
    let mut completed = None;
    for data in [&a, &b] {
        let d = sha256_digest(data);
        let r = c.put(&with_digest(&loc, &d)).send().await.unwrap();
        if r.status() == 201 {
            assert_eq!(
                get_blob(&c, REPO, &d).await,
                (200, Bytes::from(data.clone()))
            );
            completed = Some(d);
            break;
        }
        assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
    }
    assert!(
        completed.is_some(),
        "neither chunk's content was kept whole"
    );
}

#[tokio::test]
async fn concurrent_uploads_of_the_same_blob_all_succeed() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(500_000, 3);
    let digest = sha256_digest(&data);
    let uploads = (0..8).map(|i| {
        let name = format!("concurrent/r{}", i % 3);
        let c = &c;
        let data = data.clone();
        async move { c.push_blob(&name, &data).await }
    });
    for d in futures::future::join_all(uploads).await {
        assert_eq!(d, digest);
    }
    for i in 0..3 {
        let (status, body) = get_blob(&c, &format!("concurrent/r{i}"), &digest).await;
        assert_eq!(status, 200);
        assert!(body.as_ref() == data.as_slice());
    }
}

/// "The registry MUST store the manifest exactly as provided, without
/// modification of its byte representation."
#[tokio::test]
async fn manifest_bytes_are_stored_exactly_as_sent() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let text = format!(
        "\n  {{ \"layers\" : [ ],\r\n\t\"config\":{{\"size\":{},\"digest\":\"{}\",\"mediaType\":\"application/vnd.oci.image.config.v1+json\"}},\n\"schemaVersion\" : 2 , \"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"k\":\"\\u00e9 \\\"q\\\"\"}} }}\n\n",
        b.config.len(),
        b.config_digest
    );
    let digest = sha256_digest(text.as_bytes());
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("content-type", OCI_MANIFEST)
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c.get_manifest(REPO, &digest).send().await.unwrap();
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), text.as_bytes());
}

/// Without a Content-Type, the manifest's own `mediaType` says what it is.
#[tokio::test]
async fn manifest_without_content_type_uses_its_media_type_field() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = suite_manifest(&b);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/notype"))
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c.get_manifest(REPO, "notype").send().await.unwrap();
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), OCI_MANIFEST);
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
}

/// Many pushes racing for one tag leave it naming one of them, whole.
#[tokio::test]
async fn racing_pushes_to_one_tag_leave_a_consistent_tag() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifests: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": b.config_digest, "size": b.config.len()},
                "layers": [],
                "annotations": {"n": i.to_string()},
            }))
            .unwrap()
        })
        .collect();
    let pushes = manifests
        .iter()
        .map(|m| c.push_manifest(REPO, "race", OCI_MANIFEST, m));
    futures::future::join_all(pushes).await;
    let r = c.get_manifest(REPO, "race").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = r.bytes().await.unwrap();
    assert_eq!(sha256_digest(&body), digest);
    assert!(manifests.iter().any(|m| m.as_slice() == body.as_ref()));
}

/// Names whose components are the route's own keywords still work for the
/// whole push flow (the route is parsed from the right).
#[tokio::test]
async fn push_into_a_repository_named_like_the_routes() {
    let s = TestServer::start().await;
    let c = s.client();
    for name in ["x/blobs/uploads", "manifests/tags/list", "referrers/blobs"] {
        let data = blob(100, 17);
        let digest = sha256_digest(&data);
        let loc = c.start_upload(name).await;
        assert!(
            loc.starts_with(&format!("/v2/{name}/blobs/uploads/")),
            "{loc}"
        );
        let r = c.patch(&loc).body(data.clone()).send().await.unwrap();
        assert_eq!(r.status(), 202, "{name}");
        let r = c.get(&loc).send().await.unwrap();
        assert_eq!(r.status(), 204, "{name}");
        let r = c.put(&with_digest(&loc, &digest)).send().await.unwrap();
        assert_eq!(r.status(), 201, "{name}");
        assert_eq!(get_blob(&c, name, &digest).await, (200, Bytes::from(data)));
        let (mdigest, _) = c.push_image(name, "v1", &[b"l"]).await;
        let r = c.get_manifest(name, "v1").send().await.unwrap();
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            mdigest
        );
    }
}

/// The suite's client (Go's `url.Values`) percent-encodes query values:
/// `digest=sha256%3A...`, `from=conformance%2Fpush`.
#[tokio::test]
async fn percent_encoded_query_parameters_are_decoded() {
    let s = TestServer::start().await;
    let c = s.client();
    let enc = |v: &str| v.replace(':', "%3A").replace('/', "%2F");

    let data = blob(42, 30);
    let digest = sha256_digest(&data);
    let loc = c.start_upload(REPO).await;
    let r = c
        .put(&format!("{loc}?digest={}", enc(&digest)))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );

    let data2 = blob(43, 31);
    let digest2 = sha256_digest(&data2);
    let r = c
        .post(&format!(
            "/v2/{REPO}/blobs/uploads/?digest={}",
            enc(&digest2)
        ))
        .body(data2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = c
        .post(&format!(
            "/v2/crossmount/blobs/uploads/?mount={}&from={}",
            enc(&digest),
            enc(REPO)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        get_blob(&c, "crossmount", &digest).await,
        (200, Bytes::from(data))
    );
}

#[tokio::test]
async fn empty_blob_in_a_single_post() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c
        .post(&format!("/v2/{REPO}/blobs/uploads/?digest={EMPTY_DIGEST}"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&c, REPO, EMPTY_DIGEST).await, (200, Bytes::new()));
}

// ----- distribution-spec main (after v1.1.1) -----

/// "Pushing manifests with multiple tags": a push by digest with `?tag=`
/// tags the manifest with every tag and answers 201 with one `OCI-Tag`
/// per tag; a push by tag answers as before (no `OCI-Tag`).
#[tokio::test]
async fn manifest_put_by_digest_with_tag_params_sets_every_tag() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = suite_manifest(&b);
    let digest = sha256_digest(&manifest);
    let r = c
        .put(&format!(
            "/v2/{REPO}/manifests/{digest}?tag=1.2.3&tag=1.2&tag=latest&tag=1.2"
        ))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/{REPO}/manifests/{digest}"));
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let oci_tags: Vec<&str> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(oci_tags, ["1.2.3", "1.2", "latest"]);
    assert_eq!(s.client().tag_list(REPO).await, ["1.2", "1.2.3", "latest"]);
    for tag in ["1.2.3", "1.2", "latest"] {
        let r = c.get_manifest(REPO, tag).send().await.unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    }
    // A push by tag, or by digest without ?tag=: no OCI-Tag, as before.
    for reference in ["other", digest.as_str()] {
        let r = c
            .put(&format!("/v2/{REPO}/manifests/{reference}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert!(r.headers().get("oci-tag").is_none(), "{reference}");
    }
}

/// A malformed `?tag=` refuses the whole push with 400 MANIFEST_INVALID:
/// none of its tags is set.
#[tokio::test]
async fn manifest_put_with_a_malformed_tag_param_tags_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    let b = push_blobs(&c, REPO).await;
    let manifest = suite_manifest(&b);
    let digest = sha256_digest(&manifest);
    let long = "x".repeat(129);
    for bad in ["-dash", ".dot", "a%2Fb", "", long.as_str()] {
        let r = c
            .put(&format!("/v2/{REPO}/manifests/{digest}?tag=good&tag={bad}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(r, 400).await,
            "MANIFEST_INVALID",
            "tag {bad:?}"
        );
    }
    let r = c.get_manifest(REPO, "good").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// "Pushing blobs" with `digest-algorithm` (end-4c): a session asked for
/// sha512 takes a sha512 digest, chunked or in one POST; an algorithm the
/// registry does not hash, or a `digest=` of another algorithm, is 400
/// DIGEST_INVALID before any session exists.
#[tokio::test]
async fn upload_with_digest_algorithm_sha512_is_hashed_with_sha512() {
    let s = TestServer::start().await;
    let c = s.client();
    let data = blob(5000, 3);
    let digest = sha512_digest(&data);
    let r = c
        .post(&format!(
            "/v2/{REPO}/blobs/uploads/?digest-algorithm=sha512"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let session = location(&r);
    // The session keeps the algorithm: a close with a sha256 digest is
    // refused (and the session stays open).
    let r = c
        .put(&with_digest(&session, &sha256_digest(&data[..0])))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
    let r = c
        .patch(&session)
        .header("content-type", "application/octet-stream")
        .body(data[..4000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(&with_digest(&location(&r), &digest))
        .header("content-type", "application/octet-stream")
        .body(data[4000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(get_blob(&c, REPO, &digest).await, (200, Bytes::from(data)));

    let small = b"single post sha512".to_vec();
    let d = c.push_blob_sha512(REPO, &small).await;
    assert_eq!(d, sha512_digest(&small));
    let r = c
        .head(&format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());

    for q in [
        "digest-algorithm=md5".to_owned(),
        "digest-algorithm=".to_owned(),
        format!("digest-algorithm=sha256&digest={d}"),
    ] {
        let r = c
            .post(&format!("/v2/{REPO}/blobs/uploads/?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID", "{q}");
    }
    if !support::storage_is_s3() {
        // registry:2's layout: blobs/sha512/<2 hex>/<hex>/data.
        let hex = digest.strip_prefix("sha512:").unwrap();
        assert!(
            s.stored()
                .await
                .iter()
                .any(|f| f.ends_with(&format!("blobs/sha512/{}/{hex}/data", &hex[..2]))),
            "no blobs/sha512 path"
        );
    }
}

/// A sha512 image end to end: pushed by digest with `?tag=`, it is tagged,
/// and served by tag and by digest (GET and HEAD) with
/// `Docker-Content-Digest: sha512:...`: a tag resolves to the digest it was
/// pushed under, not a sha256 recomputed from the bytes.
#[tokio::test]
async fn sha512_manifest_pushed_by_digest_with_tags_is_served_under_sha512() {
    let s = TestServer::start().await;
    let c = s.client();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = blob(700, 5);
    let config_digest = c.push_blob_sha512(REPO, config).await;
    let layer_digest = c.push_blob_sha512(REPO, &layer).await;
    assert_eq!(
        (config_digest.as_str(), layer_digest.as_str()),
        (
            sha512_digest(config).as_str(),
            sha512_digest(&layer).as_str()
        )
    );
    let manifest = support::image_manifest(
        &config_digest,
        config.len(),
        &[(&layer_digest, layer.len())],
    );
    let digest = sha512_digest(&manifest);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{digest}?tag=v1&tag=latest"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(location(&r), format!("/v2/{REPO}/manifests/{digest}"));
    assert_eq!(r.headers().get_all("oci-tag").iter().count(), 2);
    for reference in ["v1", "latest", digest.as_str()] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = c
                .request(method.clone(), &format!("/v2/{REPO}/manifests/{reference}"))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{method} {reference}");
            assert_eq!(
                r.headers()["docker-content-digest"],
                digest.as_str(),
                "{method} {reference}"
            );
            if method == reqwest::Method::GET {
                assert_eq!(r.bytes().await.unwrap(), manifest);
            }
        }
    }
    assert_eq!(c.tag_list(REPO).await, ["latest", "v1"]);
    // Its blobs pull by their sha512 digests.
    assert_eq!(
        get_blob(&c, REPO, &layer_digest).await,
        (200, Bytes::from(layer))
    );
}
