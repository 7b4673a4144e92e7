//! Garbage collection and scrub on the S3 backend (moto's server, a real
//! S3-compatible server): the same code as on disk, through object_store
//! only, including the lock's create-if-absent write.

use crate::support;

use std::time::Duration;

use registry::storage::maintenance::gc::{self, GcError, Options};
use support::{s3, sha256_digest, ALL_MANIFEST_TYPES};

fn options() -> Options {
    Options {
        dry_run: false,
        delete_untagged: false,
        grace: Duration::ZERO,
        upload_max_age: None,
        untagged_after: Vec::new(),
    }
}

fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!(
        "gc/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_and_scrub_on_s3() {
    let moto = s3::Moto::start().await;
    moto.create_bucket("reg").await;
    let s = support::TestServer::start_with(|c| {
        moto.configure(c, "reg");
        c.storage.s3.rootdirectory = "/gc/".into();
    })
    .await;
    let c = s.client();
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();

    let (kept, kept_bytes) = c.push_image("s3/app", "v1", &[b"kept layer", b"x"]).await;
    let (gone, gone_bytes) = c.push_image("s3/app", "v2", &[b"gone layer"]).await;
    let orphan = c.push_blob("s3/app", b"orphan on s3").await;
    c.delete(&format!("/v2/s3/app/manifests/{gone}"))
        .send()
        .await
        .unwrap();
    let layer_of = |bytes: &[u8], i: usize| -> String {
        let m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        m["layers"][i]["digest"].as_str().unwrap().to_owned()
    };
    let gone_layer = layer_of(&gone_bytes, 0);
    let kept_layer = layer_of(&kept_bytes, 0);
    let keys = moto.keys("reg", "gc/").await;
    for d in [&gone, &gone_layer, &orphan] {
        assert!(keys.contains(&blob_key(d)), "{d} stored before GC");
    }

    let report = gc::run(&storage, &options(), None).await.unwrap();
    // gone's manifest, config and layer, and the orphan.
    assert_eq!(report.deleted_blobs.len(), 4, "{report}");
    let keys = moto.keys("reg", "gc/").await;
    for d in [&gone, &gone_layer, &orphan] {
        assert!(!keys.contains(&blob_key(d)), "{d} still in the bucket");
    }
    assert!(keys.contains(&blob_key(&kept_layer)));
    assert!(
        !keys.iter().any(|k| k.contains("/_gc/")),
        "lock and markers removed: {keys:?}"
    );
    let r = c
        .get("/v2/s3/app/manifests/v1")
        .header("accept", ALL_MANIFEST_TYPES)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_digest(&r.bytes().await.unwrap()), kept);
    let r = c
        .get(&format!("/v2/s3/app/blobs/{kept_layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"kept layer");

    // The lock is a create-if-absent write on S3 too.
    let lock = storage
        .gc_lock("other replica", Duration::from_secs(600))
        .await
        .unwrap()
        .expect("free");
    assert!(matches!(
        gc::run(&storage, &options(), None).await,
        Err(GcError::Locked { .. })
    ));
    storage.gc_unlock(lock).await.unwrap();

    // Scrub: clean, then a blob overwritten behind the registry's back.
    let report = registry::storage::maintenance::scrub::run(&storage)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("reg")
        .with_region("us-east-1")
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    object_store::ObjectStoreExt::put(
        &raw,
        &object_store::path::Path::from(blob_key(&kept_layer)),
        object_store::PutPayload::from_static(b"kept lay3r"),
    )
    .await
    .unwrap();
    let report = registry::storage::maintenance::scrub::run(&storage)
        .await
        .unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        report.problems[0].kind,
        registry::storage::maintenance::scrub::ProblemKind::CorruptBlob
    );
    assert!(report.problems[0].detail.starts_with(&kept_layer));
}
