//! Deletion: `DELETE /v2/<name>/manifests/<tag>` untags (registry:3), and
//! `DELETE /v2/_ext/repositories/<name>` removes a whole repository (tags,
//! manifests, links, uploads), leaving blobs to GC, which then frees
//! exactly the repository's own; concurrent pushes into the repository are
//! refused or kept whole, never acknowledged and then left broken.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registry::oci::Digest;
use registry::storage::maintenance::gc::{self, Options};
use registry::storage::Storage;
use support::{error_body, Client, TestServer};

fn open_storage(s: &TestServer) -> Storage {
    registry::storage::backend::open(&s.config.storage).expect("storage opens")
}

async fn json(c: &Client, path: &str) -> serde_json::Value {
    c.get(path).send().await.unwrap().json().await.unwrap()
}

async fn delete_repository(c: &Client, name: &str) -> reqwest::Response {
    c.delete(&format!("/v2/_ext/repositories/{name}"))
        .send()
        .await
        .unwrap()
}

async fn status(c: &Client, path: &str) -> u16 {
    support::status(c.get(path)).await
}

async fn stored(storage: &Storage, digest: &str) -> bool {
    let d: Digest = digest.parse().unwrap();
    storage.blob_size(&d).await.unwrap().is_some()
}

async fn gc_now(s: &TestServer) -> gc::Report {
    let options = Options {
        dry_run: false,
        delete_untagged: false,
        grace: Duration::ZERO,
        upload_max_age: None,
        untagged_after: Vec::new(),
    };
    gc::run(&open_storage(s), &options, None).await.unwrap()
}

