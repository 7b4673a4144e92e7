//! The metadata cache's contract (`[storage.cache]`, docs/storage.md), seen
//! by clients of two replicas sharing one storage (a directory, or one S3
//! bucket with REGISTRY_TEST_STORAGE=s3):
//! * the replica that takes a push, delete or GC serves the change at once,
//!   even while other requests read the same tag;
//! * another replica serves it within `ttl` (and at once with ttl 0);
//! * what GC removed is never served as present after `ttl`;
//! * memory stays within `max_bytes`, and the metrics count hits, misses and
//!   evictions.

use crate::support;

use std::time::{Duration, Instant};

use registry::config::Config;
use support::{Client, TestServer, OCI_MANIFEST};

const REPO: &str = "team/cached";

async fn replicas(adjust: impl FnOnce(&mut Config)) -> (TestServer, TestServer) {
    let first = TestServer::start_with(adjust).await;
    let second = TestServer::start_config(first.config.clone(), tempfile::tempdir().unwrap()).await;
    (first, second)
}

/// A manifest distinct per `n`, on one shared config blob.
async fn push_tagged(c: &Client, config: &str, tag: &str, n: usize) -> String {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [],
        "annotations": {"n": n.to_string()},
    });
    c.push_manifest(
        REPO,
        tag,
        OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    )
    .await
}

async fn tag_digest(c: &Client, tag: &str) -> Option<String> {
    let r = c.get_manifest(REPO, tag).send().await.unwrap();
    match r.status().as_u16() {
        200 => Some(
            r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned(),
        ),
        404 => None,
        s => panic!("GET {tag}: {s}"),
    }
}

async fn status(c: &Client, path: &str) -> u16 {
    support::status(c.head(path)).await
}

