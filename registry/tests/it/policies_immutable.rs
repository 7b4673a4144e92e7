//! Immutable tags (`[[policies.immutable]]`): a changed push, a tag delete
//! and a manifest delete are refused with 409 DENIED naming the rule; the
//! same digest passes; exceptions and admin overrides; racing first pushes
//! of one tag leave exactly one winner.

use crate::support;

use support::{error_body, TestServer, OCI_MANIFEST};

const RULES: &str = r#"
admins = ["alice"]
default = ["pull", "push", "delete"]
"#;

fn policies() -> registry::config::Policies {
    toml::from_str(
        r#"
[[immutable]]
repository = "team/**"
tags = ["v*", "release-*"]
exceptions = ["*-rc*"]
[[immutable]]
repository = "ops/*"
tags = ["v*"]
admin_override = true
"#,
    )
    .unwrap()
}

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.policies = policies();
        c.acl = Some(toml::from_str(RULES).unwrap());
    })
    .await
}

#[tokio::test]
async fn immutable_tag_refuses_a_changed_push_and_deletes() {
    let s = server().await;
    let c = s.client();
    let (first, _) = c.push_image("team/app", "v1.0.0", &[b"one"]).await;
    // Same digest again: a CI re-run passes.
    let (again, _) = c.push_image("team/app", "v1.0.0", &[b"one"]).await;
    assert_eq!(again, first);

    // Another digest: 409 DENIED naming the rule and the digest it keeps.
    // push_image's config with an empty layer list: another digest.
    let config = br#"{"architecture":"amd64","os":"linux","n":1}"#;
    let other = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": support::sha256_digest(config), "size": config.len()},
        "layers": [],
    });
    let r = c
        .put("/v2/team/app/manifests/v1.0.0")
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&other).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body = error_body(r).await;
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("tag v1.0.0 of team/app is immutable under policies.immutable[0]")
            && message.contains(r#"tags ["v*", "release-*"]"#)
            && message.contains(&first),
        "{message}"
    );
    let r = c
        .head("/v2/team/app/manifests/v1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], first.as_str());

    // Deleting the tag, or the manifest it names: refused the same way.
    for (path, says) in [
        (
            "/v2/team/app/manifests/v1.0.0".to_owned(),
            "cannot be deleted",
        ),
        (
            format!("/v2/team/app/manifests/{first}"),
            "untagged by deleting its manifest",
        ),
    ] {
        let r = c.delete(&path).send().await.unwrap();
        assert_eq!(r.status(), 409, "{path}");
        let body = error_body(r).await;
        assert_eq!(body["errors"][0]["code"], "DENIED");
        let m = body["errors"][0]["message"].as_str().unwrap();
        assert!(m.contains(says), "{path}: {m}");
    }
    let r = c
        .head("/v2/team/app/manifests/v1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Exceptions, tags no pattern names, repositories no rule names: mutable.
    for (repo, tag) in [
        ("team/app", "v1.1.0-rc1"),
        ("team/app", "latest"),
        ("other/app", "v1.0.0"),
    ] {
        c.push_image(repo, tag, &[b"one"]).await;
        c.push_image(repo, tag, &[b"two"]).await;
        let r = c
            .delete(&format!("/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{repo}:{tag}");
    }
    s.stop().await;
}

#[tokio::test]
async fn admins_override_only_where_the_rule_allows() {
    let s = server().await;
    let c = s.client(); // alice, an admin
    c.push_image("ops/tool", "v1", &[b"one"]).await;
    let (second, _) = c.push_image("ops/tool", "v1", &[b"two"]).await;
    let r = c.head("/v2/ops/tool/manifests/v1").send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], second.as_str());
    let r = c.delete("/v2/ops/tool/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), 202);

    // team/** has no admin override: the admin is refused too.
    c.push_image("team/app", "release-1", &[b"one"]).await;
    let r = c
        .delete("/v2/team/app/manifests/release-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    s.stop().await;
}

/// Eight pushes of eight different manifests to one new immutable tag at
/// once: exactly one is acknowledged, and the tag names that one.
#[tokio::test]
async fn racing_first_pushes_have_one_winner() {
    let s = server().await;
    race(&s, &s).await;
    s.stop().await;
}

/// The same race, half the pushes through a second replica on the same
/// storage, which then refuses a changed push and a delete too.
#[tokio::test]
async fn racing_replicas_have_one_winner() {
    let s = server().await;
    let replica = s.start_replica().await;
    let winner = race(&s, &replica).await;
    let c = replica.client();
    let r = c.delete("/v2/team/race/manifests/v9").send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = c.head("/v2/team/race/manifests/v9").send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], winner.as_str());
    replica.stop().await;
    s.stop().await;
}

