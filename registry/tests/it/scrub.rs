//! `registry scrub`: a clean store passes (exit 0); a blob corrupted on
//! purpose and a tag pointing at nothing are reported (exit 1).

use crate::support;
use crate::support::registry_bin;

use support::{blob_file, TestServer};

fn scrub(s: &TestServer) -> (i32, String) {
    let out = registry_bin::run(&s.storage_root(), &s.config.auth.htpasswd.path, &["scrub"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{stdout}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!("\nstderr: {stderr}")
            }
        ),
    )
}

#[tokio::test]
async fn scrub_passes_a_clean_store_and_reports_corruption_and_dangling_tags() {
    let s = TestServer::start().await;
    let c = s.client();
    let (manifest, bytes) = c
        .push_image("team/app", "v1", &[b"layer to corrupt", b"healthy layer"])
        .await;
    c.push_image("other", "latest", &[b"other layer"]).await;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let victim = m["layers"][0]["digest"].as_str().unwrap().to_owned();

    let (code, out) = scrub(&s);
    assert_eq!(code, 0, "clean store: {out}");
    assert!(out.contains("no problems"), "{out}");
    assert!(out.contains("checked 7 blobs"), "{out}");

    // Flip the content of a layer behind the registry's back.
    let file = blob_file(&s.storage_root(), &victim);
    std::fs::write(&file, b"layer tu corrupt").unwrap();
    // And a tag whose link names a manifest that was never pushed.
    let nothing = support::sha256_digest(b"no such manifest");
    let tag_dir = s
        .storage_root()
        .join("docker/registry/v2/repositories/team/app/_manifests/tags/broken/current");
    std::fs::create_dir_all(&tag_dir).unwrap();
    std::fs::write(tag_dir.join("link"), &nothing).unwrap();

    let (code, out) = scrub(&s);
    assert_eq!(code, 1, "problems found: {out}");
    let problems: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("scrub:") && !l.starts_with('{') && !l.starts_with("stderr"))
        .collect();
    assert_eq!(problems.len(), 2, "{out}");
    assert!(
        problems.iter().any(|l| l.starts_with(&format!(
            "corrupt blob: {victim} (docker/registry/v2/blobs/sha256/"
        )) && l.contains(&format!(
            "content hashes to {}",
            support::sha256_digest(b"layer tu corrupt")
        ))),
        "{out}"
    );
    assert!(
        problems.iter().any(|l| l.starts_with(&format!(
            "dangling tag: team/app:broken points at {nothing}"
        ))),
        "{out}"
    );
    assert!(out.contains("2 problems"), "{out}");
    // The good tag is untouched by the report and still pulls.
    let r = c
        .get(&format!("/v2/team/app/manifests/{manifest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Library form: the same two, typed.
    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let report = registry::storage::maintenance::scrub::run(&storage)
        .await
        .unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            registry::storage::maintenance::scrub::ProblemKind::CorruptBlob,
            registry::storage::maintenance::scrub::ProblemKind::DanglingTag
        ]
    );
}

#[tokio::test]
async fn scrub_reports_links_to_missing_content_and_garbled_links() {
    let s = TestServer::start().await;
    let c = s.client();
    let (manifest, bytes) = c.push_image("r", "v1", &[b"gone layer"]).await;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    std::fs::remove_file(blob_file(&s.storage_root(), &layer)).unwrap();
    let hex = manifest.strip_prefix("sha256:").unwrap();
    let revision = s.storage_root().join(format!(
        "docker/registry/v2/repositories/r/_manifests/revisions/sha256/{hex}/link"
    ));
    std::fs::write(&revision, "garbage").unwrap();

    let storage = registry::storage::backend::open(&s.config.storage).unwrap();
    let report = registry::storage::maintenance::scrub::run(&storage)
        .await
        .unwrap();
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|p| p.starts_with("corrupt link:") && p.contains("\"garbage\"")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|p| p
            == &format!("dangling link: r: blob {layer} is linked but its content is missing")),
        "{text:?}"
    );
    // The manifest is still served (by its revision's key), but pulling
    // its layer fails: reported as well.
    assert!(
        text.iter().any(|p| p
            == &format!(
                "missing reference: r@{manifest} references blob {layer}, whose content is missing"
            )),
        "{text:?}"
    );
    assert_eq!(text.len(), 3, "{text:?}");
    let (code, _) = scrub(&s);
    assert_eq!(code, 1);
}

#[test]
fn scrub_exits_2_when_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = registry_bin::command(dir.path(), &dir.path().join("htpasswd"), &["scrub"])
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "perhaps")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REGISTRY_STORAGE_DELETE_ENABLED"));
}
