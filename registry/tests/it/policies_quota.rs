//! Quotas (`[[policies.quota]]`, `policies.total_max_bytes`): a push that
//! would pass a limit is refused with 413 `DENIED` naming the rule, the
//! usage and the limit, before its body is read; a blob counts once per
//! namespace; parallel pushes through two replicas pass the limit by at
//! most one blob per client; usage follows deletes and gc, survives a
//! restart, counts content stored before the rule, and `registry usage`
//! agrees with it (or reports and corrects the drift).

use crate::support;
use crate::support::oci_layout;
use crate::support::registry_bin;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oci_layout::pseudo_random;
use registry::config::Config;
use support::{raw_request, sha256_digest, Client, TestServer};

fn with_policies(c: &mut Config, toml_text: &str) {
    c.policies = toml::from_str(toml_text).unwrap();
    c.policies.validate().unwrap();
}

const TEAM_100K: &str = r#"
[[quota]]
namespace = "team"
max_bytes = 100000
"#;

/// The `quota` entries of the tags listing extension for `name`.
async fn quota_listing(c: &Client, name: &str) -> Vec<serde_json::Value> {
    let r = c
        .get(&format!("/v2/{name}/_ext/tags"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["quota"].as_array().cloned().unwrap_or_default()
}

async fn used(c: &Client, name: &str) -> u64 {
    quota_listing(c, name).await[0]["used_bytes"]
        .as_u64()
        .unwrap()
}

/// The body of a 413 refusal: DENIED, with the rule, usage and limit.
fn assert_quota_refusal(r: &support::RawResponse, used: u64, adding: u64) {
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "DENIED");
    let e = &r.json()["errors"][0];
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("policies.quota[0]")
            && message.contains("namespace team")
            && message.contains(&format!("holds {used} bytes of 100000")),
        "{message}"
    );
    assert_eq!(e["detail"]["used"], used);
    assert_eq!(e["detail"]["limit"], 100000);
    assert_eq!(e["detail"]["adding"], adding);
}

fn auth_header() -> String {
    format!("Authorization: {}", support::basic_auth_value())
}

/// One PATCH with a chunked body (no length), as docker sends it.
async fn patch_chunked(c: &Client, location: &str, data: &[u8]) -> reqwest::Response {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(4096).map(|p| Ok(p.to_vec())).collect();
    c.patch(location)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap()
}

