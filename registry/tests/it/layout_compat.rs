//! Storage layout compatibility with Debian's `docker-registry` (CNCF
//! Distribution 2.8, what `registry:2` runs), both directions: push with one,
//! stop it, start the other on the same directory and pull everything back
//! byte for byte.

use crate::support;
use crate::support::distribution;
use crate::support::oci_layout;
use crate::support::registry_bin;
use crate::support::skopeo;

use std::collections::BTreeSet;

use distribution::DockerRegistry;
use oci_layout::{pseudo_random, sha256_digest};
use serde_json::json;
use support::{Client, TestServer, Upload, PASSWORD, USER};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest pushed under a tag, and every blob it needs.
struct Pushed {
    repo: &'static str,
    tags: Vec<&'static str>,
    media_type: &'static str,
    digest: String,
    bytes: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
}

async fn put_manifest(c: &Client, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let digest = c.push_manifest(repo, reference, media_type, bytes).await;
    assert_eq!(
        digest,
        sha256_digest(bytes),
        "PUT manifest {repo}:{reference}"
    );
}

/// An image manifest with a config and layers, each blob pushed as `how`
/// says; tagged with every tag (the first push by tag, later ones by tag too).
#[allow(clippy::too_many_arguments)]
async fn push_image(
    c: &Client,
    repo: &'static str,
    tags: Vec<&'static str>,
    docker: bool,
    arch: &str,
    layers: Vec<Vec<u8>>,
    how: &[Upload],
) -> Pushed {
    let (manifest_type, config_type, layer_type) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    };
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| sha256_digest(l)).collect::<Vec<_>>() },
    }))
    .unwrap();
    let mut blobs = vec![(c.push_blob_by(repo, &config, how[0]).await, config.clone())];
    let mut descs = Vec::new();
    for (i, l) in layers.into_iter().enumerate() {
        let d = c.push_blob_by(repo, &l, how[(i + 1) % how.len()]).await;
        descs.push(json!({ "mediaType": layer_type, "digest": d, "size": l.len() }));
        blobs.push((d, l));
    }
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": { "mediaType": config_type, "digest": blobs[0].0, "size": config.len() },
        "layers": descs,
    }))
    .unwrap();
    for tag in &tags {
        put_manifest(c, repo, tag, manifest_type, &manifest).await;
    }
    Pushed {
        repo,
        tags,
        media_type: manifest_type,
        digest: sha256_digest(&manifest),
        bytes: manifest,
        blobs,
    }
}

/// An index over the given images (already in `repo`, pushed by digest).
async fn push_index(
    c: &Client,
    repo: &'static str,
    tag: &'static str,
    docker: bool,
    images: &[&Pushed],
) -> Pushed {
    let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": images.iter().enumerate().map(|(i, m)| json!({
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.bytes.len(),
            "platform": { "os": "linux", "architecture": (["amd64", "arm64"][i % 2]) },
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    put_manifest(c, repo, tag, media_type, &index).await;
    Pushed {
        repo,
        tags: vec![tag],
        media_type,
        digest: sha256_digest(&index),
        bytes: index,
        blobs: Vec::new(),
    }
}

/// Pushes the same set of content to either registry: OCI and Docker
/// manifests, an OCI index with its children pushed by digest only, a
/// Docker manifest list, a blob shared by two repositories, two tags on
/// one manifest, and a blob big enough for several chunks.
async fn push_everything(c: &Client, seed: u64) -> Vec<Pushed> {
    let shared = pseudo_random(seed, 10_000);
    let mut out = Vec::new();
    out.push(
        push_image(
            c,
            "compat/app",
            vec!["v1", "latest"],
            false,
            "amd64",
            vec![
                shared.clone(),
                pseudo_random(seed + 1, 2_500_000),
                b"small layer".to_vec(),
            ],
            &[
                Upload::Streamed,
                Upload::Chunked(1_000_000),
                Upload::PostPut,
            ],
        )
        .await,
    );
    out.push(
        push_image(
            c,
            "compat/docker",
            vec!["1.0"],
            true,
            "amd64",
            vec![shared.clone(), pseudo_random(seed + 2, 50_000)],
            &[Upload::Streamed],
        )
        .await,
    );
    for (repo, docker, tag) in [
        ("compat/multi", false, "v2"),
        ("compat/a/b/list", true, "stable"),
    ] {
        let mut children = Vec::new();
        for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
            let layers = vec![shared.clone(), pseudo_random(seed + 10 + i as u64, 40_000)];
            let img = push_image(c, repo, vec![], docker, arch, layers, &[Upload::Streamed]).await;
            put_manifest(c, repo, &img.digest, img.media_type, &img.bytes).await;
            children.push(img);
        }
        let index = push_index(c, repo, tag, docker, &[&children[0], &children[1]]).await;
        out.push(index);
        out.extend(children);
    }
    out
}

