//! The listing extensions (`/v2/_ext/repositories`, `/v2/<name>/_ext/tags`)
//! and the ACL-filtered catalog: two users with different rules see only
//! what they may pull; sizes, platforms and push times are those of what was
//! pushed; pages follow the `Link` header in name and push-time order.

use crate::support;

use registry::config::Config;
use serde_json::Value;
use support::{Client, TestServer};

/// The config `Client::push_image` writes for a one-layer image.
const CONFIG: &str = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":1}";

const USERS: &[(&str, &str)] = &[("alice", "secret"), ("bob", "bobpw")];

const ACL: &str = r#"
catalog = ["*"]
[[rules]]
repository = "team-a/**"
pull = ["alice"]
push = ["alice"]
[[rules]]
repository = "team-b/**"
pull = ["bob"]
push = ["bob"]
[[rules]]
repository = "public/**"
pull = ["*"]
push = ["alice"]
"#;

fn with_acl(c: &mut Config) {
    support::users_and_acl(c, USERS, ACL);
}

fn as_user(s: &TestServer, user: &str) -> Client {
    support::client_as(s, USERS, user)
}

async fn json(c: &Client, path: &str) -> (Value, Option<String>) {
    let r = c.get(path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let link = r
        .headers()
        .get("link")
        .map(|l| l.to_str().unwrap().to_owned());
    (r.json().await.unwrap(), link)
}

/// Follows `Link: <...>; rel="next"` from `path`, collecting `field` of
/// every item of `list`; also returns the number of pages.
async fn all_pages(c: &Client, path: &str, list: &str, field: &str) -> (Vec<String>, usize) {
    let mut next = Some(path.to_owned());
    let mut out = Vec::new();
    let mut pages = 0;
    while let Some(path) = next {
        let (body, link) = json(c, &path).await;
        pages += 1;
        for item in body[list].as_array().unwrap() {
            out.push(item[field].as_str().unwrap().to_owned());
        }
        next = link.map(|l| {
            let start = l.find('<').unwrap() + 1;
            let end = l.find('>').unwrap();
            l[start..end].to_owned()
        });
        assert!(pages < 20, "pagination does not end");
    }
    (out, pages)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn listings_are_filtered_sorted_and_paginated() {
    let s = TestServer::start_with(with_acl).await;
    let alice = as_user(&s, "alice");
    let bob = as_user(&s, "bob");

    // Pushed in the order v2, v3, v1, so push-time order is not name order.
    let mut sizes = std::collections::HashMap::new();
    for (tag, layer) in [("v2", &b"two"[..]), ("v3", b"three!"), ("v1", b"1")] {
        let (digest, manifest) = alice.push_image("team-a/app", tag, &[layer]).await;
        let config_len = CONFIG.len();
        sizes.insert(tag, (digest, manifest.len() + config_len + layer.len()));
        support::next_second().await;
    }
    let (amd, amd_bytes) = alice.push_image("team-a/multi", "amd64", &[b"amd"]).await;
    let (arm, arm_bytes) = alice.push_image("team-a/multi", "arm64", &[b"arm"]).await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd,
             "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm,
             "size": arm_bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = alice
        .push_manifest(
            "team-a/multi",
            "latest",
            "application/vnd.oci.image.index.v1+json",
            &index_bytes,
        )
        .await;
    bob.push_image("team-b/app", "v1", &[b"bob"]).await;
    alice.push_image("public/base", "v1", &[b"pub"]).await;

    // The catalog and the repositories extension, per user.
    let (catalog, _) = json(&alice, "/v2/_catalog").await;
    assert_eq!(
        strings(&catalog["repositories"]),
        ["public/base", "team-a/app", "team-a/multi"]
    );
    let (catalog, _) = json(&bob, "/v2/_catalog").await;
    assert_eq!(
        strings(&catalog["repositories"]),
        ["public/base", "team-b/app"]
    );
    let (names, pages) =
        all_pages(&alice, "/v2/_ext/repositories?n=1", "repositories", "name").await;
    assert_eq!(names, ["public/base", "team-a/app", "team-a/multi"]);
    assert_eq!(pages, 3);
    let (names, _) = all_pages(&bob, "/v2/_ext/repositories?n=1", "repositories", "name").await;
    assert_eq!(names, ["public/base", "team-b/app"]);
    let (filtered, _) = json(&alice, "/v2/_ext/repositories?q=multi").await;
    let repos = filtered["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["name"], "team-a/multi");
    assert_eq!(repos[0]["tags"], 3);
    // Newest push first: team-b/app and public/base came last.
    let (names, _) = all_pages(
        &bob,
        "/v2/_ext/repositories?n=1&sort=pushed",
        "repositories",
        "name",
    )
    .await;
    assert_eq!(names, ["public/base", "team-b/app"]);

    // Tags with digest, size and push time.
    let (tags, _) = json(&alice, "/v2/team-a/app/_ext/tags").await;
    let tags = tags["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 3);
    for t in tags {
        let (digest, size) = &sizes[t["tag"].as_str().unwrap()];
        assert_eq!(t["digest"], digest.as_str());
        assert_eq!(t["size"], *size as u64);
        assert_eq!(
            t["media_type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert!(t["pushed"].as_str().unwrap().ends_with('Z'), "{t}");
    }
    let (by_time, pages) = all_pages(
        &alice,
        "/v2/team-a/app/_ext/tags?sort=pushed&n=2",
        "tags",
        "tag",
    )
    .await;
    assert_eq!(by_time, ["v1", "v3", "v2"]);
    assert_eq!(pages, 2);
    let (by_name, pages) = all_pages(&alice, "/v2/team-a/app/_ext/tags?n=1", "tags", "tag").await;
    assert_eq!(by_name, ["v1", "v2", "v3"]);
    assert_eq!(pages, 3);
    // The repository's size counts each blob once: three images sharing a
    // config.
    let (app, _) = json(&alice, "/v2/_ext/repositories?q=team-a/app").await;
    let config_len = CONFIG.len() as u64;
    let total: u64 = sizes.values().map(|(_, s)| *s as u64).sum::<u64>() - 2 * config_len;
    assert_eq!(app["repositories"][0]["size"], total);

    // An index: its platforms, and its size with its children's.
    let (multi, _) = json(&alice, "/v2/team-a/multi/_ext/tags").await;
    let latest = multi["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "latest")
        .unwrap()
        .clone();
    assert_eq!(latest["digest"], index_digest.as_str());
    assert_eq!(
        strings(&latest["platforms"]),
        ["linux/amd64", "linux/arm64/v8"]
    );
    let child_size =
        |bytes: &[u8], layer: &[u8]| (bytes.len() + config_len as usize + layer.len()) as u64;
    // The two children share their config, counted once.
    assert_eq!(
        latest["size"],
        index_bytes.len() as u64 + child_size(&amd_bytes, b"amd") + child_size(&arm_bytes, b"arm")
            - config_len
    );

    // Refusals: another team's tags, anonymous, bad parameters, unknown name.
    let r = bob.get("/v2/team-a/app/_ext/tags").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .anonymous()
        .get("/v2/_ext/repositories")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = alice
        .get("/v2/team-a/app/_ext/tags?sort=size")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(support::error_code(r).await, "UNSUPPORTED");
    let r = alice
        .get("/v2/team-a/nothing/_ext/tags")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(support::error_code(r).await, "NAME_UNKNOWN");
    let r = alice.post("/v2/_ext/repositories").send().await.unwrap();
    assert_eq!(r.status(), 405);
}