async fn tags(c: &Client) -> Vec<String> {
    let r = c
        .get(&format!("/v2/{REPO}/tags/list"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    serde_json::from_value(body["tags"].clone()).unwrap()
}

/// Polls `check` until it holds; returns how long that took. Fails past
/// `bound`: the contract is that the change shows within it.
async fn within<F, Fut>(bound: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < bound, "{what}: not seen within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn another_replica_sees_tag_changes_within_the_ttl() {
    // (ttl, bound for the second replica): the bound is ttl plus the slack
    // of a loaded 2-core machine.
    for (ttl, bound) in [
        (Duration::from_secs(1), Duration::from_millis(1800)),
        (Duration::ZERO, Duration::from_millis(1)),
    ] {
        let (a, b) = replicas(|c| c.storage.cache.ttl = ttl).await;
        let (ca, cb) = (a.client(), b.client());
        let config = ca.push_blob(REPO, b"{}").await;
        let v1 = push_tagged(&ca, &config, "latest", 1).await;
        // Warm the second replica: tag, tag list, blob HEAD.
        assert_eq!(
            tag_digest(&cb, "latest").await.as_deref(),
            Some(v1.as_str())
        );
        assert_eq!(tags(&cb).await, ["latest"]);
        assert_eq!(
            status(&cb, &format!("/v2/{REPO}/blobs/{config}")).await,
            200
        );

        let v2 = push_tagged(&ca, &config, "latest", 2).await;
        push_tagged(&ca, &config, "extra", 3).await;
        // The replica that took the push: at once.
        assert_eq!(
            tag_digest(&ca, "latest").await.as_deref(),
            Some(v2.as_str())
        );
        assert_eq!(tags(&ca).await, ["extra", "latest"]);
        // The other: within the bound (ttl 0: the first request, since
        // `within` checks once before the bound can pass).
        let took = within(bound, "retag on the other replica", || async {
            tag_digest(&cb, "latest").await.as_deref() == Some(v2.as_str())
        })
        .await;
        within(bound, "new tag in the other replica's list", || async {
            tags(&cb).await == ["extra", "latest"]
        })
        .await;
        println!("ttl {ttl:?}: the other replica served the new tag after {took:?}");
    }
}

#[tokio::test]
async fn what_gc_removed_is_not_served_after_the_ttl() {
    let ttl = Duration::from_secs(1);
    let (a, b) = replicas(|c| c.storage.cache.ttl = ttl).await;
    let (ca, cb) = (a.client(), b.client());
    let (digest, _) = ca
        .push_image(REPO, "gone", &[b"layer one", b"layer two"])
        .await;
    let manifest = format!("/v2/{REPO}/manifests/{digest}");
    let layer = format!("/v2/{REPO}/blobs/{}", support::sha256_digest(b"layer one"));
    for c in [&ca, &cb] {
        assert_eq!(status(c, &manifest).await, 200);
        assert_eq!(status(c, &layer).await, 200);
    }
    let r = ca.delete(&manifest).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        status(&ca, &manifest).await,
        404,
        "deleting replica, at once"
    );
    // `registry gc` as its own process would: its own Storage.
    let storage = registry::storage::backend::open(&a.config.storage).unwrap();
    let options = registry::storage::maintenance::gc::Options {
        dry_run: false,
        delete_untagged: false,
        grace: Duration::ZERO,
        upload_max_age: None,
        untagged_after: Vec::new(),
    };
    let report = registry::storage::maintenance::gc::run(&storage, &options, None)
        .await
        .unwrap();
    assert!(report.bytes_freed() > 0, "GC removed the layers");
    let bound = ttl + Duration::from_millis(800);
    for (c, who) in [(&ca, "first"), (&cb, "second")] {
        within(
            bound,
            &format!("{who} replica: deleted manifest"),
            || async { status(c, &manifest).await == 404 },
        )
        .await;
        within(bound, &format!("{who} replica: collected blob"), || async {
            status(c, &layer).await == 404
        })
        .await;
    }
}

#[tokio::test]
async fn a_push_is_served_at_once_by_its_replica_under_concurrent_reads() {
    let s = TestServer::start_with(|c| c.storage.cache.ttl = Duration::from_secs(60)).await;
    let c = s.client();
    let config = c.push_blob(REPO, b"{}").await;
    push_tagged(&c, &config, "hot", 0).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (c, stop) = (s.client(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tag_digest(&c, "hot").await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    for n in 1..=40 {
        let pushed = push_tagged(&c, &config, "hot", n).await;
        assert_eq!(
            tag_digest(&c, "hot").await,
            Some(pushed),
            "push {n}: the pushing replica served an older digest"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    assert!(reads > 40, "the readers ran alongside ({reads} reads)");
}

fn metric(text: &str, name: &str) -> u64 {
    support::sample(text, name).unwrap_or_else(|| panic!("no {name} in metrics")) as u64
}

#[tokio::test]
async fn memory_is_bounded_and_the_metrics_count_it() {
    let max_bytes = 64 << 10;
    let s = TestServer::start_with(|c| {
        c.storage.cache.max_bytes = max_bytes;
        c.storage.cache.ttl = Duration::from_secs(60);
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let c = s.client();
    let config = c.push_blob(REPO, b"{}").await;
    push_tagged(&c, &config, "v1", 1).await;
    for _ in 0..5 {
        tag_digest(&c, "v1").await.unwrap();
    }
    // Many distinct lookups: unknown blobs, each a cached miss.
    for i in 0..2_000 {
        let digest = support::sha256_digest(format!("absent {i}").as_bytes());
        assert_eq!(status(&c, &format!("/v2/{REPO}/blobs/{digest}")).await, 404);
    }
    let url = format!("http://{}/metrics", s.metrics_addr().unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let bytes = metric(&text, "registry_storage_cache_bytes");
    let entries = metric(&text, "registry_storage_cache_entries");
    assert!(bytes <= max_bytes && bytes > 0, "cache bytes {bytes}");
    assert!(entries > 0 && entries < 2_000, "cache entries {entries}");
    assert!(metric(&text, "registry_storage_cache_evictions_total") > 0);
    assert!(metric(&text, "registry_storage_cache_hits_total") >= 4);
    assert!(metric(&text, "registry_storage_cache_misses_total") >= 2_000);
}
