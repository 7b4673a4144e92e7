//! Garbage collection: what goes, what stays, the grace window, untagged
//! manifests, upload sessions, dry runs, the lock, the push guard, online
//! GC, and GC running repeatedly under concurrent pushes and pulls.

use crate::support;
use crate::support::registry_bin;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry::oci::RepoName;
use registry::storage::gc_guard::Pending;
use registry::storage::maintenance::gc::{self, GcError, Options};
use registry::storage::Storage;
use support::{
    blob_file, sha256_digest, storage_files, Client, TestServer, ALL_MANIFEST_TYPES, OCI_MANIFEST,
};

fn open_storage(s: &TestServer) -> Storage {
    registry::storage::backend::open(&s.config.storage).expect("storage opens")
}

fn options(grace: Duration) -> Options {
    Options {
        dry_run: false,
        delete_untagged: false,
        grace,
        upload_max_age: None,
        untagged_after: Vec::new(),
    }
}

/// Every blob digest stored, from the files on disk.
fn stored_blobs(root: &Path) -> BTreeSet<String> {
    storage_files(root)
        .iter()
        .filter_map(|f| {
            let rest = f.strip_prefix("docker/registry/v2/blobs/sha256/")?;
            let hex = rest.strip_suffix("/data")?.split('/').nth(1)?;
            Some(format!("sha256:{hex}"))
        })
        .collect()
}

/// Every `_layers` link of `repo`, from the files on disk.
fn layer_links(root: &Path, repo: &str) -> BTreeSet<String> {
    let prefix = format!("docker/registry/v2/repositories/{repo}/_layers/sha256/");
    storage_files(root)
        .iter()
        .filter_map(|f| {
            let hex = f.strip_prefix(&prefix)?.strip_suffix("/link")?;
            Some(format!("sha256:{hex}"))
        })
        .collect()
}

/// What an image is made of, to check a pull against.
#[derive(Clone, Debug)]
struct Image {
    repo: String,
    tag: String,
    digest: String,
    /// Config and layer digests.
    blobs: Vec<String>,
}

impl Image {
    fn all_digests(&self) -> Vec<String> {
        let mut v = self.blobs.clone();
        v.push(self.digest.clone());
        v
    }
}

async fn push_image(c: &Client, repo: &str, tag: &str, layers: &[&[u8]]) -> Image {
    let (digest, bytes) = c.push_image(repo, tag, layers).await;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    Image {
        repo: repo.into(),
        tag: tag.into(),
        digest,
        blobs,
    }
}

/// Pulls by tag and checks every digest; Err describes what failed.
async fn pull_intact(c: &Client, image: &Image) -> Result<(), String> {
    let r = c
        .get(&format!("/v2/{}/manifests/{}", image.repo, image.tag))
        .header("accept", ALL_MANIFEST_TYPES)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!(
            "{}:{} manifest: {}",
            image.repo,
            image.tag,
            r.status()
        ));
    }
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if sha256_digest(&body) != image.digest {
        return Err(format!(
            "{}:{} manifest digest differs",
            image.repo, image.tag
        ));
    }
    for d in &image.blobs {
        let r = c
            .get(&format!("/v2/{}/blobs/{d}", image.repo))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("{}: blob {d}: {}", image.repo, r.status()));
        }
        let data = r.bytes().await.map_err(|e| e.to_string())?;
        if &sha256_digest(&data) != d {
            return Err(format!("{}: blob {d}: content differs", image.repo));
        }
    }
    Ok(())
}

async fn status_of(c: &Client, path: &str) -> u16 {
    support::status(c.get(path).header("accept", ALL_MANIFEST_TYPES)).await
}

