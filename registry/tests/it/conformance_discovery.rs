//! Content discovery of the OCI Distribution Spec v1.1 (conformance suite
//! `03_discovery_test.go`): tag listing with `n`/`last` and `Link`
//! pagination, the catalog, and the referrers API with `artifactType`
//! filtering and `OCI-Filters-Applied`.

use crate::support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::{expect_error, sha256_digest, Client, TestServer, OCI_INDEX, OCI_MANIFEST};

const REPO: &str = "conformance/discovery";
const DUMMY_DIGEST: &str =
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const ANNOTATION: &str = "org.opencontainers.conformance.test";
const TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
const TYPE_INDEX: &str = "application/vnd.food.stand";

async fn get_json(c: &Client, path: &str) -> (reqwest::header::HeaderMap, Value) {
    let r = c.get(path).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    let headers = r.headers().clone();
    (headers, r.json().await.unwrap())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The `<...>` target of a `Link: <url>; rel="next"` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().unwrap();
    assert!(link.contains("rel=\"next\""), "{link}");
    let start = link.find('<').unwrap() + 1;
    let end = link.find('>').unwrap();
    Some(link[start..end].to_owned())
}

async fn push_tags(c: &Client, name: &str, tags: &[&str]) {
    let (digest, manifest) = c.push_image(name, tags[0], &[b"discovery layer"]).await;
    for tag in &tags[1..] {
        assert_eq!(
            c.push_manifest(name, tag, OCI_MANIFEST, &manifest).await,
            digest
        );
    }
}

// ----- Listing tags -----

