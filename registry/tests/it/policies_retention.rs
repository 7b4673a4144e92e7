//! Retention (`[[policies.retention]]`): the dry run reports every tag and
//! why it stays or goes, removing nothing; applied, it removes exactly the
//! tags it reported; gc then frees exactly what only those tags reached (an
//! index with its platforms, a signature with its subject), the kept images
//! pull byte for byte as pushed, and pushes during the run lose nothing.
//! Push times are the tag links' modification times (as the listing reads
//! them), set back here to make "pushed 12 days ago" without waiting.

use crate::support;
use crate::support::registry_bin;

use std::time::{Duration, SystemTime};

use registry::policy::retention;
use support::{sha256_digest, Client, TestServer, OCI_INDEX, OCI_MANIFEST};

const DAY: Duration = Duration::from_secs(86400);

const RULES: &str = r#"
[[immutable]]
repository = "ci/**"
tags = ["v*"]
[[retention]]
repository = "ci/**"
keep_last = 1
keep_tags = ["latest"]
keep_pushed_within = "7d"
keep_pulled_within = "30d"
"#;

fn policies(dry_run: bool) -> registry::config::Policies {
    let mut p: registry::config::Policies = toml::from_str(RULES).unwrap();
    p.retention[0].dry_run = dry_run;
    p
}

/// Pushes a single-platform manifest by digest (no tag), returns it.
async fn push_untagged(c: &Client, name: &str, layer: &[u8]) -> (String, Vec<u8>) {
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let config_digest = c.push_blob(name, config).await;
    let layer_digest = c.push_blob(name, layer).await;
    let manifest = support::image_manifest(
        &config_digest,
        config.len(),
        &[(&layer_digest, layer.len())],
    );
    let digest = sha256_digest(&manifest);
    c.push_manifest(name, &digest, OCI_MANIFEST, &manifest)
        .await;
    (digest, manifest)
}