/// Uploads `data` as a client like docker does: POST, one PATCH with a
/// chunked body, PUT with the digest.
async fn push_chunked(c: &Client, name: &str, data: &[u8]) -> reqwest::Response {
    let location = c.start_upload(name).await;
    let r = patch_chunked(c, &location, data).await;
    if r.status() != 202 {
        return r;
    }
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    c.put(&format!("{location}{sep}digest={}", sha256_digest(data)))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_push_over_the_limit_is_refused_before_its_body_is_read() {
    let s = TestServer::start_with(|c| {
        with_policies(c, TEAM_100K);
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let c = s.client();
    let first = pseudo_random(1, 60_000);
    c.push_blob("team/a", &first).await;
    assert_eq!(used(&c, "team/a").await, 60_000);

    // Announced lengths that do not fit are refused with no body sent:
    // the client has written only the head when the answer arrives.
    let digest = sha256_digest(&pseudo_random(2, 50_000));
    let head = format!(
        "POST /v2/team/a/blobs/uploads/?digest={digest} HTTP/1.1\nHost: x\n{}\nContent-Length: 50000",
        auth_header()
    );
    let r = raw_request(s.addr, &head, b"", false).await;
    assert_quota_refusal(&r, 60_000, 50_000);
    assert_eq!(r.header("connection"), Some("close"));
    let location = c.start_upload("team/a").await;
    let head = format!(
        "PATCH {location} HTTP/1.1\nHost: x\n{}\nContent-Type: application/octet-stream\nContent-Length: 50000",
        auth_header()
    );
    let r = raw_request(s.addr, &head, b"", false).await;
    assert_quota_refusal(&r, 60_000, 50_000);
    // A body of unknown length is cut where it stops fitting, and the
    // upload keeps nothing of it.
    let r = patch_chunked(&c, &location, &pseudo_random(3, 50_000)).await;
    assert_eq!(r.status(), 413);
    assert_eq!(support::error_code(r).await, "DENIED");
    let r = c.get(&location).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-0");
    assert_eq!(used(&c, "team/a").await, 60_000);

    // A blob counts once per namespace: the same blob in another of its
    // repositories, pushed or mounted, adds nothing.
    c.push_blob("team/b", &first).await;
    let r = c
        .post(&format!(
            "/v2/team/c/blobs/uploads/?mount={}&from=team/a",
            sha256_digest(&first)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(used(&c, "team/c").await, 60_000);
    // Outside the namespace, no limit.
    c.push_blob("other/x", &pseudo_random(4, 80_000)).await;

    // Up to the limit, by both kinds of upload; one byte over is refused
    // (and its session goes).
    c.push_blob("team/a", &pseudo_random(5, 30_000)).await;
    let r = push_chunked(&c, "team/a", &pseudo_random(6, 5_000)).await;
    assert_eq!(r.status(), 201);
    c.push_blob("team/a", &pseudo_random(7, 4_900)).await;
    assert_eq!(used(&c, "team/a").await, 99_900);
    let r = c
        .try_push_blob("team/a", &pseudo_random(8, 101))
        .await
        .unwrap_err();
    assert_eq!(r.status(), 413);
    // A manifest is a blob too: 400 bytes do not fit in the 100 left.
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&first), "size": first.len()},
        "layers": [],
        "annotations": {"padding": "x".repeat(200)},
    }))
    .unwrap();
    assert!(manifest.len() > 100);
    let r = c
        .put("/v2/team/a/manifests/v1")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body = support::error_body(r).await;
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(body["errors"][0]["detail"]["used"], 99_900);

    // The listing and the metrics show it.
    let q = &quota_listing(&c, "team/a").await[0];
    assert_eq!(q["rule"], "policies.quota[0]");
    assert_eq!(q["scope"], "namespace team");
    assert_eq!(q["max_bytes"], 100_000);
    assert!(quota_listing(&c, "other/x").await.is_empty());
    let text = s.metrics_text().await;
    assert!(
        text.contains(
            "registry_quota_used_bytes{rule=\"policies.quota[0]\",scope=\"namespace team\"} 99900"
        ) && text.contains(
            "registry_quota_limit_bytes{rule=\"policies.quota[0]\",scope=\"namespace team\"} 100000"
        ) && text.contains("registry_quota_refusals_total{rule=\"policies.quota[0]\"} 5"),
        "{text}"
    );
    s.stop().await;
}

/// `registry usage` on `s`'s storage, as the CLI runs it.
async fn usage(s: &TestServer, apply: bool) -> Vec<String> {
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let quotas = registry::policy::Policies::from_config(&s.config.policies).quota;
    registry::quota::usage_report(&storage, &quotas, apply)
        .await
        .unwrap()
}

/// `registry gc --delete-untagged`, as the CLI runs it (the quota
/// scopes reconciled after).
async fn gc(s: &TestServer) {
    support::gc_untagged(s).await;
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let quotas = registry::policy::Policies::from_config(&s.config.policies).quota;
    registry::quota::Ledger::new(storage)
        .after_gc(&quotas)
        .await
        .unwrap();
}

/// The used and linked bytes of `registry usage`'s first line.
fn used_and_linked(lines: &[String]) -> (u64, u64) {
    let words: Vec<&str> = lines[0].split([' ', ',']).collect();
    let after = |w: &str| -> u64 {
        let i = words.iter().position(|x| *x == w).unwrap();
        words[i + 1].parse().unwrap()
    };
    (after("used"), after("linked"))
}