#[tokio::test]
async fn tags_list_is_200_with_name_and_all_tags() {
    let s = TestServer::start().await;
    let c = s.client();
    push_tags(&c, REPO, &["test0", "test1", "test2", "test3"]).await;
    let (headers, body) = get_json(&c, &format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(
        body,
        json!({"name": REPO, "tags": ["test0", "test1", "test2", "test3"]})
    );
    assert!(headers.get("link").is_none());
}

/// Tags "MUST be sorted in lexical ... or ASCIIbetical order (as defined by
/// Go's `sort.Strings`)": byte order, upper case before lower case.
#[tokio::test]
async fn tags_are_sorted_asciibetically() {
    let s = TestServer::start().await;
    let c = s.client();
    push_tags(&c, REPO, &["b", "B", "a10", "a9", "_x", "A", "1.0", "1-0"]).await;
    let (_, body) = get_json(&c, &format!("/v2/{REPO}/tags/list")).await;
    let mut expected = vec!["b", "B", "a10", "a9", "_x", "A", "1.0", "1-0"];
    expected.sort();
    assert_eq!(strings(&body["tags"]), expected);
}

/// "GET number of tags should be limitable by `n` query parameter".
#[tokio::test]
async fn tags_list_is_limited_by_n() {
    let s = TestServer::start().await;
    let c = s.client();
    push_tags(&c, REPO, &["test0", "test1", "test2", "test3"]).await;
    let (headers, body) = get_json(&c, &format!("/v2/{REPO}/tags/list?n=2")).await;
    assert_eq!(strings(&body["tags"]), ["test0", "test1"]);
    let next = next_link(&headers).expect("a Link header when more tags remain");
    assert!(
        next.starts_with(&format!("/v2/{REPO}/tags/list?")),
        "{next}"
    );
}

/// "GET start of tag is set by `last` query parameter".
#[tokio::test]
async fn tags_list_starts_after_last() {
    let s = TestServer::start().await;
    let c = s.client();
    push_tags(&c, REPO, &["test0", "test1", "test2", "test3"]).await;
    let (_, body) = get_json(&c, &format!("/v2/{REPO}/tags/list?n=2&last=test1")).await;
    assert_eq!(strings(&body["tags"]), ["test2", "test3"]);
    // `last` need not be an existing tag, and `n` is optional with it.
    let (_, body) = get_json(&c, &format!("/v2/{REPO}/tags/list?last=test15")).await;
    assert_eq!(strings(&body["tags"]), ["test2", "test3"]);
    let (headers, body) = get_json(&c, &format!("/v2/{REPO}/tags/list?n=5&last=test3")).await;
    assert_eq!(strings(&body["tags"]), Vec::<String>::new());
    assert!(headers.get("link").is_none());
}

/// Following `Link` from page to page lists every tag once, in order.
#[tokio::test]
async fn following_link_headers_walks_all_tags() {
    let s = TestServer::start().await;
    let c = s.client();
    let tags: Vec<String> = (0..11).map(|i| format!("v{i:02}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    push_tags(&c, REPO, &refs).await;
    let mut seen = Vec::new();
    let mut next = Some(format!("/v2/{REPO}/tags/list?n=3"));
    let mut pages = 0;
    while let Some(path) = next {
        let (headers, body) = get_json(&c, &path).await;
        let page = strings(&body["tags"]);
        assert!(page.len() <= 3);
        seen.extend(page);
        next = next_link(&headers);
        pages += 1;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, tags);
    assert_eq!(pages, 4);
}

/// "If `n=0`, the registry must return an empty list and must not include a
/// `Link` header."
#[tokio::test]
async fn tags_list_with_n_zero_is_empty_without_link() {
    let s = TestServer::start().await;
    let c = s.client();
    push_tags(&c, REPO, &["test0", "test1"]).await;
    let (headers, body) = get_json(&c, &format!("/v2/{REPO}/tags/list?n=0")).await;
    assert_eq!(strings(&body["tags"]), Vec::<String>::new());
    assert!(headers.get("link").is_none(), "{:?}", headers.get("link"));
}

#[tokio::test]
async fn tags_list_with_n_at_least_the_count_has_no_link() {
    let s = TestServer::start().await;
    let c = s.client();
    push_tags(&c, REPO, &["test0", "test1", "test2"]).await;
    for n in [3, 4, 1000] {
        let (headers, body) = get_json(&c, &format!("/v2/{REPO}/tags/list?n={n}")).await;
        assert_eq!(strings(&body["tags"]).len(), 3);
        assert!(headers.get("link").is_none(), "n={n}");
    }
}

#[tokio::test]
async fn tags_list_of_unknown_repository_is_404_name_unknown() {
    let s = TestServer::start().await;
    let r = s
        .client()
        .get("/v2/no/such/repo/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 404).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn repository_with_untagged_manifests_lists_no_tags() {
    let s = TestServer::start().await;
    let c = s.client();
    let (_, manifest) = c.push_image(REPO, "temp", &[b"x"]).await;
    let digest = sha256_digest(&manifest);
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/temp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c.get_manifest(REPO, &digest).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, body) = get_json(&c, &format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(body["name"], REPO);
    assert!(
        body["tags"].is_null() || body["tags"] == json!([]),
        "{body}"
    );
}

// ----- Catalog -----

#[tokio::test]
async fn catalog_lists_repositories_sorted_and_paginated() {
    let s = TestServer::start().await;
    let c = s.client();
    let names = ["zeta", "alpha/one", "alpha/two/deep", "beta", "alpha"];
    for n in names {
        c.push_image(n, "v1", &[n.as_bytes()]).await;
    }
    // A repository holding only blobs is not listed by registry:2 either.
    let (_, body) = get_json(&c, "/v2/_catalog").await;
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(strings(&body["repositories"]), expected);

    let mut seen = Vec::new();
    let mut next = Some("/v2/_catalog?n=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let (headers, body) = get_json(&c, &path).await;
        let page = strings(&body["repositories"]);
        assert!(page.len() <= 2);
        seen.extend(page);
        next = next_link(&headers);
        pages += 1;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, expected);

    let (_, body) = get_json(&c, "/v2/_catalog?n=2&last=alpha/two/deep").await;
    assert_eq!(strings(&body["repositories"]), ["beta", "zeta"]);
    let (headers, body) = get_json(&c, "/v2/_catalog?n=0").await;
    assert_eq!(strings(&body["repositories"]), Vec::<String>::new());
    assert!(headers.get("link").is_none());
}

#[tokio::test]
async fn catalog_of_an_empty_registry_is_empty() {
    let s = TestServer::start().await;
    let (_, body) = get_json(&s.client(), "/v2/_catalog").await;
    assert_eq!(body, json!({"repositories": []}));
}

// ----- Referrers -----

struct Referrers {
    subject: String,
    dangling_subject: String,
    dangling_referrer: String,
    /// digest -> annotation value, for the five referrers of `subject`.
    annotations: BTreeMap<String, String>,
    /// digest -> (artifactType the descriptor must carry, mediaType, size).
    expected: BTreeMap<String, (Option<String>, String, usize)>,
}

async fn put_digest(c: &Client, media_type: &str, body: &[u8]) -> String {
    let digest = sha256_digest(body);
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{digest}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    digest
}

/// The suite's "References setup": subject `manifests[4]` with five
/// referrers (config-typed A and B, artifactType-typed A and B, an index),
/// and a referrer of a subject that was never pushed.
async fn references_setup(c: &Client) -> Referrers {
    assert_eq!(c.push_blob(REPO, b"{}").await, EMPTY_JSON_DIGEST);
    let blob_a = b"NHL Peanut Butter on my NHL bagel".as_slice();
    let blob_b = b"NBA Strawberry Jam on my NBA croissant".as_slice();
    let blob_a_digest = c.push_blob(REPO, blob_a).await;

    let (subject, subject_bytes) = c.push_image(REPO, "tagtest0", &[b"subject layer"]).await;
    let subject_desc =
        json!({"mediaType": OCI_MANIFEST, "size": subject_bytes.len(), "digest": subject});
    let never_pushed = sha256_digest(b"manifests[3] was never pushed");
    let dangling_desc = json!({"mediaType": OCI_MANIFEST, "size": 99, "digest": never_pushed});
    let empty = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2});

    let mut annotations = BTreeMap::new();
    let mut expected = BTreeMap::new();

    let config_a = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": TYPE_A, "size": blob_a.len(), "digest": blob_a_digest},
        "subject": subject_desc,
        "layers": [empty],
        "annotations": {ANNOTATION: "test config a"},
    }))
    .unwrap();
    let r = c
        .put(&format!(
            "/v2/{REPO}/manifests/{}",
            sha256_digest(&config_a)
        ))
        .header("content-type", OCI_MANIFEST)
        .body(config_a.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"].to_str().unwrap(), subject);
    let d = sha256_digest(&config_a);
    annotations.insert(d.clone(), "test config a".to_owned());
    expected.insert(
        d,
        (
            Some(TYPE_A.to_owned()),
            OCI_MANIFEST.to_owned(),
            config_a.len(),
        ),
    );

    let layer_a = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": TYPE_A,
        "config": empty,
        "subject": subject_desc,
        "layers": [{"mediaType": TYPE_A, "size": blob_a.len(), "digest": blob_a_digest}],
        "annotations": {ANNOTATION: "test layer a"},
    }))
    .unwrap();
    let d = put_digest(c, OCI_MANIFEST, &layer_a).await;
    annotations.insert(d.clone(), "test layer a".to_owned());
    expected.insert(
        d,
        (
            Some(TYPE_A.to_owned()),
            OCI_MANIFEST.to_owned(),
            layer_a.len(),
        ),
    );

    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": TYPE_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "size": config_a.len(), "digest": sha256_digest(&config_a)},
            {"mediaType": OCI_MANIFEST, "size": layer_a.len(), "digest": sha256_digest(&layer_a)},
        ],
        "subject": subject_desc,
        "annotations": {ANNOTATION: "test index"},
    }))
    .unwrap();
    let d = put_digest(c, OCI_INDEX, &index).await;
    annotations.insert(d.clone(), "test index".to_owned());
    expected.insert(
        d,
        (
            Some(TYPE_INDEX.to_owned()),
            OCI_INDEX.to_owned(),
            index.len(),
        ),
    );

    // Blob B arrives after the subject, as in the suite.
    let blob_b_digest = c.push_blob(REPO, blob_b).await;
    let config_b = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": TYPE_B, "size": blob_b.len(), "digest": blob_b_digest},
        "subject": subject_desc,
        "layers": [empty],
        "annotations": {ANNOTATION: "test config b"},
    }))
    .unwrap();
    let d = put_digest(c, OCI_MANIFEST, &config_b).await;
    annotations.insert(d.clone(), "test config b".to_owned());
    expected.insert(
        d,
        (
            Some(TYPE_B.to_owned()),
            OCI_MANIFEST.to_owned(),
            config_b.len(),
        ),
    );

    let layer_b = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": TYPE_B,
        "config": empty,
        "subject": subject_desc,
        "layers": [{"mediaType": TYPE_B, "size": blob_b.len(), "digest": blob_b_digest}],
        "annotations": {ANNOTATION: "test layer b"},
    }))
    .unwrap();
    let d = put_digest(c, OCI_MANIFEST, &layer_b).await;
    annotations.insert(d.clone(), "test layer b".to_owned());
    expected.insert(
        d,
        (
            Some(TYPE_B.to_owned()),
            OCI_MANIFEST.to_owned(),
            layer_b.len(),
        ),
    );

    let layer_c = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": TYPE_B,
        "config": empty,
        "subject": dangling_desc,
        "layers": [{"mediaType": TYPE_B, "size": blob_b.len(), "digest": blob_b_digest}],
    }))
    .unwrap();
    let r = c
        .put(&format!("/v2/{REPO}/manifests/{}", sha256_digest(&layer_c)))
        .header("content-type", OCI_MANIFEST)
        .body(layer_c.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"].to_str().unwrap(), never_pushed);

    Referrers {
        subject,
        dangling_subject: never_pushed,
        dangling_referrer: sha256_digest(&layer_c),
        annotations,
        expected,
    }
}