/// Sets the modification time of `key` under `s`'s storage root.
fn set_modified(s: &TestServer, key: &str, at: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(s.storage_root().join(key))
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// Sets the push time of `tag` (its current link's modification time).
fn set_pushed(s: &TestServer, name: &str, tag: &str, at: SystemTime) {
    let key = format!("docker/registry/v2/repositories/{name}/_manifests/tags/{tag}/current/link");
    set_modified(s, &key, at);
}

fn blob_exists(s: &TestServer, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    s.storage_root()
        .join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
        .exists()
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[tokio::test]
async fn a_dry_run_reports_then_apply_removes_exactly_that_and_gc_frees_only_their_blobs() {
    if support::storage_is_s3() {
        eprintln!("disk only: push times are set back through the files' mtimes");
        return;
    }
    let s = TestServer::start_with(|c| c.policies = policies(true)).await;
    let mut c = s.client();
    let name = "ci/app";

    // CI builds c01..c06, one layer each; latest names c01's manifest.
    let mut images = Vec::new();
    for i in 1..=6 {
        let layer = format!("build {i}").into_bytes();
        let tag = format!("c{i:02}");
        let (digest, bytes) = c.push_image(name, &tag, &[&layer]).await;
        images.push((tag, digest, bytes, sha256_digest(&layer), layer));
    }
    let (latest, _) = c.push_image(name, "latest", &[b"build 1"]).await;
    assert_eq!(latest, images[0].1);
    let (release, release_bytes) = c.push_image(name, "v1.0", &[b"release 1.0"]).await;
    // A multi-arch index of two platform manifests, and a signature of c03.
    let (amd, amd_bytes) = push_untagged(&c, name, b"multi amd64").await;
    let (arm, arm_bytes) = push_untagged(&c, name, b"multi arm64").await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_bytes.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    c.push_manifest(name, "multi", OCI_INDEX, &index).await;
    let sig_layer = b"MEUCIQ<signature of c03>";
    let sig_layer_digest = sha256_digest(sig_layer);
    let sig = push_referrer(&c, name, &images[2].1, images[2].2.len(), sig_layer).await;
    // A repository no rule governs.
    c.push_image("other/app", "old", &[b"other"]).await;

    // c02 is pulled (by tag), and the pull recorded: the server writes
    // pull times in batches and when it stops.
    let r = c.get_manifest(name, "c02").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let s = s.restart().await;
    c = s.client();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            s.storage_root()
                .join("docker/registry/v2/_pulls/ci/app/_pulls.json"),
        )
        .expect("the pull was recorded at stop"),
    )
    .unwrap();
    let c02_pulled =
        stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(record["c02"].as_u64().unwrap()));

    // Push times: c06 now, c05 two days ago, the rest older than a week.
    let now = SystemTime::now();
    let ages = [
        ("c01", 13),
        ("c02", 12),
        ("c03", 11),
        ("c04", 10),
        ("c05", 2),
        ("latest", 9),
        ("multi", 20),
        ("v1.0", 30),
    ];
    for (tag, days) in ages {
        set_pushed(&s, name, tag, now - DAY * days);
    }
    set_pushed(&s, "other/app", "old", now - DAY * 300);
    let pushed = |tag: &str| stamp(now - DAY * ages.iter().find(|a| a.0 == tag).unwrap().1);

    let rule = "policies.retention[0]";
    let expected = |verb: &str| {
        vec![
            format!("keep ci/app:c06 ({rule}: keep_last 1 (#1))"),
            format!("keep ci/app:c05 ({rule}: keep_pushed_within 7days)"),
            format!("keep ci/app:latest ({rule}: keep_tags \"latest\")"),
            format!("{verb} ci/app:c04 ({rule}: pushed {}, kept by no condition)", pushed("c04")),
            format!("{verb} ci/app:c03 ({rule}: pushed {}, kept by no condition)", pushed("c03")),
            format!("keep ci/app:c02 ({rule}: keep_pulled_within 30days (pulled {c02_pulled}))"),
            format!("{verb} ci/app:c01 ({rule}: pushed {}, kept by no condition; its manifest stays, a kept tag names it)", pushed("c01")),
            format!("{verb} ci/app:multi ({rule}: pushed {}, kept by no condition)", pushed("multi")),
            format!("keep ci/app:v1.0 ({rule}: immutable under policies.immutable[0])"),
        ]
    };
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let before = s.stored().await;

    // The dry run, in process and from the command line: the same report,
    // and nothing changes.
    let p = registry::policy::Policies::from_config(&policies(true));
    let report = retention::run(&storage, &p.retention, &p.immutable, true)
        .await
        .unwrap();
    let lines: Vec<String> = report.tags.iter().map(|t| t.line()).collect();
    assert_eq!(lines, expected("would remove"));
    assert_eq!(
        report.summary(),
        "retention: 1 repositories, 9 tags: 5 kept, 0 removed, 4 to remove in dry-run rules"
    );
    let config_file = s.dir().join("retention.toml");
    std::fs::write(
        &config_file,
        format!("[policies]\n{}", RULES.replace("[[", "[[policies.")),
    )
    .unwrap();
    let out = registry_bin::run(
        &s.storage_root(),
        &s.dir().join("htpasswd"),
        &["retention", "-c", config_file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let mut want = expected("would remove");
    want.push(report.summary());
    assert_eq!(printed.lines().collect::<Vec<_>>(), want);
    s.assert_stored_unchanged(&before, "a dry run").await;

    // Applied, with pushes going on: exactly the reported tags go.
    let p = registry::policy::Policies::from_config(&policies(false));
    let pushing = {
        let c = s.client();
        tokio::spawn(async move {
            for i in 0..8 {
                c.push_image("ci/app", &format!("n{i}"), &[format!("new {i}").as_bytes()])
                    .await;
            }
        })
    };
    let report = retention::run(&storage, &p.retention, &p.immutable, true)
        .await
        .unwrap();
    pushing.await.unwrap();
    let lines: Vec<String> = report.tags.iter().map(|t| t.line()).collect();
    // Exactly the reported tags were removed; the builds pushed during the
    // run were not listed yet or are kept (the newest pushes: they may take
    // keep_last's place from c06, which keep_pushed_within then keeps).
    let removed: Vec<&String> = lines.iter().filter(|l| !l.starts_with("keep ")).collect();
    let want = expected("remove");
    let want_removed: Vec<&String> = want.iter().filter(|l| !l.starts_with("keep ")).collect();
    assert_eq!(removed, want_removed, "{lines:#?}");
    assert_eq!(report.removed(), 4);
    let mut left = vec!["c02", "c05", "c06", "latest", "v1.0"];
    left.extend(["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"]);
    left.sort();
    assert_eq!(c.tag_list(name).await, left);
    assert_eq!(c.tag_list("other/app").await, ["old"]);

    // gc (untagged manifests, no grace) frees what only those tags reached.
    support::gc_untagged(&s).await;
    for (tag, _, _, layer, _) in &images {
        let kept = matches!(tag.as_str(), "c01" | "c02" | "c05" | "c06");
        assert_eq!(blob_exists(&s, layer), kept, "{tag}'s layer");
    }
    for (what, d) in [
        ("the index's amd64 manifest", &amd),
        ("the index's arm64 manifest", &arm),
        ("c03's signature", &sig),
        ("the signature's layer", &sig_layer_digest),
    ] {
        assert!(!blob_exists(&s, d), "{what} is still stored");
    }
    // The kept images pull as pushed.
    for (tag, digest, bytes) in [
        // c01's tag is gone, its manifest stays (latest names it).
        (images[0].1.as_str(), &images[0].1, &images[0].2),
        ("latest", &images[0].1, &images[0].2),
        ("c05", &images[4].1, &images[4].2),
        ("c06", &images[5].1, &images[5].2),
        ("v1.0", &release, &release_bytes),
    ] {
        let r = c.get_manifest(name, tag).send().await.unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "{tag}");
    }
    for (_, _, _, layer, content) in [&images[0], &images[4], &images[5]] {
        let r = c
            .get(&format!("/v2/{name}/blobs/{layer}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], &content[..]);
    }
}

/// `policies.retention_interval`: the server applies the rules by itself.
#[tokio::test]
async fn the_server_applies_the_rules_on_its_schedule() {
    if support::storage_is_s3() {
        eprintln!("disk only: push times are set back through the files' mtimes");
        return;
    }
    let s = TestServer::start_with(|c| {
        c.policies = policies(false);
        c.policies.retention_interval = Duration::from_millis(200);
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let c = s.client();
    c.push_image("ci/app", "old", &[b"old build"]).await;
    c.push_image("ci/app", "new", &[b"new build"]).await;
    // Both are within keep_pushed_within until "old" is a month old.
    assert_eq!(c.tag_list("ci/app").await, ["new", "old"]);
    set_pushed(&s, "ci/app", "old", SystemTime::now() - DAY * 30);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.tag_list("ci/app").await != ["new"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduled run did not remove the old tag"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The metrics count it (the removal is counted when its run ends).
    let metrics_url = format!("http://{}/metrics", s.metrics_addr().unwrap());
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l == "registry_retention_tags_removed_total 1")
        {
            assert!(
                text.contains("registry_retention_runs_total{result=\"ok\"}"),
                "{text}"
            );
            assert!(
                text.lines()
                    .any(|l| l == "registry_retention_tags_to_remove 0"),
                "{text}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On any storage (disk or S3, whose push times are whole seconds), with
/// two replicas sharing it, both applying the rules on their schedules:
/// the newest tag stays, every other goes, and a push during it is kept.
#[tokio::test]
async fn two_replicas_on_shared_storage_apply_the_schedule() {
    let keep_newest = |c: &mut registry::config::Config| {
        c.policies = toml::from_str(
            "retention_interval = \"300ms\"\n[[retention]]\nrepository = \"ci/**\"\nkeep_last = 1\ndry_run = false",
        )
        .unwrap();
    };
    let s = TestServer::start_with(keep_newest).await;
    let replica = s.start_replica().await;
    let (c, r) = (s.client(), replica.client());
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        // Pushed a second apart, to one replica or the other.
        let to = if i % 2 == 0 { &c } else { &r };
        to.push_image("ci/app", tag, &[format!("build {tag}").as_bytes()])
            .await;
        support::next_second().await;
    }
    for (who, client) in [("the first replica", &c), ("the second replica", &r)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let tags = client.tag_list("ci/app").await;
            if tags == ["c"] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{who} still lists {tags:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r2 = c.get_manifest("ci/app", "c").send().await.unwrap();
    assert_eq!(r2.status(), 200);
    replica.stop().await;
}

/// Sets the push time of manifest `digest` (its revision link's
/// modification time).
fn set_manifest_pushed(s: &TestServer, name: &str, digest: &str, at: SystemTime) {
    let key = format!(
        "docker/registry/v2/repositories/{name}/_manifests/revisions/sha256/{}/link",
        digest.trim_start_matches("sha256:")
    );
    set_modified(s, &key, at);
}

/// A signature-like referrer of `subject` (untagged), with its own layer.
async fn push_referrer(
    c: &Client,
    name: &str,
    subject: &str,
    subject_len: usize,
    note: &[u8],
) -> String {
    c.push_referrer(
        name,
        (subject, subject_len),
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        note,
    )
    .await
}

/// `delete_untagged_after`: manifests no kept tag reaches go when older
/// than the window, with their referrers; a kept tag's referrers, a kept
/// index's children and recent untagged pushes stay. A dry-run rule only
/// reports them and the collector leaves them.
#[tokio::test]
async fn untagged_manifests_go_after_their_rules_window() {
    if support::storage_is_s3() {
        eprintln!("disk only: push times are set back through the files' mtimes");
        return;
    }
    let rules = |dry_run: bool| -> registry::config::Policies {
        toml::from_str(&format!(
            "[[retention]]\nrepository = \"ci/**\"\nkeep_tags = [\"*\"]\ndelete_untagged_after = \"1d\"\ndry_run = {dry_run}\n"
        ))
        .unwrap()
    };
    let s = TestServer::start_with(|c| c.policies = rules(true)).await;
    let c = s.client();
    let name = "ci/u";
    let (tagged, tagged_bytes) = c.push_image(name, "v1", &[b"tagged layer"]).await;
    let kept_sig = push_referrer(&c, name, &tagged, tagged_bytes.len(), b"sig of v1").await;
    let (amd, amd_bytes) = push_untagged(&c, name, b"child amd64").await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    let index_digest = c.push_manifest(name, "multi", OCI_INDEX, &index).await;
    let (old, old_bytes) = push_untagged(&c, name, b"old untagged layer").await;
    let old_sig = push_referrer(&c, name, &old, old_bytes.len(), b"sig of old").await;
    let (fresh, _) = push_untagged(&c, name, b"fresh untagged layer").await;
    let two_days_ago = SystemTime::now() - DAY * 2;
    for d in [&tagged, &kept_sig, &amd, &index_digest, &old, &old_sig] {
        set_manifest_pushed(&s, name, d, two_days_ago);
    }
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let gc = |policies: registry::config::Policies| {
        let storage = storage.clone();
        async move {
            let options = registry::storage::maintenance::gc::Options {
                dry_run: false,
                delete_untagged: false,
                grace: Duration::ZERO,
                upload_max_age: None,
                untagged_after: retention::untagged_windows(&policies.retention),
            };
            registry::storage::maintenance::gc::run(&storage, &options, None)
                .await
                .unwrap()
        }
    };
    let expected = |dry_run: bool| -> Vec<String> {
        let mut going = [(&old, "old"), (&old_sig, "old_sig")];
        going.sort_by(|a, b| a.0.cmp(b.0));
        going
            .iter()
            .map(|(d, _)| {
                let why = format!(
                    "policies.retention[0]: pushed {}, reached by no kept tag, delete_untagged_after 1day",
                    stamp(two_days_ago)
                );
                if dry_run {
                    format!("would remove untagged ci/u@{d} ({why})")
                } else {
                    format!("untagged ci/u@{d} goes with the next gc ({why})")
                }
            })
            .collect()
    };
    for dry_run in [true, false] {
        let p = registry::policy::Policies::from_config(&rules(dry_run));
        let report = retention::run(&storage, &p.retention, &p.immutable, true)
            .await
            .unwrap();
        let lines: Vec<String> = report.untagged.iter().map(|u| u.line()).collect();
        assert_eq!(lines, expected(dry_run), "dry_run {dry_run}");
        assert!(
            report.summary().ends_with(&format!(
                "; 2 untagged manifests past their window ({} go with the next gc)",
                if dry_run { 0 } else { 2 }
            )),
            "{}",
            report.summary()
        );
        gc(rules(dry_run)).await;
        // Read from storage: the server's metadata cache may answer for
        // its ttl what another process removed.
        let repo: registry::oci::RepoName = name.parse().unwrap();
        let mut gone = Vec::new();
        for d in [
            &tagged,
            &kept_sig,
            &amd,
            &index_digest,
            &fresh,
            &old,
            &old_sig,
        ] {
            let stored = storage
                .read_manifest(&repo, &d.parse().unwrap())
                .await
                .unwrap();
            gone.push(stored.is_none());
        }
        let expect_gone = !dry_run;
        assert_eq!(
            gone,
            [false, false, false, false, false, expect_gone, expect_gone],
            "dry_run {dry_run}: tagged, its signature, the index's child, the index, the fresh one stay; the old one and its signature go"
        );
    }
    assert!(!blob_exists(&s, &sha256_digest(b"old untagged layer")));
    assert!(!blob_exists(&s, &sha256_digest(b"sig of old")));
    assert!(blob_exists(&s, &sha256_digest(b"sig of v1")));
    assert!(blob_exists(&s, &sha256_digest(b"fresh untagged layer")));
    s.stop().await;
}

/// distribution-spec main: each tag a push by digest with `?tag=` sets is
/// a push of its own to retention (its own push time), here of a sha512
/// image: the tag set back 30 days goes, its siblings stay, and the sha512
/// manifest stays tagged.
#[tokio::test]
async fn retention_treats_each_tag_of_a_multi_tag_push_as_a_push() {
    if support::storage_is_s3() {
        eprintln!("disk only: push times are set back through the files' mtimes");
        return;
    }
    let s = TestServer::start_with(|c| c.policies = policies(false)).await;
    let c = s.client();
    let name = "ci/multi";
    c.push_image(name, "old1", &[b"old build"]).await;
    let config = br#"{"architecture":"arm64","os":"linux","multi":1}"#;
    let (digest, _) = c
        .push_sha512_image(name, config, &[], &["b1", "b2", "latest"])
        .await;
    let month_ago = SystemTime::now() - 30 * DAY;
    set_pushed(&s, name, "old1", month_ago);
    set_pushed(&s, name, "b1", month_ago);
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let p = registry::policy::Policies::from_config(&policies(false));
    retention::run(&storage, &p.retention, &p.immutable, true)
        .await
        .unwrap();
    let s = s.restart().await;
    let c = s.client();
    assert_eq!(c.tag_list(name).await, ["b2", "latest"]);
    let r = c.get_manifest(name, "b2").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
}
