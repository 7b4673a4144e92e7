//! skopeo (Debian's package, a real containers/image client) copies images
//! that the tests write as OCI layouts into the registry and back out, with
//! `--preserve-digests` so every digest must survive the round trip.

use crate::support;
use crate::support::oci_layout;
use crate::support::skopeo;

use std::path::Path;

use oci_layout::{
    pseudo_random, read_blob, read_ref, Layer, Layout, Tar, Written, OCI_INDEX, OCI_MANIFEST,
};
use skopeo::{creds, Skopeo};
use support::{TestServer, USER};

const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Four layers: gzip and plain tar, small and multi-MiB, one empty archive.
fn four_layers(seed: u64) -> Vec<Layer> {
    vec![
        Layer::tar_gz(
            Tar::new()
                .dir("etc")
                .file(
                    "etc/motd",
                    0o644,
                    format!("hello from layer one, seed {seed}\n").as_bytes(),
                )
                .finish(),
        ),
        Layer::tar(
            Tar::new()
                .dir("data")
                .file(
                    "data/big.bin",
                    0o644,
                    &pseudo_random(seed, 3 * 1024 * 1024 + 17),
                )
                .finish(),
        ),
        Layer::tar_gz(
            Tar::new()
                .dir("bin")
                .file("bin/tool", 0o755, &pseudo_random(seed + 1, 200_000))
                .finish(),
        ),
        Layer::tar_gz(
            Tar::new()
                .file(&format!("marker-{seed}"), 0o644, b"")
                .finish(),
        ),
    ]
}

/// GET a manifest from our registry; returns (content type, digest header, body).
async fn get_manifest(s: &TestServer, name: &str, reference: &str) -> (String, String, Vec<u8>) {
    let r = s
        .client()
        .get(&format!("/v2/{name}/manifests/{reference}"))
        .header("accept", ACCEPT_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET manifest {name}:{reference}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    (ct, digest, r.bytes().await.unwrap().to_vec())
}

/// Asserts that every blob of `m` is in the registry, byte-identical to the
/// source layout's copy.
async fn assert_blobs_in_registry(s: &TestServer, name: &str, src: &Path, m: &Written) {
    for d in &m.blobs {
        let r = s
            .client()
            .get(&format!("/v2/{name}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET blob {d}");
        assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), d);
        assert!(
            r.bytes().await.unwrap().as_ref() == read_blob(src, d).as_slice(),
            "blob {d} differs"
        );
    }
}