async fn get_referrers(
    c: &Client,
    name: &str,
    digest: &str,
    query: &str,
) -> (reqwest::header::HeaderMap, Vec<Value>) {
    let r = c
        .get(&format!("/v2/{name}/referrers/{digest}{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), OCI_INDEX);
    let headers = r.headers().clone();
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    (
        headers,
        index["manifests"]
            .as_array()
            .expect("manifests array")
            .clone(),
    )
}

/// "GET request to nonexistent blob should result in empty 200 response".
#[tokio::test]
async fn referrers_of_unknown_digest_is_an_empty_index() {
    let s = TestServer::start().await;
    let c = s.client();
    references_setup(&c).await;
    let (_, manifests) = get_referrers(&c, REPO, DUMMY_DIGEST, "").await;
    assert!(manifests.is_empty());
}

#[tokio::test]
async fn referrers_in_an_unknown_repository_is_not_an_error() {
    let s = TestServer::start().await;
    let r = s
        .client()
        .get(&format!("/v2/never/pushed/referrers/{DUMMY_DIGEST}"))
        .send()
        .await
        .unwrap();
    // "A registry that supports the referrers API MUST NOT return 404" for
    // a repository that exists; for one that does not, 404 is allowed.
    let status = r.status().as_u16();
    assert!(status == 200 || status == 404, "{status}");
}

/// "GET request to existing blob should yield 200": five descriptors, each
/// with its annotations, artifactType, mediaType and size.
#[tokio::test]
async fn referrers_list_every_manifest_with_that_subject() {
    let s = TestServer::start().await;
    let c = s.client();
    let refs = references_setup(&c).await;
    let (headers, manifests) = get_referrers(&c, REPO, &refs.subject, "").await;
    assert!(headers.get("oci-filters-applied").is_none());
    assert_eq!(manifests.len(), 5, "{manifests:#?}");
    let mut digests: Vec<String> = Vec::new();
    for d in &manifests {
        let digest = d["digest"].as_str().unwrap().to_owned();
        let (artifact_type, media_type, size) = &refs.expected[&digest];
        assert_eq!(d["mediaType"].as_str(), Some(media_type.as_str()), "{d}");
        assert_eq!(d["size"].as_u64(), Some(*size as u64), "{d}");
        assert_eq!(d["artifactType"].as_str(), artifact_type.as_deref(), "{d}");
        let annotations = d["annotations"].as_object().expect("annotations");
        assert_eq!(annotations.len(), 1, "{d}");
        assert_eq!(annotations[ANNOTATION], refs.annotations[&digest], "{d}");
        digests.push(digest);
    }
    digests.dedup();
    assert_eq!(digests.len(), 5);
}

/// "GET request to existing blob with filter should yield 200": with the
/// filter applied, `OCI-Filters-Applied: artifactType` and exactly the two
/// descriptors of that type (config-typed and artifactType-typed).
#[tokio::test]
async fn referrers_filtered_by_artifact_type() {
    let s = TestServer::start().await;
    let c = s.client();
    let refs = references_setup(&c).await;
    let (headers, manifests) = get_referrers(
        &c,
        REPO,
        &refs.subject,
        &format!("?artifactType={}", TYPE_A.replace('/', "%2F")),
    )
    .await;
    assert_eq!(
        headers
            .get("oci-filters-applied")
            .map(|v| v.to_str().unwrap()),
        Some("artifactType")
    );
    assert_eq!(manifests.len(), 2, "{manifests:#?}");
    for d in &manifests {
        assert_eq!(d["artifactType"], TYPE_A);
        let digest = d["digest"].as_str().unwrap();
        assert_eq!(d["annotations"][ANNOTATION], refs.annotations[digest]);
    }
    // The index's own artifactType filters too.
    let (_, manifests) = get_referrers(
        &c,
        REPO,
        &refs.subject,
        &format!("?artifactType={TYPE_INDEX}"),
    )
    .await;
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["mediaType"], OCI_INDEX);
    // A type nobody has: an empty, filtered list.
    let (headers, manifests) =
        get_referrers(&c, REPO, &refs.subject, "?artifactType=application/x-none").await;
    assert!(manifests.is_empty());
    assert_eq!(headers["oci-filters-applied"], "artifactType");
}

/// "GET request to missing manifest should yield 200": the referrer of a
/// subject that was never pushed is listed.
#[tokio::test]
async fn referrers_of_a_dangling_subject_are_listed() {
    let s = TestServer::start().await;
    let c = s.client();
    let refs = references_setup(&c).await;
    let (_, manifests) = get_referrers(&c, REPO, &refs.dangling_subject, "").await;
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], refs.dangling_referrer);
    assert_eq!(manifests[0]["artifactType"], TYPE_B);
    assert!(manifests[0]
        .get("annotations")
        .is_none_or(|a| a.as_object().is_some_and(|m| m.is_empty())));
}

