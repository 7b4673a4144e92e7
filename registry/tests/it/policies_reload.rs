//! The ACL and the policies reload when the config file changes: new rules
//! apply to the next requests without a restart; a file that fails the
//! start-up checks keeps the rules in force (and counts as a failed reload
//! in the metrics).

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use registry::config::Config;
use support::{Client, TestServer, OCI_MANIFEST};

const OPEN: &str = r#"
[acl]
default = ["pull", "push", "delete"]
"#;

const LOCKED: &str = r#"
[acl]
default = ["pull", "push", "delete"]
[[acl.rules]]
repository = "frozen/**"
pull = ["*"]

[[policies.immutable]]
repository = "team/**"
tags = ["v*"]

[[policies.quota]]
namespace = "capped"
max_bytes = 10
"#;

/// Fails `LOCKED`'s checks: the ACL names an undefined group.
const BROKEN: &str = r#"
[acl]
default = ["pull"]
[[acl.rules]]
repository = "team/**"
pull = ["@nobody"]
"#;

async fn reloads(s: &TestServer, result: &str) -> u64 {
    let addr = s.metrics_addr().expect("metrics listener");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("registry_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (polling the metrics, at most 10 s) until `result` reloads
/// number `n`.
async fn wait_reloads(s: &TestServer, result: &str, n: u64) {
    let start = Instant::now();
    while reloads(s, result).await < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {result} reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write(path: &Path, text: &str) {
    // Replaced by rename, as editors and config management do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The status of starting an upload to frozen/app (403 while it is read-only).
async fn frozen_upload(c: &Client) -> u16 {
    let r = c
        .post("/v2/frozen/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

async fn push_status(c: &Client, repo: &str, tag: &str, layer: &[u8]) -> u16 {
    let config = c.push_blob(repo, b"{}").await;
    let layer_digest = c.push_blob(repo, layer).await;
    let m = support::image_manifest(&config, 2, &[(&layer_digest, layer.len())]);
    support::status(
        c.put(&format!("/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(m),
    )
    .await
}

#[tokio::test]
async fn acl_and_policies_reload_and_a_bad_file_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    write(&path, OPEN);
    let loaded = Config::load(Some(&path), Vec::<(String, String)>::new()).unwrap();
    let s = TestServer::start_with(|c| {
        c.acl = loaded.acl.clone();
        c.policies = loaded.policies.clone();
        c.source = loaded.source.clone();
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    // A second replica on the same storage and config file reloads too.
    let replica = s.start_replica().await;
    let c = s.client();
    assert_eq!(push_status(&c, "team/app", "v1", b"one").await, 201);
    assert_eq!(push_status(&c, "team/app", "v1", b"two").await, 201);
    assert_eq!(push_status(&c, "frozen/app", "v1", b"one").await, 201);
    c.push_blob("capped/app", b"twenty bytes of data").await;

    // New rules: frozen/** read-only, team/**'s v* tags immutable.
    write(&path, LOCKED);
    wait_reloads(&s, "ok", 1).await;
    wait_reloads(&replica, "ok", 1).await;
    let rc = replica.client();
    assert_eq!(frozen_upload(&rc).await, 403);
    assert_eq!(push_status(&rc, "team/app", "v1", b"three").await, 409);
    assert_eq!(frozen_upload(&c).await, 403);
    assert_eq!(push_status(&c, "team/app", "v1", b"three").await, 409);
    assert_eq!(push_status(&c, "team/app", "v2", b"three").await, 201);
    // The quota counts what was stored before it: nothing more fits.
    for client in [&c, &rc] {
        let r = client.try_push_blob("capped/app", b"x").await.unwrap_err();
        assert_eq!(r.status(), 413);
    }

    // A broken file: refused, the rules in force stay.
    write(&path, BROKEN);
    wait_reloads(&s, "error", 1).await;
    wait_reloads(&replica, "error", 1).await;
    assert_eq!(reloads(&s, "ok").await, 1);
    assert_eq!(push_status(&c, "team/app", "v2", b"four").await, 409);
    assert_eq!(frozen_upload(&c).await, 403);
    let r = c.get("/v2/team/app/tags/list").send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "team/** still pullable (BROKEN would refuse it)"
    );

    // Fixed again: the open rules are back.
    write(&path, OPEN);
    wait_reloads(&s, "ok", 2).await;
    assert_eq!(push_status(&c, "team/app", "v1", b"five").await, 201);
    assert_eq!(frozen_upload(&c).await, 202);
    c.push_blob("capped/app", b"x").await;
    replica.stop().await;
    s.stop().await;
}