#[tokio::test]
async fn deleting_a_tag_untags_only() {
    let s = TestServer::start().await;
    let c = s.client();
    let (d, _) = c.push_image("team/app", "v1", &[b"layer"]).await;
    c.push_image("team/app", "v2", &[b"layer"]).await;
    let r = c.delete("/v2/team/app/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(status(&c, "/v2/team/app/manifests/v1").await, 404);
    assert_eq!(status(&c, "/v2/team/app/manifests/v2").await, 200);
    assert_eq!(
        status(&c, &format!("/v2/team/app/manifests/{d}")).await,
        200
    );
    let r = c.delete("/v2/team/app/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;

    // storage.delete_enabled off: refused as registry:2/3 refuse it.
    let s = TestServer::start_with(|c| c.storage.delete_enabled = false).await;
    let c = s.client();
    c.push_image("team/app", "v1", &[b"layer"]).await;
    for path in [
        "/v2/team/app/manifests/v1",
        "/v2/_ext/repositories/team/app",
    ] {
        let r = c.delete(path).send().await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(error_body(r).await["errors"][0]["code"], "UNSUPPORTED");
    }
    assert_eq!(status(&c, "/v2/team/app/manifests/v1").await, 200);
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_repository_leaves_blobs_to_gc() {
    let s = TestServer::start().await;
    let c = s.client();
    let storage = open_storage(&s);
    let (_, m1) = c
        .push_image("team/app", "v1", &[b"own layer", b"shared layer"])
        .await;
    let (v2, _) = c.push_image("team/app", "v2", &[b"second own layer"]).await;
    let (kept, _) = c.push_image("team/other", "v1", &[b"shared layer"]).await;
    let (nested, _) = c.push_image("team/app/sub", "v1", &[b"nested layer"]).await;
    let upload = c.start_upload("team/app").await;
    let own = support::sha256_digest(b"own layer");
    let shared = support::sha256_digest(b"shared layer");
    let m1_digest = support::sha256_digest(&m1);
    // Pull records (as the server writes them in batches).
    let pulled =
        registry::storage::pull_record::PullTimes::from([("v1".to_owned(), 1_700_000_000)]);
    for name in ["team/app", "team/app/sub"] {
        storage
            .record_pull_times(&name.parse().unwrap(), &pulled)
            .await
            .unwrap();
    }

    let r = delete_repository(&c, "team/app").await;
    assert_eq!(r.status(), 202);
    let removed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(removed["tags"], 2, "{removed}");
    assert_eq!(removed["manifests"], 2, "{removed}");
    assert_eq!(removed["uploads"], 1, "{removed}");
    // Its pull record went with it; the nested repository's stays.
    let times = |name: &'static str| {
        let storage = storage.clone();
        async move { storage.pull_times(&name.parse().unwrap()).await.unwrap() }
    };
    assert!(times("team/app").await.is_empty());
    assert_eq!(times("team/app/sub").await, pulled);

    // What users see: the repository is gone, its neighbours are not.
    // No tags left (200 with none rather than 404 NAME_UNKNOWN, because
    // team/app/sub still lives under the name, as in registry:2).
    let r = c.get("/v2/team/app/tags/list").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["tags"],
        serde_json::json!([])
    );
    assert_eq!(status(&c, &format!("/v2/team/app/blobs/{own}")).await, 404);
    assert_eq!(status(&c, &upload).await, 404, "{upload}");
    let catalog = json(&c, "/v2/_catalog").await;
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["team/app/sub", "team/other"])
    );
    assert_eq!(
        status(&c, &format!("/v2/team/other/manifests/{kept}")).await,
        200
    );
    assert_eq!(
        status(&c, &format!("/v2/team/app/sub/manifests/{nested}")).await,
        200
    );
    // The data is still stored until GC runs.
    assert!(stored(&storage, &own).await && stored(&storage, &m1_digest).await);

    let report = gc_now(&s).await;
    let mut freed: Vec<String> = report
        .deleted_blobs
        .iter()
        .map(|(d, _)| d.to_string())
        .collect();
    freed.sort();
    // Exactly team/app's own: its two manifests, v1's config (v2's, with
    // one layer, is the same bytes as team/other's) and its two own layers.
    let mut expected = vec![
        m1_digest.clone(),
        v2.clone(),
        support::sha256_digest(br#"{"architecture":"amd64","os":"linux","n":2}"#),
        own.clone(),
        support::sha256_digest(b"second own layer"),
    ];
    expected.sort();
    assert_eq!(freed, expected, "{report}");
    assert!(stored(&storage, &shared).await);
    assert_eq!(
        status(&c, &format!("/v2/team/other/blobs/{shared}")).await,
        200
    );

    let r = delete_repository(&c, "team/app").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_body(r).await["errors"][0]["code"], "NAME_UNKNOWN");
    // A repository with nothing under it is gone from the API entirely.
    let r = delete_repository(&c, "team/other").await;
    assert_eq!(r.status(), 202);
    let r = c.get("/v2/team/other/tags/list").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_body(r).await["errors"][0]["code"], "NAME_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn repository_delete_needs_delete_and_respects_immutable_tags() {
    let s = TestServer::start_with(|c| {
        c.acl = Some(
            toml::from_str(
                r#"
                default = ["pull", "push"]
                [[rules]]
                repository = "rel/**"
                pull = ["*"]
                push = ["*"]
                delete = ["*"]
                "#,
            )
            .unwrap(),
        );
        c.policies =
            toml::from_str("[[immutable]]\nrepository = \"rel/**\"\ntags = [\"v*\"]").unwrap();
    })
    .await;
    let c = s.client();
    for (repo, tag, status, code, says) in [
        (
            "team/app",
            "v1",
            403,
            "DENIED",
            "requested access to the resource is denied",
        ),
        ("rel/app", "v1", 409, "DENIED", "policies.immutable[0]"),
        ("rel/dev", "main", 202, "", ""),
    ] {
        c.push_image(repo, tag, &[b"x"]).await;
        let r = delete_repository(&c, repo).await;
        assert_eq!(r.status(), status, "{repo}");
        if status == 202 {
            continue;
        }
        let body = error_body(r).await;
        assert_eq!(body["errors"][0]["code"], code, "{repo}");
        let m = body["errors"][0]["message"].as_str().unwrap();
        assert!(m.contains(says), "{repo}: {m}");
        let r = c
            .get(&format!("/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} is intact");
    }
    s.stop().await;
}

/// Pushers keep pushing into a repository while it is deleted (and GC
/// runs after): every tag left afterwards pulls whole, and every push
/// acknowledged after the delete's 202 is there.
#[tokio::test]
async fn repository_delete_under_concurrent_pushes_leaves_nothing_broken() {
    let s = TestServer::start().await;
    delete_under_concurrent_pushes(&s, &s).await;
    s.stop().await;
}

/// The same with two replicas on one storage: the delete goes to one, the
/// pushes to the other.
#[tokio::test]
async fn repository_delete_on_one_replica_while_another_takes_pushes() {
    let s = TestServer::start().await;
    let replica = s.start_replica().await;
    delete_under_concurrent_pushes(&s, &replica).await;
    replica.stop().await;
    s.stop().await;
}