/// "If the referenced index has no `artifactType`, the descriptor's
/// `artifactType` MUST be omitted."
#[tokio::test]
async fn referrer_index_without_artifact_type_has_none_in_its_descriptor() {
    let s = TestServer::start().await;
    let c = s.client();
    let (subject, subject_bytes) = c.push_image(REPO, "v1", &[b"s"]).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()},
    }))
    .unwrap();
    let digest = put_digest(&c, OCI_INDEX, &index).await;
    let (_, manifests) = get_referrers(&c, REPO, &subject, "").await;
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], digest);
    assert!(
        manifests[0].get("artifactType").is_none(),
        "{}",
        manifests[0]
    );
}

#[tokio::test]
async fn referrers_are_scoped_to_the_repository() {
    let s = TestServer::start().await;
    let c = s.client();
    let refs = references_setup(&c).await;
    let (_, manifests) = get_referrers(&c, "conformance/elsewhere", &refs.subject, "").await;
    assert!(manifests.is_empty(), "{manifests:?}");
}

#[tokio::test]
async fn referrers_with_an_invalid_digest_is_400() {
    let s = TestServer::start().await;
    let c = s.client();
    references_setup(&c).await;
    for bad in ["sha256:totallywrong", "latest", "sha256:ZZZZ"] {
        let r = c
            .get(&format!("/v2/{REPO}/referrers/{bad}"))
            .send()
            .await
            .unwrap();
        let code = expect_error(r, 400).await;
        assert_eq!(code, "DIGEST_INVALID", "{bad}");
    }
}

