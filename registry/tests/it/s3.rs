//! The S3 backend against a real S3-compatible server (moto), next to the
//! disk backend: one suite run on both, replicas sharing a bucket, races on
//! one blob, a failing backend, skopeo, and a bucket written by
//! registry:2 (Debian's docker-registry) served as is.

use crate::support;
use crate::support::distribution;
use crate::support::oci_layout;
use crate::support::skopeo;

use support::s3;

use reqwest::Method;
use serde_json::Value;
use support::{error_code, sha256_digest, Client, TestServer};

/// One pass over every kind of operation; run on each backend.
async fn suite(c: &Client) {
    // Chunked upload with Content-Range, then monolithic, then mount.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&data);
    let r = c.post("/v2/suite/app/blobs/uploads/").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_owned();
    for (i, chunk) in data.chunks(1_000_000).enumerate() {
        let start = i * 1_000_000;
        let r = c
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i}");
        assert_eq!(
            r.headers()["range"],
            format!("0-{}", start + chunk.len() - 1)
        );
        location = r.headers()["location"].to_str().unwrap().to_owned();
    }
    let r = c
        .put(&format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = c
        .get(&format!("/v2/suite/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    let r = c
        .get(&format!("/v2/suite/app/blobs/{digest}"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1000..2000]);

    let r = c
        .post(&format!(
            "/v2/suite/other/blobs/uploads/?mount={digest}&from=suite/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "cross-repository mount");

    // Images, tags, pagination, referrers, deletes.
    let (d1, _) = c.push_image("suite/app", "v1", &[b"a", b"b"]).await;
    let (d2, _) = c.push_image("suite/app", "v2", &[b"c"]).await;
    let tags: Value = c.get_json("/v2/suite/app/tags/list?n=1").await;
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let referrer = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d1, "size": 1},
    });
    c.push_blob("suite/app", b"{}").await;
    let body = serde_json::to_vec(&referrer).unwrap();
    let r = c
        .put("/v2/suite/app/manifests/sig")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"].to_str().unwrap(), d1);
    let index: Value = c.get_json(&format!("/v2/suite/app/referrers/{d1}")).await;
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let catalog: Value = c.get_json("/v2/_catalog").await;
    assert_eq!(catalog["repositories"], serde_json::json!(["suite/app"]));

    assert_eq!(
        c.delete("/v2/suite/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        c.get("/v2/suite/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.delete(&format!("/v2/suite/app/manifests/{d2}"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        c.get("/v2/suite/app/manifests/v2")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = c
        .get(&format!("/v2/suite/app/manifests/{d1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "deleting a tag keeps the manifest");

    // Bad input changes nothing and says why.
    let r = c
        .put(&format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = c
        .post(&format!(
            "/v2/suite/app/blobs/uploads/?digest={}",
            sha256_digest(b"other")
        ))
        .body("not other")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn suite_on_disk() {
    let s = TestServer::start().await;
    suite(&s.client()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suite_on_s3_leaves_only_finished_objects() {
    let moto = s3::Moto::start().await;
    moto.create_bucket("reg").await;
    let s = TestServer::start_with(|c| {
        moto.configure(c, "reg");
        c.storage.s3.rootdirectory = "/prefix/".into();
    })
    .await;
    suite(&s.client()).await;
    let keys = moto.keys("reg", "").await;
    assert!(
        keys.iter()
            .all(|k| k.starts_with("prefix/docker/registry/v2/")),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| !k.contains("/_uploads/")),
        "finished and failed uploads leave nothing behind: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_sharing_a_bucket_continue_each_others_uploads() {
    let moto = s3::Moto::start().await;
    moto.create_bucket("shared").await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(TestServer::start_with(|c| moto.configure(c, "shared")).await);
    }
    let (a, b, c) = (
        replicas[0].client(),
        replicas[1].client(),
        replicas[2].client(),
    );
    // Chunks of 6 MiB and a tail, so S3 multipart parts are in play.
    let data: Vec<u8> = (0..13_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let digest = sha256_digest(&data);
    let r = a.post("/v2/ha/blob/blobs/uploads/").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let path = r.headers()["location"].to_str().unwrap().to_owned();
    let pieces = [(&b, 0..6_000_000), (&c, 6_000_000..12_000_000)];
    for (client, range) in pieces {
        let r = client
            .patch(&path)
            .header(
                "content-range",
                format!("{}-{}", range.start, range.end - 1),
            )
            .body(data[range.clone()].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "PATCH on another replica");
    }
    let r = c.get(&path).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-11999999");
    let r = a
        .put(&format!("{path}?digest={digest}"))
        .body(data[12_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for client in [&a, &b, &c] {
        let got = client
            .get(&format!("/v2/ha/blob/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_clients_pushing_one_blob_all_succeed_and_one_object_is_stored() {
    let moto = s3::Moto::start().await;
    moto.create_bucket("race").await;
    let s = TestServer::start_with(|c| moto.configure(c, "race")).await;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 13) as u8).collect();
    let digest = sha256_digest(&data);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = s.client();
        let data = data.clone();
        let digest = digest.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(&format!("/v2/race/r{i}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let r = c.patch(&location).body(data).send().await.unwrap();
            assert_eq!(r.status(), 202);
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            c.put(&format!("{location}?digest={digest}"))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let hex = digest.trim_start_matches("sha256:");
    let blobs = moto.keys("race", "docker/registry/v2/blobs/").await;
    assert_eq!(
        blobs,
        vec![format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        )]
    );
    assert!(moto
        .keys("race", "")
        .await
        .iter()
        .all(|k| !k.contains("_uploads")));
    for i in 0..20 {
        let r = s
            .client()
            .head(&format!("/v2/race/r{i}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Twenty clients pulling one blob at once (a pull storm) cost the bucket
/// one GET of it, counted in the S3 server's own request log; each client
/// gets every byte. A pull after they are done is a GET of its own: the
/// shared read is a meeting point, not a cache.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_pulls_of_one_blob_cost_one_s3_get() {
    const CLIENTS: usize = 20;
    let moto = s3::Moto::start_logged().await;
    moto.create_bucket("storm").await;
    let s = TestServer::start_with(|c| {
        moto.configure(c, "storm");
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = s.client().push_blob("storm/app", &data).await;
    let hex = digest.trim_start_matches("sha256:");
    let key = format!(
        "/storm/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    );
    let path = format!("/v2/storm/app/blobs/{digest}");
    let client = s.client();
    // Connections open and credentials verified first, so the GETs below
    // arrive together.
    let heads: Vec<_> = (0..CLIENTS).map(|_| client.head(&path).send()).collect();
    for r in futures::future::join_all(heads).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let before = moto.requests("GET", &key);
    let gets: Vec<_> = (0..CLIENTS)
        .map(|_| async {
            let r = client.get(&path).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
        .collect();
    for body in futures::future::join_all(gets).await {
        assert!(body[..] == data[..], "a client got other bytes");
    }
    assert_eq!(
        moto.requests("GET", &key) - before,
        1,
        "S3 GETs of the blob"
    );
    let r = client.get(&path).send().await.unwrap();
    assert!(r.bytes().await.unwrap()[..] == data[..]);
    assert_eq!(moto.requests("GET", &key) - before, 2);
    // A range of a blob nobody else is reading is read directly.
    let r = client
        .get(&path)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap()[..], data[10..20]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backend_answers_503_with_a_spec_error() {
    let mut moto = s3::Moto::start().await;
    moto.create_bucket("gone").await;
    let s = TestServer::start_with(|c| moto.configure(c, "gone")).await;
    let c = s.client();
    c.push_image("down/app", "v1", &[b"x"]).await;
    moto.kill();
    let r = c.get("/v2/down/app/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(error_code(r).await, "UNAVAILABLE");
    let r = c
        .post(&format!(
            "/v2/down/app/blobs/uploads/?digest={}",
            sha256_digest(b"y")
        ))
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = c.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_written_by_docker_registry_is_served_as_is() {
    let moto = s3::Moto::start().await;
    moto.create_bucket("legacy").await;
    let theirs = distribution::DockerRegistry::start_s3(&moto.endpoint, "legacy").await;
    let tc = theirs.client();
    // registry:2 has no monolithic POST ?digest=; push with POST then PUT.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = sha256_digest(b"old layer");
    for data in [&config[..], b"old layer"] {
        let r = tc
            .post("/v2/legacy/app/blobs/uploads/")
            .send()
            .await
            .unwrap();
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = tc
            .put(&format!("{location}{sep}digest={}", sha256_digest(data)))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 9}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = tc
        .push_manifest(
            "legacy/app",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &bytes,
        )
        .await;
    drop(theirs);
    let ours = TestServer::start_with(|c| moto.configure(c, "legacy")).await;
    let c = ours.client();
    let r = c.get("/v2/legacy/app/manifests/v1").send().await.unwrap();
    support::assert_served(r, &digest, bytes.as_slice()).await;
    let r = c
        .get(&format!("/v2/legacy/app/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"old layer");
    // And the other way: ours writes, theirs reads.
    let (d2, _) = c.push_image("legacy/app", "v2", &[b"new layer"]).await;
    drop(ours);
    let theirs = distribution::DockerRegistry::start_s3(&moto.endpoint, "legacy").await;
    let r = theirs
        .client()
        .get("/v2/legacy/app/manifests/v2")
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", theirs.log_text());
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), d2);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_gets_redirect_to_presigned_urls_when_enabled() {
    let moto = s3::Moto::start().await;
    moto.create_bucket("redir").await;
    let s = TestServer::start_with(|c| {
        moto.configure(c, "redir");
        c.storage.s3.redirect = true;
    })
    .await;
    let c = s.client();
    let digest = c.push_blob("redir/app", b"redirected content").await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .get(s.url(&format!("/v2/redir/app/blobs/{digest}")))
        .basic_auth(support::USER, Some(support::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(url.starts_with(&moto.endpoint), "{url}");
    let content = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(content.as_ref(), b"redirected content");
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_round_trips_an_image_through_the_s3_backend() {
    use oci_layout::{Layer, Layout, Tar};
    let moto = s3::Moto::start().await;
    moto.create_bucket("skopeo").await;
    let s = TestServer::start_with(|c| moto.configure(c, "skopeo")).await;
    let work = tempfile::tempdir().unwrap();
    let (src, out) = (work.path().join("src"), work.path().join("out"));
    let mut layout = Layout::create(&src);
    let big: Vec<u8> = oci_layout::pseudo_random(9, 7 << 20);
    let image = layout.add_image(
        "linux",
        "amd64",
        &[
            Layer::tar_gz(Tar::new().file("a", 0o644, b"a\n").finish()),
            Layer::tar(Tar::new().file("big", 0o644, &big).finish()),
        ],
    );
    layout.tag("v1", &image);
    let creds = format!("{}:{}", support::USER, support::PASSWORD);
    let remote = format!("docker://{}/s3/app:v1", s.addr);
    let sk = skopeo::Skopeo::new();
    sk.ok(&[
        "copy",
        "--preserve-digests",
        "--dest-creds",
        &creds,
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &remote,
    ])
    .await;
    sk.ok(&[
        "copy",
        "--preserve-digests",
        "--src-creds",
        &creds,
        "--src-tls-verify=false",
        "--dest-oci-accept-uncompressed-layers",
        &remote,
        &format!("oci:{}:v1", out.display()),
    ])
    .await;
    let pulled = oci_layout::read_ref(&out, "v1");
    assert_eq!(
        pulled["digest"],
        image.digest.as_str(),
        "manifest digest survives the S3 round trip"
    );
    for blob in &image.blobs {
        assert_eq!(
            oci_layout::read_blob(&out, blob),
            oci_layout::read_blob(&src, blob),
            "{blob}"
        );
    }
}