async fn delete_under_concurrent_pushes(s: &TestServer, pushed_to: &TestServer) {
    let base = s.client();
    for i in 0..5 {
        base.push_image(
            "team/busy",
            &format!("old-{i}"),
            &[format!("old {i}").as_bytes(), b"common"],
        )
        .await;
    }
    let deleted = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for p in 0..3 {
        let c = pushed_to.client();
        let deleted = deleted.clone();
        pushers.push(tokio::spawn(async move {
            let mut after_delete = Vec::new();
            // On until a few pushes are acknowledged after the delete: when
            // it comes depends on the machine and on the metadata cache's
            // ttl (the waiting GET below may see a cached miss for it).
            for n in 0..1000 {
                if after_delete.len() >= 3 {
                    break;
                }
                let was_deleted = deleted.load(Ordering::SeqCst);
                let tag = format!("p{p}-{n}");
                let layer = format!("layer {p} {n}");
                let config = format!("{{\"p\":{p},\"n\":{n}}}");
                // A push may be refused while the delete runs (a blob it
                // needed was removed): that is allowed, a broken tag is not.
                let cd = c.push_blob_or_refusal("team/busy", config.as_bytes()).await;
                let ld = c.push_blob_or_refusal("team/busy", layer.as_bytes()).await;
                let common = c.push_blob_or_refusal("team/busy", b"common").await;
                let (Some(cd), Some(ld), Some(common)) = (cd, ld, common) else {
                    continue;
                };
                let manifest =
                    support::image_manifest(&cd, config.len(), &[(&ld, layer.len()), (&common, 6)]);
                let r = c
                    .put(&format!("/v2/team/busy/manifests/{tag}"))
                    .header("content-type", support::OCI_MANIFEST)
                    .body(manifest)
                    .send()
                    .await
                    .unwrap();
                if r.status() != 201 {
                    support::allowed_refusal(r).await;
                } else if was_deleted {
                    after_delete.push(tag);
                }
            }
            after_delete
        }));
    }
    // Let the pushers get going, then delete.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while base
        .get("/v2/team/busy/manifests/p0-2")
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the pushers did not get a third image in within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = delete_repository(&base, "team/busy").await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    deleted.store(true, Ordering::SeqCst);
    let mut acknowledged_after = Vec::new();
    for p in pushers {
        acknowledged_after.extend(p.await.unwrap());
    }
    gc_now(s).await;
    let tags = json(&base, "/v2/team/busy/tags/list").await;
    let tags: Vec<String> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert!(!tags.iter().any(|t| t.starts_with("old-")), "{tags:?}");
    for t in &acknowledged_after {
        assert!(
            tags.contains(t),
            "{t} acknowledged after the delete is missing"
        );
    }
    for t in &tags {
        let r = base.get_manifest("team/busy", t).send().await.unwrap();
        assert_eq!(r.status(), 200, "tag {t}");
        let m: serde_json::Value = r.json().await.unwrap();
        let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
        blobs.extend(
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned()),
        );
        for b in blobs {
            let r = base
                .get(&format!("/v2/team/busy/blobs/{b}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "tag {t} blob {b}");
            let body = r.bytes().await.unwrap();
            assert_eq!(support::sha256_digest(&body), b);
        }
    }
    assert!(
        !acknowledged_after.is_empty(),
        "no push came after the delete"
    );
}

/// While garbage collection holds its lock, a repository delete waits its
/// turn: 503 UNAVAILABLE with Retry-After, nothing removed; then it runs.
#[tokio::test]
async fn repository_delete_waits_for_garbage_collection() {
    let s = TestServer::start().await;
    let c = s.client();
    c.push_image("team/app", "v1", &[b"x"]).await;
    let storage = open_storage(&s);
    let lock = storage
        .gc_lock("a collector", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let r = delete_repository(&c, "team/app").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "10");
    let m = error_body(r).await["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(m.contains("a collector"), "{m}");
    assert_eq!(status(&c, "/v2/team/app/manifests/v1").await, 200);
    storage.gc_unlock(lock).await.unwrap();
    let r = delete_repository(&c, "team/app").await;
    assert_eq!(r.status(), 202);
    s.stop().await;
}