/// A referrer that is deleted leaves the list.
#[tokio::test]
async fn deleted_referrer_leaves_the_referrers_list() {
    let s = TestServer::start().await;
    let c = s.client();
    let refs = references_setup(&c).await;
    let victim = refs.expected.keys().next().unwrap().clone();
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{victim}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, manifests) = get_referrers(&c, REPO, &refs.subject, "").await;
    assert_eq!(manifests.len(), 4);
    assert!(manifests.iter().all(|d| d["digest"] != victim.as_str()));
}

/// Referrers survive the deletion of their subject (they were allowed to
/// exist before it, too).
#[tokio::test]
async fn referrers_outlive_their_subject() {
    let s = TestServer::start().await;
    let c = s.client();
    let refs = references_setup(&c).await;
    let r = c
        .delete(&format!("/v2/{REPO}/manifests/{}", refs.subject))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, manifests) = get_referrers(&c, REPO, &refs.subject, "").await;
    assert_eq!(manifests.len(), 5);
}

/// Media types often carry `+json`; percent-encoded, `+` is a plus.
#[tokio::test]
async fn referrers_filter_with_plus_in_artifact_type() {
    let s = TestServer::start().await;
    let c = s.client();
    let (subject, subject_bytes) = c.push_image(REPO, "v1", &[b"s"]).await;
    assert_eq!(c.push_blob(REPO, b"{}").await, EMPTY_JSON_DIGEST);
    let sbom_type = "application/vnd.cyclonedx+json";
    let sbom = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": sbom_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()},
    }))
    .unwrap();
    let digest = put_digest(&c, OCI_MANIFEST, &sbom).await;
    let (headers, manifests) = get_referrers(
        &c,
        REPO,
        &subject,
        "?artifactType=application%2Fvnd.cyclonedx%2Bjson",
    )
    .await;
    assert_eq!(headers["oci-filters-applied"], "artifactType");
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert_eq!(manifests[0]["digest"], digest);
    assert_eq!(manifests[0]["artifactType"], sbom_type);
}