/// Eight different manifests pushed at once to one new immutable tag,
/// alternately through `a` and `b`; returns the winner's digest.
async fn race(a: &TestServer, b: &TestServer) -> String {
    let c = a.client();
    let clients = [a.client(), b.client()];
    let layer = c.push_blob("team/race", b"layer").await;
    let mut manifests = Vec::new();
    for i in 0..8 {
        let config = format!("{{\"n\":{i}}}");
        let d = c.push_blob("team/race", config.as_bytes()).await;
        manifests.push(support::image_manifest(&d, config.len(), &[(&layer, 5)]));
    }
    let pushes = manifests.iter().enumerate().map(|(i, m)| {
        clients[i % 2]
            .put("/v2/team/race/manifests/v9")
            .header("content-type", OCI_MANIFEST)
            .body(m.clone())
            .send()
    });
    let results = futures::future::join_all(pushes).await;
    let mut won = Vec::new();
    for r in results {
        let r = r.unwrap();
        match r.status().as_u16() {
            201 => won.push(
                r.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            ),
            409 => {}
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let r = c.head("/v2/team/race/manifests/v9").send().await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], won[0].as_str());
    won.remove(0)
}

/// A protected multi-arch tag keeps its whole image: its index's children
/// and every blob they reference cannot be deleted either; what it does
/// not include can.
#[tokio::test]
async fn deleting_what_a_protected_image_includes_is_refused() {
    let s = server().await;
    let c = s.client();
    // Children under mutable tags (no rule names "amd64"), the index under v2.
    let (amd, amd_bytes) = c.push_image("team/multi", "amd64", &[b"amd layer"]).await;
    let (arm, arm_bytes) = c.push_image("team/multi", "arm64", &[b"arm layer"]).await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": support::OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_bytes.len(), "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    });
    let index = c
        .push_manifest(
            "team/multi",
            "v2",
            support::OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        )
        .await;
    let (loose, _) = c
        .push_image("team/multi", "scratch", &[b"loose layer"])
        .await;
    let arm_layer = support::sha256_digest(b"arm layer");
    for (path, says) in [
        (
            format!("/v2/team/multi/manifests/{index}"),
            "untagged by deleting its manifest".to_owned(),
        ),
        (
            format!("/v2/team/multi/manifests/{amd}"),
            format!("broken by deleting {amd}"),
        ),
        (
            format!("/v2/team/multi/blobs/{arm_layer}"),
            format!("broken by deleting {arm_layer}"),
        ),
    ] {
        let r = c.delete(&path).send().await.unwrap();
        assert_eq!(r.status(), 409, "{path}");
        let m = error_body(r).await["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            m.contains("tag v2 of team/multi") && m.contains(&says),
            "{path}: {m}"
        );
    }
    for path in [
        format!("/v2/team/multi/manifests/{loose}"),
        format!(
            "/v2/team/multi/blobs/{}",
            support::sha256_digest(b"loose layer")
        ),
    ] {
        let r = c.delete(&path).send().await.unwrap();
        assert_eq!(r.status(), 202, "{path}");
    }
    s.stop().await;
}

/// distribution-spec main, "Pushing manifests with multiple tags": a push
/// by digest with `?tag=` is all or nothing. One tag the immutable rule
/// keeps at another digest refuses it with 409 DENIED, and none of the
/// other tags (mutable, or immutable and new) moves or appears.
#[tokio::test]
async fn multi_tag_push_refused_by_one_immutable_tag_sets_none() {
    let s = server().await;
    let c = s.client();
    let (first, _) = c.push_image("team/app", "v1", &[b"one"]).await;
    c.push_image("team/app", "latest", &[b"one"]).await;
    let config = br#"{"architecture":"amd64","os":"linux","n":2}"#;
    c.push_blob("team/app", config).await;
    let other = support::image_manifest(&support::sha256_digest(config), config.len(), &[]);
    let other_digest = support::sha256_digest(&other);
    let r = c
        .put(&format!(
            "/v2/team/app/manifests/{other_digest}?tag=latest&tag=v2&tag=v1"
        ))
        .header("content-type", OCI_MANIFEST)
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.headers().get("oci-tag").is_none());
    let body = error_body(r).await;
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(body["errors"][0]["detail"]["tag"], "v1");
    for (tag, want) in [("v1", Some(&first)), ("latest", Some(&first)), ("v2", None)] {
        let r = c
            .head(&format!("/v2/team/app/manifests/{tag}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        match want {
            Some(d) => assert_eq!(r.headers()["docker-content-digest"], d.as_str(), "{tag}"),
            None => assert_eq!(r.status(), 404, "{tag}"),
        }
    }
    // Without the protected tag, the same push tags both, each claimed.
    let r = c
        .put(&format!(
            "/v2/team/app/manifests/{other_digest}?tag=latest&tag=v2"
        ))
        .header("content-type", OCI_MANIFEST)
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get_all("oci-tag").iter().count(), 2);
    assert_eq!(c.tag_list("team/app").await, ["latest", "v1", "v2"]);
}