#[test]
fn generated_layers_are_real_gzip_and_tar() {
    // The layers fed to skopeo are what they claim to be: check them with
    // the system's gzip and tar rather than trusting the writer.
    let dir = tempfile::tempdir().unwrap();
    let layers = four_layers(7);
    let gz = dir.path().join("l.tar.gz");
    std::fs::write(&gz, &layers[2].bytes).unwrap();
    let out = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&gz)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gzip -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(&gz)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -tvzf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("bin/tool") && listing.contains("200000"),
        "{listing}"
    );
    let plain = dir.path().join("l.tar");
    std::fs::write(&plain, &layers[1].bytes).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&plain)
        .arg("-C")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar -xf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("data/big.bin")).unwrap(),
        pseudo_random(7, 3 * 1024 * 1024 + 17)
    );
    let empty = oci_layout::gzip(b"");
    std::fs::write(&gz, &empty).unwrap();
    let out = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&gz)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gzip -t (empty): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_layer_image_round_trips_with_identical_digests() {
    let s = TestServer::start().await;
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = Layout::create(&src);
    let image = layout.add_image("linux", "amd64", &four_layers(1));
    layout.tag("v1", &image);
    let host = s.addr.to_string();
    let remote = format!("docker://{host}/team/app:v1");

    sk.push(&["--preserve-digests"], &oci_ref(&src, "v1"), &remote)
        .await;

    // What the registry serves: the very manifest bytes, digest and type.
    let (ct, digest, body) = get_manifest(&s, "team/app", "v1").await;
    assert_eq!(ct, OCI_MANIFEST);
    assert_eq!(digest, image.digest);
    assert!(body == image.bytes, "manifest bytes changed on push");
    let (_, by_digest, body) = get_manifest(&s, "team/app", &image.digest).await;
    assert_eq!(by_digest, image.digest);
    assert!(body == image.bytes);
    assert_blobs_in_registry(&s, "team/app", &src, &image).await;

    // What skopeo sees.
    let raw = sk.with_creds("inspect", &["--raw"], &remote).await;
    assert!(
        raw.stdout == image.bytes,
        "inspect --raw: {}",
        raw.stdout_str()
    );
    let inspect = sk.with_creds("inspect", &[], &remote).await;
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["Digest"], image.digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(
        inspect["Layers"],
        serde_json::json!(image.blobs[1..]),
        "layers in order, config excluded"
    );

    // Back out into another OCI layout: same manifest, same blobs.
    let out = work.path().join("out");
    sk.pull(
        &[
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
        ],
        &remote,
        &oci_ref(&out, "copied"),
    )
    .await;
    let desc = read_ref(&out, "copied");
    assert_eq!(desc["digest"], image.digest.as_str());
    assert_eq!(desc["mediaType"], OCI_MANIFEST);
    assert!(read_blob(&out, &image.digest) == image.bytes);
    for d in &image.blobs {
        assert!(
            read_blob(&out, d) == read_blob(&src, d),
            "blob {d} differs after pull"
        );
    }

    // And into a `dir:` directory, pulling by digest this time.
    let dir = work.path().join("dir");
    sk.pull(
        &["--preserve-digests"],
        &format!("docker://{host}/team/app@{}", image.digest),
        &format!("dir:{}", dir.display()),
    )
    .await;
    assert!(std::fs::read(dir.join("manifest.json")).unwrap() == image.bytes);
    for d in &image.blobs {
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(
            std::fs::read(dir.join(hex)).unwrap() == read_blob(&src, d),
            "dir: blob {d} differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_round_trips_with_all() {
    let s = TestServer::start().await;
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = Layout::create(&src);
    // A base layer shared by both platforms, plus one layer of each's own.
    let shared = Layer::tar_gz(
        Tar::new()
            .file("shared.txt", 0o644, b"same on every platform\n")
            .finish(),
    );
    let mut images = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let own = Layer::tar_gz(
            Tar::new()
                .dir("opt")
                .file("opt/arch", 0o644, &pseudo_random(100 + i as u64, 300_000))
                .finish(),
        );
        images.push(layout.add_image("linux", arch, &[shared.clone(), own]));
    }
    let index = layout.add_index(&[&images[0], &images[1]]);
    layout.tag("v1", &index);
    let host = s.addr.to_string();
    let remote = format!("docker://{host}/team/multi:v1");

    sk.push(
        &["--all", "--preserve-digests"],
        &oci_ref(&src, "v1"),
        &remote,
    )
    .await;

    let (ct, digest, body) = get_manifest(&s, "team/multi", "v1").await;
    assert_eq!(ct, OCI_INDEX);
    assert_eq!(digest, index.digest);
    assert!(body == index.bytes, "index bytes changed on push");
    for m in &images {
        let (ct, digest, body) = get_manifest(&s, "team/multi", &m.digest).await;
        assert_eq!(
            (ct.as_str(), digest.as_str()),
            (OCI_MANIFEST, m.digest.as_str())
        );
        assert!(body == m.bytes);
        assert_blobs_in_registry(&s, "team/multi", &src, m).await;
    }

    let raw = sk.with_creds("inspect", &["--raw"], &remote).await;
    assert!(
        raw.stdout == index.bytes,
        "inspect --raw: {}",
        raw.stdout_str()
    );
    let parsed: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(parsed["mediaType"], OCI_INDEX);
    assert_eq!(parsed["manifests"].as_array().unwrap().len(), 2);

    // Back out with --all: the same index, both images, every blob.
    let out = work.path().join("out");
    sk.pull(
        &["--all", "--preserve-digests"],
        &remote,
        &oci_ref(&out, "v1"),
    )
    .await;
    let desc = read_ref(&out, "v1");
    assert_eq!(desc["digest"], index.digest.as_str());
    assert_eq!(desc["mediaType"], OCI_INDEX);
    assert!(read_blob(&out, &index.digest) == index.bytes);
    for d in &index.blobs {
        assert!(
            read_blob(&out, d) == read_blob(&src, d),
            "blob {d} differs after pull"
        );
    }

    // Without --all, skopeo resolves the index to one platform's image.
    let arm = work.path().join("arm");
    sk.ok(&[
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "copy",
        "--preserve-digests",
        "--src-creds",
        &creds(),
        "--src-tls-verify=false",
        &remote,
        &oci_ref(&arm, "arm"),
    ])
    .await;
    assert_eq!(read_ref(&arm, "arm")["digest"], images[1].digest.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_without_valid_credentials_are_refused() {
    let s = TestServer::start().await;
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = Layout::create(&src);
    let image = layout.add_image(
        "linux",
        "amd64",
        &[
            Layer::tar_gz(Tar::new().file("a", 0o644, b"a\n").finish()),
            Layer::tar_gz(Tar::new().file("b", 0o644, b"b\n").finish()),
            Layer::tar(Tar::new().file("c", 0o644, b"c\n").finish()),
        ],
    );
    layout.tag("v1", &image);
    let host = s.addr.to_string();
    // The image is there, so refusals below are about credentials only.
    sk.push(
        &["--preserve-digests"],
        &oci_ref(&src, "v1"),
        &format!("docker://{host}/team/app:v1"),
    )
    .await;
    let before = s.stored().await;

    let mentions_auth = |stderr: &str| {
        let e = stderr.to_ascii_lowercase();
        e.contains("unauthorized") || e.contains("authentication required")
    };

    // In, anonymously (no credentials anywhere: skopeo's auth file is empty).
    let out = sk
        .fails(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &oci_ref(&src, "v1"),
            &format!("docker://{host}/team/other:v1"),
        ])
        .await;
    assert!(mentions_auth(&out.stderr), "anonymous push: {}", out.stderr);
    // In, with a wrong password.
    let out = sk
        .fails(&[
            "copy",
            "--preserve-digests",
            "--dest-creds",
            &format!("{USER}:wrong"),
            "--dest-tls-verify=false",
            &oci_ref(&src, "v1"),
            &format!("docker://{host}/team/other:v1"),
        ])
        .await;
    assert!(
        mentions_auth(&out.stderr),
        "wrong-password push: {}",
        out.stderr
    );
    assert_eq!(s.stored().await, before, "a refused push wrote to storage");

    // Out, anonymously and with a wrong password.
    let out_dir = work.path().join("out");
    let out = sk
        .fails(&[
            "copy",
            "--src-no-creds",
            "--src-tls-verify=false",
            &format!("docker://{host}/team/app:v1"),
            &oci_ref(&out_dir, "v1"),
        ])
        .await;
    assert!(mentions_auth(&out.stderr), "anonymous pull: {}", out.stderr);
    let out = sk
        .fails(&[
            "copy",
            "--src-creds",
            &format!("{USER}:wrong"),
            "--src-tls-verify=false",
            &format!("docker://{host}/team/app:v1"),
            &oci_ref(&out_dir, "v1"),
        ])
        .await;
    assert!(
        mentions_auth(&out.stderr),
        "wrong-password pull: {}",
        out.stderr
    );
    let out = sk
        .fails(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/team/app:v1"),
        ])
        .await;
    assert!(
        mentions_auth(&out.stderr),
        "anonymous inspect: {}",
        out.stderr
    );
    assert!(
        read_ref_missing(&out_dir, "v1"),
        "a refused pull produced an image"
    );
}

fn read_ref_missing(dir: &Path, tag: &str) -> bool {
    let Ok(index) = std::fs::read(dir.join("index.json")) else {
        return true;
    };
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    !index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d["annotations"][oci_layout::REF_NAME] == tag)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_tags_with_credentials() {
    let s = TestServer::start().await;
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = Layout::create(&src);
    let image = layout.add_image(
        "linux",
        "amd64",
        &[Layer::tar_gz(Tar::new().file("x", 0o644, b"x\n").finish())],
    );
    layout.tag("v1", &image);
    let host = s.addr.to_string();
    for tag in ["v1", "latest"] {
        sk.push(
            &["--preserve-digests"],
            &oci_ref(&src, "v1"),
            &format!("docker://{host}/team/app:{tag}"),
        )
        .await;
    }
    // A third tag through the API, on the same manifest.
    s.client()
        .push_manifest("team/app", "2.0.1", OCI_MANIFEST, &image.bytes)
        .await;

    let out = sk
        .with_creds("list-tags", &[], &format!("docker://{host}/team/app"))
        .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Repository"], format!("{host}/team/app"));
    let mut tags: Vec<String> = serde_json::from_value(v["Tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["2.0.1", "latest", "v1"]);

    let out = sk
        .fails(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/team/app"),
        ])
        .await;
    let e = out.stderr.to_ascii_lowercase();
    assert!(
        e.contains("unauthorized") || e.contains("authentication required"),
        "anonymous list-tags: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_tag_removes_the_manifest_and_its_tags() {
    // `skopeo delete` resolves the tag and deletes the manifest by digest;
    // as with registry:2, every tag on that manifest goes with it, and
    // other manifests' tags stay.
    let s = TestServer::start().await;
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let mut layout = Layout::create(work.path());
    let one = layout.add_image(
        "linux",
        "amd64",
        &[Layer::tar_gz(
            Tar::new().file("one", 0o644, b"1\n").finish(),
        )],
    );
    let two = layout.add_image(
        "linux",
        "amd64",
        &[Layer::tar_gz(
            Tar::new().file("two", 0o644, b"2\n").finish(),
        )],
    );
    layout.tag("one", &one);
    layout.tag("two", &two);
    let host = s.addr.to_string();
    for (src, dst) in [("one", "v1"), ("one", "latest"), ("two", "v2")] {
        sk.push(
            &["--preserve-digests"],
            &oci_ref(work.path(), src),
            &format!("docker://{host}/team/app:{dst}"),
        )
        .await;
    }
    let out = sk
        .fails(&[
            "delete",
            "--tls-verify=false",
            &format!("docker://{host}/team/app:v1"),
        ])
        .await;
    let e = out.stderr.to_ascii_lowercase();
    assert!(
        e.contains("unauthorized") || e.contains("authentication required"),
        "{e}"
    );
    sk.with_creds("delete", &[], &format!("docker://{host}/team/app:v1"))
        .await;
    for reference in ["v1", "latest", one.digest.as_str()] {
        let r = s
            .client()
            .get(&format!("/v2/team/app/manifests/{reference}"))
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{reference} still served after delete");
    }
    let out = sk
        .with_creds("list-tags", &[], &format!("docker://{host}/team/app"))
        .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Tags"], serde_json::json!(["v2"]));
    let (_, digest, _) = get_manifest(&s, "team/app", "v2").await;
    assert_eq!(digest, two.digest);
}

/// Immutable tags as skopeo sees them (docs/policies.md): the same image
/// copied to `v1.0.0` again passes, another one is refused with the rule in
/// skopeo's message.
#[tokio::test]
#[ignore = "needs skopeo (run scripts/test.sh)"]
async fn immutable_tag_refuses_a_changed_copy() {
    let s = TestServer::start_with(|c| {
        c.policies =
            toml::from_str("[[immutable]]\nrepository = \"team/**\"\ntags = [\"v*\"]").unwrap();
    })
    .await;
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = Layout::create(&src);
    for (tag, content) in [("first", b"one\n"), ("second", b"two\n")] {
        let image = layout.add_image(
            "linux",
            "amd64",
            &[Layer::tar_gz(Tar::new().file("f", 0o644, content).finish())],
        );
        layout.tag(tag, &image);
    }
    let dest = format!("docker://{}/team/app:v1.0.0", s.addr);
    let copy = |tag: &str| skopeo::push_args(&["--preserve-digests"], &oci_ref(&src, tag), &dest);
    sk.ok_owned(&copy("first")).await;
    sk.ok_owned(&copy("first")).await;
    let out = sk.fails_owned(&copy("second")).await;
    assert!(
        out.stderr
            .contains("denied: tag v1.0.0 of team/app is immutable under policies.immutable[0]"),
        "skopeo's message for an immutable tag: {}",
        out.stderr
    );
    s.stop().await;
}