/// The state a crash leaves between the two writes that make a tag (its
/// history entry `index/<alg>/<hex>/link`, then `current/link`), or in the
/// middle of deleting one: a tag directory without `current/link`. Such a
/// tag cannot be pulled, so it must not be listed either ("a crash at any
/// point leaves ... no dangling tag").
#[tokio::test]
async fn tag_without_current_link_is_not_listed() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, _) = c.push_image(REPO, "v1", &[b"l"]).await;
    let hex = digest.strip_prefix("sha256:").unwrap();
    s.plant(
        &format!(
            "docker/registry/v2/repositories/{REPO}/_manifests/tags/ghost/index/sha256/{hex}/link"
        ),
        digest.as_bytes(),
    )
    .await;
    let r = c.get_manifest(REPO, "ghost").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (_, body) = get_json(&c, &format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(
        strings(&body["tags"]),
        ["v1"],
        "a tag that cannot be pulled is listed"
    );
}

/// Security review, item 7: the referrers list was one response of every
/// referrer's descriptor and annotations (10 × 512 KiB of annotations: a
/// 5.2 MiB response, built several times over). It comes in pages bounded
/// in count and bytes, each naming the next with `Link`, as the spec
/// allows; following them lists every referrer once.
#[tokio::test]
async fn referrers_come_in_pages_bounded_in_count_and_bytes() {
    let s = TestServer::start().await;
    let c = s.client();
    let name = "conformance/many-referrers";
    assert_eq!(c.push_blob(name, b"{}").await, EMPTY_JSON_DIGEST);
    let (subject, subject_bytes) = c.push_image(name, "v1", &[b"subject layer"]).await;
    let empty = json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2});
    let referrer = |i: usize, note: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": TYPE_A,
            "config": empty, "layers": [empty],
            "subject": {"mediaType": OCI_MANIFEST, "size": subject_bytes.len(), "digest": subject},
            "annotations": {ANNOTATION: format!("{i} {note}")},
        }))
        .unwrap()
    };
    let big = "x".repeat(512 << 10);
    // Pushed 16 at a time. The S3 rerun (moto, a Python process) takes
    // 300 small ones: 1,000 took a minute and a half there; the pages'
    // bounds are the same on both backends.
    use futures::StreamExt;
    let small = if support::storage_is_s3() { 300 } else { 1000 };
    let pushed: std::collections::BTreeSet<String> = futures::stream::iter(0..10 + small)
        .map(|i| {
            let body = referrer(i, if i < 10 { &big } else { "" });
            let c = &c;
            async move {
                let digest = sha256_digest(&body);
                let r = c
                    .put(&format!("/v2/{name}/manifests/{digest}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                digest
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for query in ["", "?artifactType=application/vnd.nhl.peanut.butter.bagel"] {
        let mut seen = std::collections::BTreeSet::new();
        let mut next = Some(format!("/v2/{name}/referrers/{subject}{query}"));
        let mut pages = 0;
        while let Some(path) = next.take() {
            let r = c.get(&path).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap();
            assert!(
                body.len() < (2 << 20),
                "{path}: a page of {} bytes",
                body.len()
            );
            let index: Value = serde_json::from_slice(&body).unwrap();
            let page = index["manifests"].as_array().unwrap();
            assert!(
                !page.is_empty() && page.len() <= 256,
                "{} entries",
                page.len()
            );
            for d in page {
                assert!(
                    seen.insert(d["digest"].as_str().unwrap().to_owned()),
                    "{d} twice"
                );
            }
            next = next_link(&headers);
            pages += 1;
        }
        assert_eq!(seen, pushed, "every referrer, once ({query})");
        assert!(pages >= 5, "{pages} pages");
    }
    // A `last` that is no digest is the client's error.
    let r = c
        .get(&format!("/v2/{name}/referrers/{subject}?last=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(r, 400).await, "DIGEST_INVALID");
}

/// Referrers of a sha512 manifest (distribution-spec main: digests other
/// than sha256 end to end): a referrer whose subject is a sha512 digest is
/// listed under it, and a sha512 referrer is listed under its own digest.
#[tokio::test]
async fn referrers_of_a_sha512_subject_are_listed() {
    use sha2::Digest as _;
    let sha512 = |b: &[u8]| format!("sha512:{}", hex::encode(sha2::Sha512::digest(b)));
    let s = TestServer::start().await;
    let c = s.client();
    c.push_blob(REPO, b"{}").await;
    let subject = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": TYPE_A,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2}],
    }))
    .unwrap();
    let subject_digest = sha512(&subject);
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": TYPE_B,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len()},
    }))
    .unwrap();
    let referrer_digest = sha512(&referrer);
    for (body, digest) in [(&subject, &subject_digest), (&referrer, &referrer_digest)] {
        let r = c
            .put(&format!(
                "/v2/{REPO}/manifests/{digest}?tag=t{}",
                &digest[7..15]
            ))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let (_, manifests) = get_referrers(&c, REPO, &subject_digest, "").await;
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert_eq!(manifests[0]["digest"], referrer_digest.as_str());
    assert_eq!(manifests[0]["size"], referrer.len());
    assert_eq!(manifests[0]["artifactType"], TYPE_B);
    let (_, filtered) = get_referrers(
        &c,
        REPO,
        &subject_digest,
        &format!("?artifactType={TYPE_B}"),
    )
    .await;
    assert_eq!(filtered.len(), 1);
}
