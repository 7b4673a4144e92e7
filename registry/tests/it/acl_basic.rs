//! The ACL in htpasswd (Basic) mode: 403 `DENIED` for an authenticated user
//! without the action, anonymous access only where a rule grants it, the
//! catalog for those allowed it, cross-repository mounts only from
//! repositories the user may pull, and brute force throttled per address
//! while the right password from another client still works.

use crate::support;

use std::net::{IpAddr, Ipv4Addr};

use registry::config::Config;
use serde_json::Value;
use support::{expect_error, sha256_digest, Client, TestServer, OCI_MANIFEST};

const USERS: &[(&str, &str)] = &[("alice", "secret"), ("bob", "bobpw"), ("root", "rootpw")];

const ACL: &str = r#"
admins = ["root"]
[groups]
team-a = ["alice"]
[[rules]]
repository = "team-a/**"
pull = ["@team-a"]
push = ["@team-a"]
delete = ["@team-a"]
[[rules]]
repository = "team-b/**"
pull = ["bob"]
push = ["bob"]
[[rules]]
repository = "public/**"
pull = ["*"]
push = ["alice"]
anonymous = ["pull"]
"#;

fn with_acl(c: &mut Config) {
    support::users_and_acl(c, USERS, ACL);
}

fn as_user(s: &TestServer, user: &str) -> Client {
    support::client_as(s, USERS, user)
}

async fn push_blob_status(c: &Client, repo: &str, data: &[u8]) -> u16 {
    c.post(&format!(
        "/v2/{repo}/blobs/uploads/?digest={}",
        sha256_digest(data)
    ))
    .body(data.to_vec())
    .send()
    .await
    .unwrap()
    .status()
    .as_u16()
}

#[tokio::test]
async fn acl_matrix_in_basic_mode() {
    let s = TestServer::start_with(with_acl).await;
    let alice = as_user(&s, "alice");
    let bob = as_user(&s, "bob");
    let root = as_user(&s, "root");
    assert_eq!(push_blob_status(&alice, "team-a/app", b"a").await, 201);
    assert_eq!(push_blob_status(&bob, "team-b/app", b"b").await, 201);
    assert_eq!(push_blob_status(&root, "elsewhere/x", b"r").await, 201);
    assert_eq!(push_blob_status(&alice, "elsewhere/x", b"r2").await, 403);

    // alice is denied team-b: 403 DENIED with registry:2's detail, no
    // challenge (she is authenticated; logging in again would not help).
    let r = alice
        .post(&format!(
            "/v2/team-b/app/blobs/uploads/?digest={}",
            sha256_digest(b"x")
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("www-authenticate").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(
        body["errors"][0]["detail"][0],
        serde_json::json!({"Type": "repository", "Name": "team-b/app", "Action": "pull,push"})
    );
    let r = alice
        .get(&format!("/v2/team-b/app/blobs/{}", sha256_digest(b"b")))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 403).await, "DENIED");
    // bob may push and pull team-b, not delete there.
    let r = bob
        .delete(&format!("/v2/team-b/app/blobs/{}", sha256_digest(b"b")))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 403).await, "DENIED");
    let r = alice
        .delete(&format!("/v2/team-a/app/blobs/{}", sha256_digest(b"a")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Anonymous: pull where a rule allows it, a challenge elsewhere (and on
    // /v2/ itself, which docker login relies on).
    alice.push_image("public/app", "v1", &[b"pub"]).await;
    let anon = s.anonymous();
    let r = anon
        .get("/v2/public/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (what, r) in [
        (
            "push public",
            anon.post("/v2/public/app/blobs/uploads/")
                .send()
                .await
                .unwrap(),
        ),
        (
            "pull team-a",
            anon.get("/v2/team-a/app/tags/list").send().await.unwrap(),
        ),
        ("base", anon.get("/v2/").send().await.unwrap()),
        ("catalog", anon.get("/v2/_catalog").send().await.unwrap()),
    ] {
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"Registry Realm\""
        );
    }
    // bob pulls public (pull = "*"), cannot push there.
    assert_eq!(
        bob.get("/v2/public/app/tags/list")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(push_blob_status(&bob, "public/app", b"bp").await, 403);

    // The catalog: admins only (no `catalog` list in this ACL).
    let r = alice.get("/v2/_catalog").send().await.unwrap();
    assert_eq!(expect_error(r, 403).await, "DENIED");
    let r = root.get("/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cross_repository_mount_needs_pull_on_the_source() {
    let s = TestServer::start_with(with_acl).await;
    let alice = as_user(&s, "alice");
    let bob = as_user(&s, "bob");
    let root = as_user(&s, "root");
    let secret = b"team-a secret layer";
    assert_eq!(push_blob_status(&alice, "team-a/app", secret).await, 201);
    let digest = sha256_digest(secret);
    let head = |c: &Client, repo: &str| {
        let r = c.head(&format!("/v2/{repo}/blobs/{digest}"));
        async move { r.send().await.unwrap().status().as_u16() }
    };

    // bob cannot pull team-a: naming it as the source mounts nothing; he
    // gets an upload session, exactly as if the blob did not exist.
    for query in [
        format!("mount={digest}&from=team-a/app"),
        format!("mount={digest}"),
    ] {
        let r = bob
            .post(&format!("/v2/team-b/app/blobs/uploads/?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{query}");
        assert_eq!(head(&bob, "team-b/app").await, 404, "{query}");
    }
    // Without `from`, alice (who cannot read team-b) gets no automatic
    // mount either; with `from` of her own repository she does.
    let r = alice
        .post(&format!("/v2/public/app/blobs/uploads/?mount={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = alice
        .post(&format!(
            "/v2/public/app/blobs/uploads/?mount={digest}&from=team-a/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(head(&alice, "public/app").await, 200);
    // An admin may read everything: the automatic mount works for root.
    let r = root
        .post(&format!("/v2/root/app/blobs/uploads/?mount={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// 50 wrong passwords in a row from one address: 401 ten times, then 429
/// with Retry-After; alice from another client still gets in.
#[tokio::test]
async fn brute_force_is_throttled_while_the_right_password_elsewhere_works() {
    let s = TestServer::start_with(with_acl).await;
    let attacker = s.anonymous();
    let mut statuses = Vec::new();
    for i in 0..50 {
        let r = attacker
            .get("/v2/team-a/app/tags/list")
            .basic_auth("alice", Some(format!("guess-{i}")))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    let other = Client {
        http: reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
            .build()
            .unwrap(),
        base: s.base.clone(),
        auth: Some(("alice".into(), "secret".into())),
    };
    let r = other.get("/v2/team-a/app/tags/list").send().await.unwrap();
    assert_eq!(
        r.status(),
        404,
        "alice gets in (and learns the repo is empty)"
    );
}

/// A bad ACL fails at start with the key that is wrong.
#[test]
fn bad_acl_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        "[acl]\n[[acl.rules]]\nrepository = \"team/**\"\npush = [\"@missing\"]\n",
    )
    .unwrap();
    let e = Config::load(Some(&file), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("acl.rules[0].push"), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
}