#[tokio::test]
async fn parallel_pushes_through_two_replicas_pass_the_limit_by_at_most_one_blob_each() {
    const LIMIT: u64 = 1_000_000;
    const BLOB: usize = 50_000;
    const CLIENTS: u64 = 6;
    let s = TestServer::start_with(|c| {
        with_policies(
            c,
            &format!("[[quota]]\nnamespace = \"team\"\nmax_bytes = {LIMIT}\n"),
        )
    })
    .await;
    let replica = s.start_replica().await;
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let c = if client % 2 == 0 {
            s.client()
        } else {
            replica.client()
        };
        let accepted = accepted.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let data = pseudo_random(client * 1000 + i, BLOB);
                match c.try_push_blob(&format!("team/c{client}"), &data).await {
                    Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
                    Err(r) => {
                        assert_eq!(r.status(), 413);
                        return;
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.load(Ordering::Relaxed) * BLOB as u64;
    let lines = usage(&s, false).await;
    let (used, linked) = used_and_linked(&lines);
    assert_eq!((used, linked), (accepted, accepted), "{lines:?}");
    assert!(
        used > LIMIT - BLOB as u64 && used <= LIMIT + CLIENTS * BLOB as u64,
        "{used} bytes against a limit of {LIMIT}: {lines:?}"
    );
    assert_eq!(lines.last().unwrap(), "usage matches the links");
    // Both replicas read the same usage.
    assert_eq!(used_of(&s, "team/c0").await, used);
    assert_eq!(used_of(&replica, "team/c1").await, used);
    replica.stop().await;
    s.stop().await;
}

async fn used_of(s: &TestServer, name: &str) -> u64 {
    used(&s.client(), name).await
}

#[tokio::test]
async fn usage_follows_deletes_and_gc_and_survives_a_restart() {
    let s = TestServer::start_with(|c| {
        with_policies(c, "[[quota]]\nnamespace = \"team\"\nmax_bytes = 10000000\n")
    })
    .await;
    let c = s.client();
    let shared = pseudo_random(10, 30_000);
    let only_a = pseudo_random(11, 20_000);
    let only_b = pseudo_random(12, 10_000);
    let (manifest_a, bytes_a) = c.push_image("team/a", "v1", &[&shared, &only_a]).await;
    let (_, bytes_b) = c.push_image("team/b", "v1", &[&shared, &only_b]).await;
    // Both images have the same config (two layers): counted once.
    let config = r#"{"architecture":"amd64","os":"linux","n":2}"#.len();
    let all = (shared.len() + only_a.len() + only_b.len() + config + bytes_a.len() + bytes_b.len())
        as u64;
    assert_eq!(used(&c, "team/a").await, all);
    let lines = usage(&s, false).await;
    assert_eq!(used_and_linked(&lines), (all, all), "{lines:?}");

    // Kept across a restart.
    let s = s.restart().await;
    let c = s.client();
    assert_eq!(used(&c, "team/b").await, all);

    // A deleted manifest still holds its blobs until gc takes them.
    let r = c
        .delete(&format!("/v2/team/a/manifests/{manifest_a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(used(&c, "team/b").await, all);
    gc(&s).await;
    let lines = usage(&s, false).await;
    let (after_gc, linked) = used_and_linked(&lines);
    assert_eq!(after_gc, linked, "{lines:?}");
    let b_alone = (shared.len() + only_b.len() + config + bytes_b.len()) as u64;
    assert!((b_alone..all).contains(&after_gc), "{after_gc}: {lines:?}");
    assert_eq!(used(&c, "team/b").await, after_gc);

    // A whole-repository delete leaves the namespace at once.
    let r = c
        .delete("/v2/_ext/repositories/team/b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let lines = usage(&s, false).await;
    let (after_delete, linked) = used_and_linked(&lines);
    assert_eq!(after_delete, linked, "{lines:?}");
    assert!(after_delete < after_gc, "{lines:?}");
    assert_eq!(lines.last().unwrap(), "usage matches the links");
    s.stop().await;
}

#[tokio::test]
async fn a_namespace_holds_at_most_max_repositories() {
    let s = TestServer::start_with(|c| {
        with_policies(c, "[[quota]]\nnamespace = \"team\"\nmax_repositories = 2\n")
    })
    .await;
    let c = s.client();
    for name in ["team/a", "team/b"] {
        c.push_image(name, "v1", &[b"layer"]).await;
    }
    let r = c.post("/v2/team/c/blobs/uploads/").send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body = support::error_body(r).await;
    let e = &body["errors"][0];
    assert_eq!(e["code"], "DENIED");
    assert_eq!(e["detail"]["repositories"], 2);
    assert_eq!(e["detail"]["limit"], 2);
    assert!(
        e["message"].as_str().unwrap().contains("policies.quota[0]"),
        "{e}"
    );
    // The existing ones still take pushes; elsewhere, no limit.
    c.push_image("team/a", "v2", &[b"another layer"]).await;
    c.push_image("elsewhere", "v1", &[b"layer"]).await;
    s.stop().await;
}

#[tokio::test]
async fn a_rule_added_later_counts_what_is_stored() {
    let s = TestServer::start().await;
    let c = s.client();
    c.push_blob("app", &pseudo_random(20, 70_000)).await;
    c.push_blob("team/x", &pseudo_random(21, 20_000)).await;
    // Restarted with a limit on every repository together.
    let mut s = s;
    with_policies(&mut s.config, "total_max_bytes = 100000\n");
    let s = s.restart().await;
    let c = s.client();
    assert_eq!(used(&c, "app").await, 90_000);
    let r = c
        .try_push_blob("team/y", &pseudo_random(22, 20_000))
        .await
        .unwrap_err();
    assert_eq!(r.status(), 413);
    let body = support::error_body(r).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("policies.total_max_bytes"),
        "{body}"
    );
    c.push_blob("team/y", &pseudo_random(23, 10_000)).await;
    assert_eq!(used(&c, "app").await, 100_000);
    s.stop().await;
}

/// `registry usage` reports drift (here: a claim lost as in a crash
/// between a link and its claim) and `--apply` corrects it. The binary on
/// disk storage: what an operator runs.
#[tokio::test]
async fn registry_usage_reports_and_corrects_drift() {
    if support::storage_is_s3() {
        return; // the claims are removed by path on disk
    }
    let s = TestServer::start_with(|c| with_policies(c, TEAM_100K)).await;
    let c = s.client();
    let blob = pseudo_random(30, 40_000);
    let digest = c.push_blob("team/a", &blob).await;
    c.push_blob("team/a", &pseudo_random(31, 1_000)).await;
    let claim = s.storage_root().join(format!(
        "docker/registry/v2/_quota/namespace/team/_blobs/sha256/{}/40000",
        digest.trim_start_matches("sha256:")
    ));
    std::fs::remove_file(&claim).unwrap();
    let config = s.dir().join("quota.toml");
    std::fs::write(
        &config,
        format!(
            "[policies]\n{}",
            TEAM_100K.replace("[[quota]]", "[[policies.quota]]")
        ),
    )
    .unwrap();
    let htpasswd = s.config.auth.htpasswd.path.clone();
    let run = |apply: bool| {
        let mut args = vec!["usage", "--config", config.to_str().unwrap()];
        if apply {
            args.push("--apply");
        }
        let out = registry_bin::run(&s.storage_root(), &htpasswd, &args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // The counters still say 41000; the claims 1000; the links 41000.
    let report = run(false);
    assert!(
        report.contains("policies.quota[0] namespace team: used 41000 bytes, linked 41000 bytes, limit 100000, drift 0 (1 blobs linked but not counted, 0 counted but no longer linked)"),
        "{report}"
    );
    assert!(report.contains("1 scopes drifted"), "{report}");
    let report = run(true);
    assert!(report.contains("now used 41000, drift 0"), "{report}");
    assert!(claim.exists());
    let report = run(false);
    assert!(report.contains("usage matches the links"), "{report}");
    assert_eq!(used(&c, "team/a").await, 41_000);
    s.stop().await;
}

/// A namespace exactly full still takes what it counts already: a CI
/// re-run pushing the same image (the same manifest, under its tag or a
/// new one) passes; anything new is refused.
#[tokio::test]
async fn a_full_namespace_takes_the_same_image_again() {
    let s = TestServer::start().await;
    let c = s.client();
    let layer = pseudo_random(40, 5_000);
    let (digest, manifest) = c.push_image("team/a", "v1", &[&layer]).await;
    let config = r#"{"architecture":"amd64","os":"linux","n":1}"#.len();
    let full = (layer.len() + config + manifest.len()) as u64;
    let mut s = s;
    with_policies(
        &mut s.config,
        &format!("[[quota]]\nnamespace = \"team\"\nmax_bytes = {full}\n"),
    );
    let s = s.restart().await;
    let c = s.client();
    assert_eq!(used(&c, "team/a").await, full);
    for tag in ["v1", "v1-rerun"] {
        let again = c
            .push_manifest(
                "team/a",
                tag,
                "application/vnd.oci.image.manifest.v1+json",
                &manifest,
            )
            .await;
        assert_eq!(again, digest);
    }
    let r = c
        .try_push_blob("team/a", b"one byte more")
        .await
        .unwrap_err();
    assert_eq!(r.status(), 413);
    assert_eq!(used(&c, "team/a").await, full);
    s.stop().await;
}

const TEAM_1M: &str = r#"
[[quota]]
namespace = "team"
max_bytes = 1000000
"#;

/// What an upload session holds, as its status says (`Range: 0-<end>`;
/// sessions here hold either nothing or far more than one byte).
async fn session_bytes(c: &Client, location: &str) -> u64 {
    let r = c.get(location).send().await.unwrap();
    assert_eq!(r.status(), 204, "{location}");
    let range = r.headers()["range"].to_str().unwrap();
    match range.strip_prefix("0-").unwrap().parse::<u64>().unwrap() {
        0 => 0,
        end => end + 1,
    }
}

/// Bytes of upload data on the local disk (chunk files of every session).
fn upload_bytes_on_disk(s: &TestServer) -> u64 {
    let root = s.storage_root();
    support::storage_files(&root)
        .iter()
        .filter(|f| f.contains("/_uploads/") && f.contains("/chunks/"))
        .map(|f| std::fs::metadata(root.join(f)).map_or(0, |m| m.len()))
        .sum()
}

/// Sessions left open ("parked") used to be checked only for room for one
/// more byte, so each could take the whole room: four sessions held 3.6 MB
/// under a 1 MB quota. Their bytes are now reserved against the scope:
/// however the PATCHes interleave, the sessions together hold at most the
/// quota, and the room comes back when a session is cancelled.
#[tokio::test]
async fn parked_upload_sessions_cannot_exceed_the_quota_on_disk() {
    let s = TestServer::start_with(|c| with_policies(c, TEAM_1M)).await;
    let c = s.client();
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(c.start_upload("team/app").await);
    }
    // Four PATCHes of 900 kB at once (known lengths).
    let patches = sessions.iter().enumerate().map(|(i, location)| {
        let c = s.client();
        let location = location.clone();
        async move {
            c.patch(&location)
                .header("content-type", "application/octet-stream")
                .body(pseudo_random(i as u64, 900_000))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(patches).await;
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 413),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 202).count() <= 1,
        "two 900 kB chunks under a 1 MB quota: {statuses:?}"
    );
    // Then one after the other, with chunked bodies as docker sends them.
    for (i, location) in sessions.iter().enumerate() {
        if session_bytes(&c, location).await == 0 {
            let r = patch_chunked(&c, location, &pseudo_random(10 + i as u64, 900_000)).await;
            assert!([202, 413].contains(&r.status().as_u16()), "{}", r.status());
        }
    }
    let mut held = Vec::new();
    for location in &sessions {
        held.push(session_bytes(&c, location).await);
    }
    let total: u64 = held.iter().sum();
    assert!(total <= 1_000_000, "the sessions hold {held:?}");
    assert_eq!(
        held.iter().filter(|b| **b == 900_000).count(),
        1,
        "{held:?}"
    );
    if !support::storage_is_s3() {
        let on_disk = upload_bytes_on_disk(&s);
        assert!(on_disk <= 1_000_000, "{on_disk} bytes of uploads on disk");
    }

    // What is left (100 kB) still takes small chunks.
    let small = sessions
        .iter()
        .zip(&held)
        .find(|(_, b)| **b == 0)
        .map(|(l, _)| l.clone())
        .unwrap();
    let r = c
        .patch(&small)
        .header("content-type", "application/octet-stream")
        .body(pseudo_random(20, 60_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let small = r.headers()["location"].to_str().unwrap().to_owned();

    // Cancelling the big session gives its room back.
    let big = sessions
        .iter()
        .zip(&held)
        .find(|(_, b)| **b == 900_000)
        .map(|(l, _)| l.clone())
        .unwrap();
    assert_eq!(c.delete(&big).send().await.unwrap().status(), 204);
    let rest = pseudo_random(21, 900_000);
    let r = c
        .patch(&small)
        .header("content-type", "application/octet-stream")
        .body(rest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the cancelled session's room came back");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let mut blob = pseudo_random(20, 60_000);
    blob.extend_from_slice(&rest);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = c
        .put(&format!("{location}{sep}digest={}", sha256_digest(&blob)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "its own reservation does not count twice");
    assert_eq!(used(&c, "team/app").await, 960_000);
    // The finished session's reservation went with it: an idle session
    // may take the 40 kB left.
    let idle = sessions
        .iter()
        .zip(&held)
        .filter(|(_, b)| **b == 0)
        .nth(1)
        .map(|(l, _)| l.clone())
        .unwrap();
    let r = c
        .patch(&idle)
        .header("content-type", "application/octet-stream")
        .body(pseudo_random(22, 40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// A repository takes at most `max_upload_sessions_per_repository` open
/// sessions; the next POST is answered 429 `TOOMANYREQUESTS` with
/// `Retry-After`, until one ends.
#[tokio::test]
async fn too_many_parked_upload_sessions_are_refused_with_429() {
    let s = TestServer::start_with(|c| {
        with_policies(
            c,
            &format!("max_upload_sessions_per_repository = 3\n{TEAM_1M}"),
        )
    })
    .await;
    let c = s.client();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(c.start_upload("team/app").await);
    }
    let r = c.post("/v2/team/app/blobs/uploads/").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(support::error_code(r).await, "TOOMANYREQUESTS");
    // Another repository has its own.
    c.start_upload("team/other").await;
    assert_eq!(c.delete(&sessions[0]).send().await.unwrap().status(), 204);
    c.start_upload("team/app").await;
}