#[tokio::test]
async fn gc_removes_what_nothing_references_and_keeps_every_image() {
    let s = TestServer::start().await;
    let c = s.client();
    let root = s.storage_root();
    let a = push_image(&c, "team/a", "v1", &[b"layer one", b"shared layer"]).await;
    let b = push_image(&c, "team/b", "v1", &[b"shared layer", b"b only", b"b too"]).await;
    let orphan = c.push_blob("team/a", b"pushed, never referenced").await;
    // Image b goes away through the API: its content stays until GC.
    let r = c
        .delete(&format!("/v2/team/b/manifests/{}", b.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(blob_file(&root, &b.blobs[2]).exists());
    // b's config, its two own layers and its manifest, and the orphan.
    let mut expected: Vec<String> = vec![
        b.blobs[0].clone(),
        b.blobs[2].clone(),
        b.blobs[3].clone(),
        b.digest.clone(),
        orphan.clone(),
    ];
    expected.sort();
    let bytes: u64 = expected
        .iter()
        .map(|d| std::fs::metadata(blob_file(&root, d)).unwrap().len())
        .sum();

    let report = gc::run(&open_storage(&s), &options(Duration::ZERO), None)
        .await
        .unwrap();
    let mut deleted: Vec<String> = report
        .deleted_blobs
        .iter()
        .map(|(d, _)| d.to_string())
        .collect();
    deleted.sort();
    assert_eq!(deleted, expected, "{report}");
    assert_eq!(report.bytes_freed(), bytes, "{report}");
    for d in &expected {
        assert!(!blob_file(&root, d).exists(), "{d} still stored");
    }
    // What a user sees: a intact, b's own content gone, the shared layer
    // still there for a.
    pull_intact(&c, &a).await.unwrap();
    assert_eq!(
        status_of(&c, &format!("/v2/team/b/blobs/{}", b.blobs[2])).await,
        404
    );
    assert_eq!(
        status_of(&c, &format!("/v2/team/a/blobs/{orphan}")).await,
        404
    );
    // Links of team/b to the blobs it no longer references are gone too,
    // including the one to the layer a still uses.
    assert!(
        layer_links(&root, "team/b").is_empty(),
        "{:?}",
        layer_links(&root, "team/b")
    );
    let a_links: BTreeSet<String> = a.all_digests().into_iter().collect();
    assert_eq!(layer_links(&root, "team/a"), a_links);
    assert!(
        !s.stored().await.iter().any(|f| f.contains("_gc/")),
        "no lock or marker is left behind"
    );

    // A second run finds nothing.
    let again = gc::run(&open_storage(&s), &options(Duration::ZERO), None)
        .await
        .unwrap();
    assert!(
        again.deleted_blobs.is_empty() && again.removed_links.is_empty(),
        "{again}"
    );
}

#[tokio::test]
async fn dry_run_lists_what_would_go_and_changes_nothing() {
    let s = TestServer::start().await;
    let c = s.client();
    let root = s.storage_root();
    // Two layers: a config of its own, not shared with the dropped image.
    push_image(&c, "keep", "v1", &[b"kept layer", b"another"]).await;
    let gone = push_image(&c, "drop", "v1", &[b"dropped layer"]).await;
    c.delete(&format!("/v2/drop/manifests/{}", gone.digest))
        .send()
        .await
        .unwrap();
    let before = s.stored().await;

    let out = registry_bin::run(
        &root,
        &s.config.auth.htpasswd.path,
        &["gc", "--dry-run", "--grace-period", "0s"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for d in gone.all_digests() {
        assert!(
            stdout.contains(&format!("would delete blob {d}")),
            "{d} not listed:\n{stdout}"
        );
    }
    let bytes: u64 = gone
        .all_digests()
        .iter()
        .map(|d| std::fs::metadata(blob_file(&root, d)).unwrap().len())
        .sum();
    assert!(
        stdout.contains(&format!("would remove 3 blobs ({bytes} bytes)")),
        "{stdout}"
    );
    assert_eq!(s.stored().await, before, "a dry run changed storage");

    // The real run, through the binary, removes exactly that.
    let out = registry_bin::run(
        &root,
        &s.config.auth.htpasswd.path,
        &["gc", "--grace-period", "0s"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("removed 3 blobs ({bytes} bytes)")),
        "{stdout}"
    );
    for d in gone.all_digests() {
        assert!(!blob_file(&root, &d).exists());
    }
}

#[tokio::test]
async fn the_grace_window_keeps_recent_content() {
    let s = TestServer::start().await;
    let c = s.client();
    let root = s.storage_root();
    let orphan = c
        .push_blob("r", b"just uploaded, manifest not pushed yet")
        .await;
    let report = gc::run(&open_storage(&s), &options(Duration::from_secs(3600)), None)
        .await
        .unwrap();
    assert!(report.deleted_blobs.is_empty(), "{report}");
    assert!(report.removed_links.is_empty(), "{report}");
    assert_eq!(status_of(&c, &format!("/v2/r/blobs/{orphan}")).await, 200);
    // Past the window (0 s) it goes.
    let report = gc::run(&open_storage(&s), &options(Duration::ZERO), None)
        .await
        .unwrap();
    assert_eq!(report.deleted_blobs.len(), 1, "{report}");
    assert!(!blob_file(&root, &orphan).exists());
}

async fn push_referrer(c: &Client, repo: &str, subject: &str, payload: &[u8]) -> String {
    c.push_referrer(
        repo,
        (subject, 1),
        "application/vnd.example.signature",
        "application/octet-stream",
        payload,
    )
    .await
}

#[tokio::test]
async fn untagged_manifests_go_only_when_asked_and_reachable_ones_stay() {
    let s = TestServer::start().await;
    let c = s.client();
    let root = s.storage_root();
    let tagged = push_image(&c, "app", "v1", &[b"tagged layer"]).await;
    // Untagged: pushed by digest only.
    let mut untagged = push_image(&c, "app", "tmp", &[b"untagged layer"]).await;
    let r = c.delete("/v2/app/manifests/tmp").send().await.unwrap();
    assert_eq!(r.status(), 202, "tag deletion");
    untagged.tag = untagged.digest.clone();
    // A signature of each.
    let sig_tagged = push_referrer(&c, "app", &tagged.digest, b"signature of v1").await;
    let sig_untagged = push_referrer(&c, "app", &untagged.digest, b"signature of tmp").await;
    // An index tagged, whose child was pushed by digest only.
    let child = push_image(&c, "app", "child-tmp", &[b"child layer"]).await;
    c.delete("/v2/app/manifests/child-tmp")
        .send()
        .await
        .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": support::OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.digest, "size": 1,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    c.push_manifest("app", "multi", support::OCI_INDEX, &index_bytes)
        .await;

    // Default: every manifest in a repository is a root; nothing goes.
    let report = gc::run(&open_storage(&s), &options(Duration::ZERO), None)
        .await
        .unwrap();
    assert!(report.deleted_blobs.is_empty(), "{report}");
    assert!(report.deleted_manifests.is_empty(), "{report}");

    let mut opts = options(Duration::ZERO);
    opts.delete_untagged = true;
    let report = gc::run(&open_storage(&s), &opts, None).await.unwrap();
    let mut gone: Vec<String> = report
        .deleted_manifests
        .iter()
        .map(|(r, d)| format!("{r}@{d}"))
        .collect();
    gone.sort();
    let mut expected = vec![
        format!("app@{}", untagged.digest),
        format!("app@{sig_untagged}"),
    ];
    expected.sort();
    assert_eq!(gone, expected, "{report}");
    assert!(
        report
            .deleted_blobs
            .iter()
            .any(|(d, _)| d.to_string() == untagged.blobs[1]),
        "the untagged image's layer goes: {report}"
    );

    assert_eq!(
        status_of(&c, &format!("/v2/app/manifests/{}", untagged.digest)).await,
        404
    );
    assert_eq!(
        status_of(&c, &format!("/v2/app/manifests/{sig_untagged}")).await,
        404
    );
    pull_intact(&c, &tagged).await.unwrap();
    let mut child_by_digest = child.clone();
    child_by_digest.tag = child.digest.clone();
    pull_intact(&c, &child_by_digest).await.unwrap();
    assert_eq!(
        status_of(&c, &format!("/v2/app/manifests/{sig_tagged}")).await,
        200
    );
    let referrers: serde_json::Value = c
        .get_json(&format!("/v2/app/referrers/{}", tagged.digest))
        .await;
    assert_eq!(referrers["manifests"][0]["digest"], sig_tagged.as_str());
    assert!(!blob_file(&root, &untagged.blobs[1]).exists());
    assert!(blob_file(&root, &child.blobs[1]).exists());
}

#[tokio::test]
async fn uploads_in_flight_survive_and_stale_sessions_are_purged() {
    let s = TestServer::start().await;
    let c = s.client();
    let fresh = c.start_upload("up").await;
    let r = c
        .patch(&fresh)
        .header("content-type", "application/octet-stream")
        .body(b"first half ".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let stale = c.start_upload("up").await;
    let stale_id = support::upload_id(&stale);
    // Make the second session a week old, as registry:2 would have written it.
    let started = s.storage_root().join(format!(
        "docker/registry/v2/repositories/up/_uploads/{stale_id}/startedat"
    ));
    std::fs::write(&started, "2020-01-01T00:00:00Z").unwrap();

    let mut opts = options(Duration::ZERO);
    opts.upload_max_age = Some(Duration::from_secs(24 * 3600));
    let report = gc::run(&open_storage(&s), &opts, None).await.unwrap();
    assert_eq!(report.purged_uploads.len(), 1, "{report}");
    assert_eq!(report.purged_uploads[0].1, stale_id);

    assert_eq!(c.get(&stale).send().await.unwrap().status(), 404);
    // The fresh one continues and completes.
    let data = b"first half second half";
    let r = c
        .put(&format!("{fresh}?digest={}", sha256_digest(data)))
        .header("content-type", "application/octet-stream")
        .body(b"second half".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(
        status_of(&c, &format!("/v2/up/blobs/{}", sha256_digest(data))).await,
        200
    );

    // The online purger does the same on its own.
    let stale = c.start_upload("up").await;
    let stale_id = support::upload_id(&stale);
    std::fs::write(
        s.storage_root().join(format!(
            "docker/registry/v2/repositories/up/_uploads/{stale_id}/startedat"
        )),
        "2020-01-01T00:00:00Z",
    )
    .unwrap();
    let purged = gc::purge_uploads(&open_storage(&s), Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert_eq!(purged.len(), 1, "dry run lists it");
    assert_eq!(c.get(&stale).send().await.unwrap().status(), 204);
    gc::purge_uploads(&open_storage(&s), Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!(c.get(&stale).send().await.unwrap().status(), 404);
}

/// Every directory under the repositories' `_uploads/`.
fn upload_dirs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("docker/registry/v2/repositories")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                let path = e.path();
                if path.components().any(|c| c.as_os_str() == "_uploads") {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Completed and cancelled uploads leave no directory behind (each used to
/// leave `_uploads/<id>/chunks/`), and purging removes empty upload
/// directories older than its window, whoever left them.
#[tokio::test]
async fn uploads_leave_no_directories_behind() {
    if support::storage_is_s3() {
        return; // no directories on S3
    }
    let s = TestServer::start().await;
    let c = s.client();
    let root = s.storage_root();
    // Docker's way (POST, PATCH, PUT), several chunks, monolithic, an
    // empty blob, a cancelled upload, and a whole image.
    let loc = c.start_upload("dirs/app").await;
    let r = c.patch(&loc).body(vec![1u8; 1000]).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(&format!("{loc}?digest={}", sha256_digest(&[1u8; 1000])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = c.start_upload("dirs/app").await;
    for piece in 0..3u8 {
        let r = c
            .patch(&loc)
            .header(
                "content-range",
                format!("{}-{}", piece as u32 * 10, piece as u32 * 10 + 9),
            )
            .body(vec![piece; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let all: Vec<u8> = (0..3u8).flat_map(|p| vec![p; 10]).collect();
    let r = c
        .put(&format!("{loc}?digest={}", sha256_digest(&all)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    c.push_blob("dirs/app", b"monolithic").await;
    c.push_blob("dirs/app", b"").await;
    let loc = c.start_upload("dirs/app").await;
    let r = c.patch(&loc).body(vec![2u8; 100]).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(c.delete(&loc).send().await.unwrap().status(), 204);
    c.push_image("dirs/app", "v1", &[b"layer one", b"layer two"])
        .await;
    // Completed and cancelled sessions leave no directory (a renamed
    // chunk used to leave `chunks/` behind, for ever).
    assert_eq!(
        upload_dirs(&root),
        ["docker/registry/v2/repositories/dirs/app/_uploads"]
    );

    // What older versions left: empty session directories, one of them old.
    let uploads = root.join("docker/registry/v2/repositories/dirs/app/_uploads");
    for id in ["old-empty", "new-empty"] {
        std::fs::create_dir_all(uploads.join(id).join("chunks")).unwrap();
    }
    let week_ago = std::time::SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    std::fs::File::open(uploads.join("old-empty"))
        .unwrap()
        .set_modified(week_ago)
        .unwrap();
    gc::purge_uploads(&open_storage(&s), Duration::from_secs(24 * 3600), false)
        .await
        .unwrap();
    assert_eq!(
        upload_dirs(&root),
        [
            "docker/registry/v2/repositories/dirs/app/_uploads",
            "docker/registry/v2/repositories/dirs/app/_uploads/new-empty",
            "docker/registry/v2/repositories/dirs/app/_uploads/new-empty/chunks",
        ]
    );
}

#[tokio::test]
async fn a_repository_it_cannot_name_stops_the_run_before_anything_goes() {
    let s = TestServer::start().await;
    let c = s.client();
    let root = s.storage_root();
    let orphan = c.push_blob("fine", b"unreferenced").await;
    // What an older or foreign tool might have left: an upper-case name.
    let hex = orphan.strip_prefix("sha256:").unwrap();
    let odd = root.join(format!(
        "docker/registry/v2/repositories/Odd/_layers/sha256/{hex}"
    ));
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(odd.join("link"), &orphan).unwrap();
    let err = gc::run(&open_storage(&s), &options(Duration::ZERO), None)
        .await
        .unwrap_err();
    assert!(matches!(err, GcError::UnknownRepository(_)), "{err}");
    assert!(err.to_string().contains("repositories/Odd/"), "{err}");
    assert!(blob_file(&root, &orphan).exists(), "nothing was removed");
    let scrub = registry::storage::maintenance::scrub::run(&open_storage(&s))
        .await
        .unwrap();
    assert!(
        scrub.problems.iter().any(
            |p| p.kind == registry::storage::maintenance::scrub::ProblemKind::UnknownRepository
        ),
        "{:?}",
        scrub.problems
    );
}

#[tokio::test]
async fn one_collection_at_a_time() {
    let s = TestServer::start().await;
    let storage = open_storage(&s);
    let lock = storage
        .gc_lock("someone else", Duration::from_secs(600))
        .await
        .unwrap()
        .expect("free lock");
    let err = gc::run(&storage, &options(Duration::ZERO), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GcError::Locked { owner, .. } if owner == "someone else"),
        "{err}"
    );
    // A dry run needs no lock.
    let mut dry = options(Duration::ZERO);
    dry.dry_run = true;
    gc::run(&storage, &dry, None).await.unwrap();
    storage.gc_unlock(lock).await.unwrap();
    gc::run(&storage, &options(Duration::ZERO), None)
        .await
        .unwrap();
    // A lock nobody refreshed (its holder died) is broken.
    let _dead = storage
        .gc_lock("crashed", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let stolen = storage.gc_lock("me", Duration::ZERO).await.unwrap();
    assert!(stolen.is_ok(), "a stale lock is broken");
}

#[tokio::test]
async fn a_push_racing_a_collection_is_refused_never_acknowledged_broken() {
    let s = TestServer::start().await;
    let c = s.client();
    let storage = open_storage(&s);
    let layer = c
        .push_blob("race", b"layer the collector is about to remove")
        .await;
    let config = c.push_blob("race", b"{}").await;
    let manifest = support::image_manifest(
        &config,
        2,
        &[(&layer, b"layer the collector is about to remove".len())],
    );
    // The collector has announced it removes the layer (it did not see the
    // manifest in its listings): the push must not be acknowledged.
    let lock = storage
        .gc_lock("test", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let pending = [Pending::Blob(layer.parse().unwrap())];
    storage.gc_mark_pending(&pending).await.unwrap();
    let r = c
        .put("/v2/race/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"]["digest"], layer.as_str());
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("garbage collection"),
        "{body}"
    );
    // Neither the tag nor the manifest is there.
    assert_eq!(status_of(&c, "/v2/race/manifests/v1").await, 404);
    assert_eq!(
        status_of(
            &c,
            &format!("/v2/race/manifests/{}", sha256_digest(&manifest))
        )
        .await,
        404
    );
    // A marker on a repository's link refuses it the same way.
    storage.gc_clear_pending(&pending).await.unwrap();
    let link = [Pending::Link(
        "race".parse::<RepoName>().unwrap(),
        config.parse().unwrap(),
    )];
    storage.gc_mark_pending(&link).await.unwrap();
    let r = c
        .put("/v2/race/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Collection over: the same push goes through.
    storage.gc_clear_all_pending().await.unwrap();
    storage.gc_unlock(lock).await.unwrap();
    let r = c
        .put("/v2/race/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // And content that vanished under a push (collector finished first) is
    // caught by the check after the write: the blob data is gone.
    std::fs::remove_file(blob_file(&s.storage_root(), &layer)).unwrap();
    let m = support::image_manifest(&config, 2, &[(&layer, 1)]);
    let r = c
        .put("/v2/race/manifests/v2")
        .header("content-type", OCI_MANIFEST)
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(support::error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn online_gc_runs_on_its_interval() {
    let s = TestServer::start_with(|c| {
        c.gc.interval = Duration::from_millis(100);
        // Longer than a push here takes, so runs during the pushes below
        // cannot take their blobs before their manifests arrive.
        c.gc.grace_period = Duration::from_secs(1);
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let c = s.client();
    let root = s.storage_root();
    let kept = push_image(&c, "online", "v1", &[b"kept"]).await;
    let gone = push_image(&c, "online", "v2", &[b"collected online", b"too"]).await;
    c.delete(&format!("/v2/online/manifests/{}", gone.digest))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_file(&root, &gone.blobs[1]).exists() {
        assert!(
            Instant::now() < deadline,
            "online GC never removed the blob"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pull_intact(&c, &kept).await.unwrap();
    // The runs show in the metrics.
    // The runs show in the metrics (recorded when a run finishes, a moment
    // after its deletions).
    let metrics_addr = metrics_addr_of(&s);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Config, two layers, manifest.
        let done = sample(&text, "registry_gc_runs_total{result=\"ok\"}") >= 1.0
            && sample(&text, "registry_gc_blobs_deleted_total") >= 4.0
            && sample(&text, "registry_gc_bytes_freed_total") >= b"collected online".len() as f64
            && sample(&text, "registry_gc_last_success_timestamp_seconds") > 0.0;
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

fn metrics_addr_of(s: &TestServer) -> std::net::SocketAddr {
    s.metrics_addr().expect("metrics enabled")
}

/// The value of one sample line (`name{labels} value`); 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    support::sample(text, series).unwrap_or(0.0)
}

// ----- under load -----

const PUSHERS: usize = 4;
const IMAGES_PER_PUSHER: usize = 10;
const PULLERS: usize = 2;

#[derive(Default)]
struct Shared {
    /// Acknowledged images that stay (pullers pick from these).
    kept: Vec<Image>,
    /// Acknowledged, then deleted by digest.
    deleted: Vec<Image>,
    push_retries: usize,
    pulls: usize,
}

/// Pushes an image, retrying the whole push when a concurrent collection
/// removed something under it and the registry refused (4xx; what clients
/// do). A 5xx or a reset fails at once.
async fn push_with_retries(
    c: &Client,
    repo: &str,
    tag: &str,
    unique: &[u8],
    base: &[u8],
    shared: &Mutex<Shared>,
) -> Image {
    for attempt in 0..40 {
        match try_push(c, repo, tag, unique, base).await {
            Ok(image) => return image,
            Err(e) => {
                shared.lock().unwrap().push_retries += 1;
                if attempt == 39 {
                    panic!("push of {repo}:{tag} never succeeded: {e}");
                }
            }
        }
    }
    unreachable!()
}

/// A refusal the load allows: a 4xx (a concurrent collection removed
/// something the push needed; clients push again). A 5xx fails the test.
async fn refusal(what: &str, r: reqwest::Response) -> String {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(
        status.is_client_error(),
        "{what}: {status} is a failure, not a refusal: {body}"
    );
    format!("{what}: {status} {body}")
}

async fn try_push(
    c: &Client,
    repo: &str,
    tag: &str,
    unique: &[u8],
    base: &[u8],
) -> Result<Image, String> {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{repo}:{tag}\"}}");
    let config_d = mono(c, repo, config.as_bytes()).await?;
    let base_d = mono(c, repo, base).await?;
    let unique_d = chunked(c, repo, unique).await?;
    let bytes = support::image_manifest(
        &config_d,
        config.len(),
        &[(&base_d, base.len()), (&unique_d, unique.len())],
    );
    let r = c
        .put(&format!("/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(bytes.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("a reset or transport error is a failure, not a refusal: {e}"));
    if r.status() != 201 {
        return Err(refusal("manifest", r).await);
    }
    Ok(Image {
        repo: repo.into(),
        tag: tag.into(),
        digest: sha256_digest(&bytes),
        blobs: vec![config_d, base_d, unique_d],
    })
}

async fn mono(c: &Client, repo: &str, data: &[u8]) -> Result<String, String> {
    let d = sha256_digest(data);
    let r = c
        .post(&format!("/v2/{repo}/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("a reset or transport error is a failure, not a refusal: {e}"));
    if r.status() != 201 {
        return Err(refusal("blob", r).await);
    }
    Ok(d)
}

/// POST, two PATCHes, PUT: a session that lives across GC runs.
async fn chunked(c: &Client, repo: &str, data: &[u8]) -> Result<String, String> {
    let d = sha256_digest(data);
    let r = c
        .post(&format!("/v2/{repo}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap_or_else(|e| panic!("a reset or transport error is a failure, not a refusal: {e}"));
    if r.status() != 202 {
        return Err(refusal("start", r).await);
    }
    let mut location = r.headers()["location"].to_str().unwrap().to_owned();
    let (a, b) = data.split_at(data.len() / 2);
    for part in [a, b] {
        let r = c
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(part.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("a reset or transport error is a failure, not a refusal: {e}")
            });
        if r.status() != 202 {
            return Err(refusal("patch", r).await);
        }
        location = r.headers()["location"].to_str().unwrap().to_owned();
        tokio::task::yield_now().await;
    }
    let r = c
        .put(&format!("{location}?digest={d}"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap_or_else(|e| panic!("a reset or transport error is a failure, not a refusal: {e}"));
    if r.status() != 201 {
        return Err(refusal("finish", r).await);
    }
    Ok(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_concurrent_push_and_pull_keeps_every_acknowledged_image() {
    let s = TestServer::start().await;
    let root = s.storage_root();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();

    // GC over and over. Most runs have a short grace window (longer than a
    // push takes, as it must be in production); every third has none at
    // all, so it races pushes for their freshly uploaded blobs, which the
    // pushes then lose and retry, but never acknowledge broken.
    let gc_task = {
        let storage = open_storage(&s);
        let done = done.clone();
        tokio::spawn(async move {
            let mut runs = 0usize;
            let mut rescued = 0usize;
            let mut freed = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let grace = if runs % 3 == 2 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(300)
                };
                match gc::run(&storage, &options(grace), None).await {
                    Ok(report) => {
                        runs += 1;
                        rescued += report.rescued;
                        freed += report.bytes_freed();
                    }
                    Err(e) => panic!("gc failed under load: {e}"),
                }
                // After a run without grace, time for a whole push: how
                // often such runs come, against how long a push takes, must
                // not depend on how fast a run is (it got faster when
                // finished uploads stopped leaving directories to walk, and
                // then no push could finish between two of them).
                let pause = if grace.is_zero() { 200 } else { 5 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            (runs, rescued, freed)
        })
    };

    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let c = s.client();
        let shared = shared.clone();
        let base = base.clone();
        pushers.push(tokio::spawn(async move {
            let repo = format!("load/p{p}");
            for i in 0..IMAGES_PER_PUSHER {
                let tag = format!("t{i}");
                let unique: Vec<u8> = format!("unique layer {p}/{i} ")
                    .into_bytes()
                    .into_iter()
                    .cycle()
                    .take(8 * 1024 + i)
                    .collect();
                let image = push_with_retries(&c, &repo, &tag, &unique, &base, &shared).await;
                if i % 3 == 0 {
                    // Garbage for the collector: acknowledged, then deleted.
                    let r = c
                        .delete(&format!("/v2/{repo}/manifests/{}", image.digest))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    shared.lock().unwrap().deleted.push(image);
                } else {
                    shared.lock().unwrap().kept.push(image);
                }
            }
        }));
    }
    let mut pullers = Vec::new();
    for k in 0..PULLERS {
        let c = s.client();
        let shared = shared.clone();
        let done = done.clone();
        pullers.push(tokio::spawn(async move {
            let mut n = k;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let pick = {
                    let g = shared.lock().unwrap();
                    (!g.kept.is_empty()).then(|| g.kept[n % g.kept.len()].clone())
                };
                n += 1;
                match pick {
                    Some(image) => {
                        if let Err(e) = pull_intact(&c, &image).await {
                            panic!("an acknowledged image failed to pull during GC: {e}");
                        }
                        shared.lock().unwrap().pulls += 1;
                    }
                    None => tokio::task::yield_now().await,
                }
            }
        }));
    }

    let finished = tokio::time::timeout(Duration::from_secs(240), async {
        for p in pushers {
            p.await.expect("pusher");
        }
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    finished.expect("pushers finished in time");
    for p in pullers {
        p.await.expect("puller");
    }
    let (runs, rescued, freed) = gc_task.await.expect("gc task");
    assert!(runs >= 3, "GC ran only {runs} times during the load");

    // A last collection, then: every kept image intact, nothing else stored.
    let last = gc::run(&open_storage(&s), &options(Duration::ZERO), None)
        .await
        .unwrap();
    let (kept, deleted, pulls, push_retries) = {
        let g = shared.lock().unwrap();
        (g.kept.clone(), g.deleted.clone(), g.pulls, g.push_retries)
    };
    let c = s.client();
    for image in &kept {
        pull_intact(&c, image).await.unwrap();
    }
    for image in &deleted {
        assert_eq!(
            status_of(
                &c,
                &format!("/v2/{}/manifests/{}", image.repo, image.digest)
            )
            .await,
            404
        );
        assert_eq!(
            status_of(&c, &format!("/v2/{}/blobs/{}", image.repo, image.blobs[2])).await,
            404,
            "the deleted image's own layer is gone"
        );
    }
    let expected: BTreeSet<String> = kept.iter().flat_map(Image::all_digests).collect();
    assert_eq!(
        stored_blobs(&root),
        expected,
        "stored blobs are exactly those of the kept images"
    );
    let mut per_repo: HashMap<String, BTreeSet<String>> = HashMap::new();
    for image in &kept {
        per_repo
            .entry(image.repo.clone())
            .or_default()
            .extend(image.all_digests());
    }
    for (repo, digests) in &per_repo {
        assert_eq!(&layer_links(&root, repo), digests, "links of {repo}");
    }
    let leftovers: Vec<String> = s
        .stored()
        .await
        .into_iter()
        .filter(|f| f.contains("/_uploads/") || f.contains("_gc/"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert_eq!(kept.len() + deleted.len(), PUSHERS * IMAGES_PER_PUSHER);
    assert!(pulls > 0, "the pullers pulled");
    eprintln!(
        "load: {runs} GC runs ({rescued} rescues, {freed} bytes freed during load, {} in the last run), {} pulls, {} push retries",
        last.bytes_freed(),
        pulls,
        push_retries
    );
}

/// A sha512 image pushed by digest with `?tag=` (distribution-spec main);
/// (manifest digest, layer digest).
async fn push_sha512_image(
    c: &Client,
    repo: &str,
    tag: Option<&str>,
    layer: &[u8],
) -> (String, String) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","layer":{}}}"#,
        layer.len()
    );
    let tags: Vec<&str> = tag.into_iter().collect();
    let (digest, mut layers) = c
        .push_sha512_image(repo, config.as_bytes(), &[layer], &tags)
        .await;
    (digest, layers.remove(0))
}

/// gc marks and sweeps sha512 content as it does sha256: a tagged sha512
/// image stays whole, an untagged one goes with its layer.
#[tokio::test]
async fn gc_keeps_a_tagged_sha512_image_and_sweeps_an_untagged_one() {
    let s = TestServer::start().await;
    let c = s.client();
    let (kept, kept_layer) = push_sha512_image(&c, "gc/sha512", Some("v1"), b"kept layer").await;
    let (gone, gone_layer) = push_sha512_image(&c, "gc/sha512", None, b"gone layer").await;
    support::gc_untagged(&s).await;
    assert_eq!(status_of(&c, "/v2/gc/sha512/manifests/v1").await, 200);
    assert_eq!(
        status_of(&c, &format!("/v2/gc/sha512/manifests/{kept}")).await,
        200
    );
    assert_eq!(
        status_of(&c, &format!("/v2/gc/sha512/blobs/{kept_layer}")).await,
        200
    );
    assert_eq!(
        status_of(&c, &format!("/v2/gc/sha512/manifests/{gone}")).await,
        404
    );
    assert_eq!(
        status_of(&c, &format!("/v2/gc/sha512/blobs/{gone_layer}")).await,
        404
    );
    let hex = gone_layer.strip_prefix("sha512:").unwrap();
    assert!(
        !s.stored().await.iter().any(|f| f.contains(hex)),
        "the untagged image's layer is still stored"
    );
}