/// Pulls everything `pushed` lists from `c` and compares it byte for byte:
/// manifests by tag and digest (GET and HEAD), blobs (GET and HEAD), tags
/// lists and the catalog.
async fn assert_serves_everything(c: &Client, pushed: &[Pushed]) {
    for p in pushed {
        let mut references: Vec<String> = p.tags.iter().map(|t| t.to_string()).collect();
        references.push(p.digest.clone());
        for reference in &references {
            let path = format!("/v2/{}/manifests/{reference}", p.repo);
            let r = c
                .get(&path)
                .header("accept", ACCEPT_ALL)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "GET {path}: {}", r.text().await.unwrap());
            assert_eq!(
                r.headers()["docker-content-digest"].to_str().unwrap(),
                p.digest,
                "GET {path}"
            );
            assert_eq!(
                r.headers()["content-type"].to_str().unwrap(),
                p.media_type,
                "GET {path}"
            );
            assert!(
                r.bytes().await.unwrap().as_ref() == p.bytes.as_slice(),
                "GET {path}: bytes differ"
            );
            let r = c
                .head(&path)
                .header("accept", ACCEPT_ALL)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "HEAD {path}");
            assert_eq!(
                r.headers()["docker-content-digest"].to_str().unwrap(),
                p.digest,
                "HEAD {path}"
            );
            assert_eq!(
                r.headers()["content-length"].to_str().unwrap(),
                p.bytes.len().to_string(),
                "HEAD {path}"
            );
        }
        for (d, data) in &p.blobs {
            let path = format!("/v2/{}/blobs/{d}", p.repo);
            let r = c.get(&path).send().await.unwrap();
            assert_eq!(r.status(), 200, "GET {path}: {}", r.text().await.unwrap());
            assert!(
                r.bytes().await.unwrap().as_ref() == data.as_slice(),
                "GET {path}: bytes differ"
            );
            let r = c.head(&path).send().await.unwrap();
            assert_eq!(r.status(), 200, "HEAD {path}");
            assert_eq!(
                r.headers()["content-length"].to_str().unwrap(),
                data.len().to_string()
            );
            assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), d);
        }
    }
    let repos: BTreeSet<&str> = pushed.iter().map(|p| p.repo).collect();
    for repo in &repos {
        let r = c
            .get(&format!("/v2/{repo}/tags/list"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "tags of {repo}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["name"], *repo);
        let got: BTreeSet<String> = serde_json::from_value(v["tags"].clone()).unwrap();
        let want: BTreeSet<String> = pushed
            .iter()
            .filter(|p| p.repo == *repo)
            .flat_map(|p| p.tags.iter().map(|t| t.to_string()))
            .collect();
        assert_eq!(got, want, "tags of {repo}");
    }
    let r = c.get("/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), 200, "catalog");
    let v: serde_json::Value = r.json().await.unwrap();
    let got: BTreeSet<String> = serde_json::from_value(v["repositories"].clone()).unwrap();
    let want: BTreeSet<String> = repos.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, want, "catalog");
}

/// docker-registry logs at error level every error response, including the
/// 404s that clients (and these tests) ask for on purpose; anything else,
/// e.g. a 500 on a file of ours it cannot parse, is a real error.
fn assert_no_errors_logged(log: &str) {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=error"))
        .filter(|l| {
            !(l.contains("msg=\"response completed with error\"")
                && l.contains("http.response.status=404"))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "docker-registry logged errors:\n{}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_registry_writes_we_serve() {
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("storage");
    let theirs = DockerRegistry::start(&root).await;
    let pushed = push_everything(&theirs.client(), 1).await;
    // Their own pull works (so a failure below is ours).
    assert_serves_everything(&theirs.client(), &pushed).await;
    assert_no_errors_logged(&theirs.stop());

    let ours = TestServer::start_with(|c| c.storage.filesystem.rootdirectory = root.clone()).await;
    assert_serves_everything(&ours.client(), &pushed).await;
    // Anonymous reads stay refused on content we did not write.
    let r = ours
        .anonymous()
        .get(&format!("/v2/compat/app/manifests/{}", pushed[0].digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    ours.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn we_write_docker_registry_serves() {
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("storage");
    let ours = TestServer::start_with(|c| c.storage.filesystem.rootdirectory = root.clone()).await;
    let c = ours.client();
    let mut pushed = push_everything(&c, 2).await;
    // And the monolithic upload (POST ?digest=) that only we support.
    let (digest, bytes) = c
        .push_image("compat/mono", "m1", &[b"mono layer one", b"mono layer two"])
        .await;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = Vec::new();
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{}}}",
        2
    );
    blobs.push((
        manifest["config"]["digest"].as_str().unwrap().to_owned(),
        config.into_bytes(),
    ));
    for (i, l) in [&b"mono layer one"[..], b"mono layer two"]
        .iter()
        .enumerate()
    {
        assert_eq!(manifest["layers"][i]["digest"], sha256_digest(l));
        blobs.push((sha256_digest(l), l.to_vec()));
    }
    pushed.push(Pushed {
        repo: "compat/mono",
        tags: vec!["m1"],
        media_type: OCI_MANIFEST,
        digest,
        bytes,
        blobs,
    });
    assert_serves_everything(&c, &pushed).await;
    ours.stop().await;

    let theirs = DockerRegistry::start(&root).await;
    assert_serves_everything(&theirs.client(), &pushed).await;
    assert_no_errors_logged(&theirs.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_between_docker_registry_and_ours() {
    let theirs_dir = tempfile::tempdir().unwrap();
    let theirs = DockerRegistry::start(&theirs_dir.path().join("storage")).await;
    let pushed = push_everything(&theirs.client(), 3).await;
    let ours = TestServer::start().await;
    let sk = skopeo::Skopeo::new();
    let creds = format!("{USER}:{PASSWORD}");
    let host = ours.addr.to_string();

    // Theirs -> ours: an OCI index with --all, and a Docker schema2 image.
    for (src, dst) in [
        ("compat/multi:v2", "copied/multi:v2"),
        ("compat/docker:1.0", "copied/docker:1.0"),
    ] {
        sk.ok(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-no-creds",
            "--src-tls-verify=false",
            "--dest-creds",
            &creds,
            "--dest-tls-verify=false",
            &format!("docker://{}/{src}", theirs.host),
            &format!("docker://{host}/{dst}"),
        ])
        .await;
    }
    let mut expect: Vec<Pushed> = Vec::new();
    for p in pushed {
        let (repo, tags) = match (p.repo, p.tags.first().copied()) {
            ("compat/multi", Some("v2")) => ("copied/multi", vec!["v2"]),
            ("compat/multi", None) => ("copied/multi", vec![]),
            ("compat/docker", _) => ("copied/docker", vec!["1.0"]),
            _ => continue,
        };
        expect.push(Pushed { repo, tags, ..p });
    }
    assert_eq!(expect.len(), 4);
    assert_serves_everything(&ours.client(), &expect).await;

    // Ours -> theirs, into a new repository there.
    sk.ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-creds",
        &creds,
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/copied/multi:v2"),
        &format!("docker://{}/back/multi:v2", theirs.host),
    ])
    .await;
    let index = expect.iter().find(|p| p.media_type == OCI_INDEX).unwrap();
    let r = theirs
        .client()
        .head("/v2/back/multi/manifests/v2")
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        index.digest
    );
    assert_no_errors_logged(&theirs.stop());
}

/// The tags `c` lists for `repo` (none when the repository has no tags left:
/// an empty list, a `null` list or NAME_UNKNOWN are all fine).
async fn tags_of(c: &Client, repo: &str) -> BTreeSet<String> {
    let r = c
        .get(&format!("/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        assert_eq!(support::error_code(r).await, "NAME_UNKNOWN");
        return BTreeSet::new();
    }
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    serde_json::from_value::<Option<BTreeSet<String>>>(v["tags"].clone())
        .unwrap()
        .unwrap_or_default()
}

async fn assert_manifest_gone(c: &Client, repo: &str, reference: &str) {
    let r = c
        .get(&format!("/v2/{repo}/manifests/{reference}"))
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "{repo}:{reference} should be gone");
    assert_eq!(support::error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_by_one_are_seen_by_the_other() {
    // docker-registry deletes a manifest by digest (which untags it there);
    // we then serve neither the digest nor its tag.
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("storage");
    let theirs = DockerRegistry::start(&root).await;
    let pushed = push_everything(&theirs.client(), 4).await;
    let docker = pushed.iter().find(|p| p.repo == "compat/docker").unwrap();
    let r = theirs
        .client()
        .delete(&format!("/v2/compat/docker/manifests/{}", docker.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "their DELETE: {}", r.text().await.unwrap());
    assert_no_errors_logged(&theirs.stop());

    let ours = TestServer::start_with(|c| c.storage.filesystem.rootdirectory = root.clone()).await;
    let c = ours.client();
    assert_manifest_gone(&c, "compat/docker", &docker.digest).await;
    assert_manifest_gone(&c, "compat/docker", "1.0").await;
    assert!(tags_of(&c, "compat/docker").await.is_empty());
    // The rest is untouched.
    let rest: Vec<Pushed> = pushed
        .into_iter()
        .filter(|p| p.repo != "compat/docker")
        .collect();
    for p in &rest {
        let r = c
            .head(&format!("/v2/{}/manifests/{}", p.repo, p.digest))
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}@{}", p.repo, p.digest);
    }

    // Now we delete: one tag of two (OCI 1.1 tag deletion) and a manifest by
    // digest; docker-registry then sees exactly that.
    let app = rest.iter().find(|p| p.repo == "compat/app").unwrap();
    let r = c
        .delete("/v2/compat/app/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "our tag DELETE: {}",
        r.text().await.unwrap()
    );
    let multi = rest
        .iter()
        .find(|p| p.repo == "compat/multi" && p.tags.is_empty())
        .unwrap();
    let r = c
        .delete(&format!("/v2/compat/multi/manifests/{}", multi.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "our manifest DELETE: {}",
        r.text().await.unwrap()
    );
    ours.stop().await;

    let theirs = DockerRegistry::start(&root).await;
    let tc = theirs.client();
    assert_manifest_gone(&tc, "compat/app", "latest").await;
    assert_eq!(
        tags_of(&tc, "compat/app").await,
        BTreeSet::from(["v1".to_string()])
    );
    let r = tc
        .get("/v2/compat/app/manifests/v1")
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        app.digest
    );
    assert_manifest_gone(&tc, "compat/multi", &multi.digest).await;
    assert!(tags_of(&tc, "compat/docker").await.is_empty());
    assert_no_errors_logged(&theirs.stop());
}

/// An OCI artifact (empty config, `artifactType`, one layer) whose `subject`
/// is `subject`; pushed by digest.
async fn push_referrer(c: &Client, repo: &'static str, subject: &Pushed, text: &[u8]) -> Pushed {
    let empty = b"{}".to_vec();
    let config = c.push_blob_by(repo, &empty, Upload::Streamed).await;
    let layer = c.push_blob_by(repo, text, Upload::Streamed).await;
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.example.sbom.v1+json", "digest": layer, "size": text.len() }],
        "subject": { "mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len() },
        "annotations": { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
    }))
    .unwrap();
    let digest = sha256_digest(&bytes);
    put_manifest(c, repo, &digest, OCI_MANIFEST, &bytes).await;
    Pushed {
        repo,
        tags: vec![],
        media_type: OCI_MANIFEST,
        digest,
        bytes,
        blobs: vec![(config, empty), (layer, text.to_vec())],
    }
}

async fn referrers(c: &Client, repo: &str, digest: &str) -> Vec<String> {
    let r = c
        .get(&format!("/v2/{repo}/referrers/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "referrers of {digest}");
    let v: serde_json::Value = r.json().await.unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_with_a_subject_cross_both_ways() {
    // An artifact (artifactType, empty config, subject) pushed to
    // docker-registry is served by us byte for byte, and ours by it. Our
    // referrers index is ours alone (`_referrers`, which registry:2 ignores
    // and does not write): an artifact that docker-registry wrote is listed
    // by our referrers API once `registry index-referrers` has run.
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("storage");
    let theirs = DockerRegistry::start(&root).await;
    let mut pushed = push_everything(&theirs.client(), 5).await;
    let subject = pushed[0].digest.clone();
    let theirs_sbom =
        push_referrer(&theirs.client(), "compat/app", &pushed[0], b"their sbom").await;
    pushed.push(theirs_sbom);
    assert_no_errors_logged(&theirs.stop());

    let ours = TestServer::start_with(|c| c.storage.filesystem.rootdirectory = root.clone()).await;
    assert_serves_everything(&ours.client(), &pushed).await;
    let theirs_sbom = pushed.last().unwrap().digest.clone();
    let listed = referrers(&ours.client(), "compat/app", &subject).await;
    assert!(
        !listed.contains(&theirs_sbom),
        "not indexed yet: {listed:?}"
    );
    let index = |expect: &str| {
        let out = registry_bin::run(&root, &ours.config.auth.htpasswd.path, &["index-referrers"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expect), "{stdout}");
    };
    index("added 1 referrers entries");
    let listed = referrers(&ours.client(), "compat/app", &subject).await;
    assert_eq!(listed, vec![theirs_sbom.clone()]);
    index("added 0 referrers entries");

    let ours_sbom = push_referrer(&ours.client(), "compat/app", &pushed[0], b"our sbom").await;
    let listed = referrers(&ours.client(), "compat/app", &subject).await;
    assert!(listed.contains(&ours_sbom.digest), "referrers: {listed:?}");
    assert!(listed.contains(&theirs_sbom), "referrers: {listed:?}");
    pushed.push(ours_sbom);
    ours.stop().await;

    let theirs = DockerRegistry::start(&root).await;
    assert_serves_everything(&theirs.client(), &pushed).await;
    assert_no_errors_logged(&theirs.stop());
}
