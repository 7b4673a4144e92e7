//! The pull-through cache against real upstreams: Debian's docker-registry
//! (htpasswd, access log counted), and this registry in token mode (the
//! Docker Hub flow). A TCP relay in front of the upstream paces its bytes,
//! so that a fetch is still running while clients read.

use crate::support;
use crate::support::distribution;
use crate::support::oci_layout;
use crate::support::skopeo;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distribution::DockerRegistry;
use oci_layout::pseudo_random;
use registry::config::{AclAction, AclConfig, AuthMode, Config, ProxyUpstream, RuleConfig};
use serde_json::json;
use support::{blob_file, error_code, sha256_digest, Client, TestServer, Upload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UP_USER: &str = "mirror";
const UP_PASSWORD: &str = "mirror-pw";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// docker-registry with htpasswd auth and its access log on.
async fn htpasswd_upstream(dir: &Path) -> DockerRegistry {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!(
            "{UP_USER}:{}\n",
            htpasswd::hash_bcrypt(UP_PASSWORD, 4).unwrap()
        ),
    )
    .unwrap();
    let storage = format!(
        "  filesystem:\n    rootdirectory: {}\n",
        dir.join("data").display()
    );
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
        htpasswd.display()
    );
    DockerRegistry::start_logged(&storage, &auth).await
}

fn upstream_client(up: &DockerRegistry) -> Client {
    Client {
        http: reqwest::Client::new(),
        base: up.base.clone(),
        auth: Some((UP_USER.into(), UP_PASSWORD.into())),
    }
}

/// An image of a config and `layers`, tagged `tag`; (manifest digest,
/// manifest bytes, blob digests).
async fn push_image(
    c: &Client,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
) -> (String, Vec<u8>, Vec<String>) {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"tag\":\"{tag}\"}}");
    let config_digest = c
        .push_blob_by(repo, config.as_bytes(), Upload::PostPut)
        .await;
    let mut blobs = vec![config_digest.clone()];
    let mut descriptors = Vec::new();
    for l in layers {
        let d = c.push_blob_by(repo, l, Upload::PostPut).await;
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d, "size": l.len(),
        }));
        blobs.push(d);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config.len(),
        },
        "layers": descriptors,
    }))
    .unwrap();
    let digest = c.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    (digest, manifest, blobs)
}

async fn fetch_manifest(c: &Client, method: reqwest::Method, path: &str) -> reqwest::Response {
    c.request(method, path)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
}

async fn get(c: &Client, path: &str) -> reqwest::Response {
    c.get(path).send().await.unwrap()
}

fn upstream(prefix: &str, url: &str, tag_ttl: Duration) -> ProxyUpstream {
    ProxyUpstream {
        prefix: prefix.into(),
        url: url.into(),
        username: Some(UP_USER.into()),
        password: Some(UP_PASSWORD.into()),
        tag_ttl: Some(tag_ttl),
        ..Default::default()
    }
}

async fn proxy_with(upstreams: Vec<ProxyUpstream>, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.proxy.upstreams = upstreams;
        c.metrics.addr = Some("127.0.0.1:0".into());
        adjust(c);
    })
    .await
}

/// A cache of `url` under the prefix `up`, tags cached for a minute.
async fn proxy_of(url: &str) -> TestServer {
    proxy_with(vec![upstream("up", url, Duration::from_secs(60))], |_| {}).await
}

/// A cache of `up` through a [`Relay`] that paces the upstream's bytes.
async fn slow_proxy(
    up: &DockerRegistry,
    piece: usize,
    pause: Duration,
    mark: u64,
) -> (Relay, TestServer) {
    let target = up.base.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(target, piece, pause, mark).await;
    let s = proxy_of(&relay.url()).await;
    (relay, s)
}

/// `registry_proxy_<name>_total{upstream="up"}`, and the whole exposition.
async fn proxy_metric(s: &TestServer, name: &str) -> (u64, String) {
    let text = s.metrics_text().await;
    let value = metric(
        &text,
        &format!("registry_proxy_{name}_total{{upstream=\"up\"}}"),
    );
    (value, text)
}

fn metric(text: &str, series: &str) -> u64 {
    support::sample(text, series).map_or(0, |v| v as u64)
}

/// A TCP relay to `target` that passes the upstream's bytes on in pieces of
/// `piece` bytes, one every `pause`: a slow upstream. It records when it has
/// passed on `mark` bytes in all (the upstream finished sending the blob).
struct Relay {
    addr: SocketAddr,
    passed_mark: Arc<Mutex<Option<Instant>>>,
    /// Bytes to flip at this offset of the upstream's stream (a lying upstream).
    _task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr, piece: usize, pause: Duration, mark: u64) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let passed = Arc::new(AtomicU64::new(0));
        let passed_mark = Arc::new(Mutex::new(None));
        let mark_at = passed_mark.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let passed = passed.clone();
                let mark_at = mark_at.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        let _ = sw.shutdown().await;
                    });
                    let mut buf = vec![0u8; piece];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let total = passed.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        if total >= mark {
                            mark_at.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                        tokio::time::sleep(pause).await;
                    }
                });
            }
        });
        Relay {
            addr,
            passed_mark,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[tokio::test]
async fn fifty_concurrent_cold_pulls_make_one_upstream_get_and_stream_to_all() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let size = 64 << 20;
    let data = Arc::new(pseudo_random(7, size));
    let digest = upstream_client(&up)
        .push_blob_by("big/blob", &data, Upload::PostPut)
        .await;
    // 256 KiB every 10 ms: the 64 MiB take about 2.6 s to arrive.
    let (relay, s) = slow_proxy(&up, 256 << 10, Duration::from_millis(10), size as u64).await;
    let path = format!("/v2/up/big/blob/blobs/{digest}");

    let mut clients = Vec::new();
    for _ in 0..50 {
        let c = s.client();
        let path = path.clone();
        let data = data.clone();
        clients.push(tokio::spawn(async move {
            let mut r = get(&c, &path).await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.content_length(), Some(64 << 20));
            let mut first = None;
            let mut n = 0;
            let mut same = true;
            while let Some(chunk) = r.chunk().await.unwrap() {
                first.get_or_insert_with(Instant::now);
                same &= data.get(n..n + chunk.len()) == Some(&chunk[..]);
                n += chunk.len();
            }
            (first.unwrap(), same, n)
        }));
    }
    // A ranged read of the blob while it arrives (a resumed pull).
    let ranged = s
        .client()
        .get(&path)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 1000-1999/{size}").as_str()
    );
    assert_eq!(&ranged.bytes().await.unwrap()[..], &data[1000..2000]);

    let mut firsts = Vec::new();
    for c in clients {
        let (first, same, n) = c.await.unwrap();
        assert_eq!(n, size);
        assert!(same, "every client gets the blob's bytes");
        firsts.push(first);
    }
    let upstream_done = relay
        .passed_mark
        .lock()
        .unwrap()
        .expect("upstream finished");
    let late = firsts.iter().filter(|f| **f >= upstream_done).count();
    assert_eq!(
        late, 0,
        "every client had its first byte before the upstream finished"
    );
    let blob_path = format!("/v2/big/blob/blobs/{digest}");
    assert_eq!(
        up.requests("GET", &blob_path, None),
        1,
        "exactly one upstream GET: {}",
        up.log_text()
    );
    assert!(blob_file(&s.storage_root(), &digest).exists(), "cached");

    // Cached: no upstream request at all.
    let r = get(&s.client(), &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), size);
    assert_eq!(up.requests("GET", &blob_path, None), 1);
    for (name, low, high) in [
        ("misses", 1, 1),
        ("coalesced", 40, 50),
        ("upstream_bytes", size as u64, size as u64),
    ] {
        let (v, m) = proxy_metric(&s, name).await;
        assert!((low..=high).contains(&v), "{name} = {v}: {m}");
    }
}

#[tokio::test]
async fn tags_digests_ttl_pushes_and_a_stopped_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let uc = upstream_client(&up);
    let layers = vec![pseudo_random(1, 300_000), pseudo_random(2, 5000)];
    let (digest, manifest, blobs) = push_image(&uc, "team/app", "v1", &layers).await;
    let ttl = Duration::from_secs(2);
    let s = proxy_with(vec![upstream("up", &up.base, ttl)], |_| {}).await;
    let c = s.client();
    let manifest_path = "/v2/up/team/app/manifests/v1";
    let pulled = Instant::now();

    // First pull: plain HTTP, as a client does it.
    let r = fetch_manifest(&c, reqwest::Method::GET, manifest_path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), manifest);
    // The tag was confirmed upstream before this instant.
    let confirmed = Instant::now();
    for (d, want) in blobs.iter().skip(1).zip(&layers) {
        let r = get(&c, &format!("/v2/up/team/app/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], &want[..]);
    }
    let upstream_requests =
        || up.requests("GET", "/v2/team/app/", None) + up.requests("HEAD", "/v2/team/app/", None);
    let after_first = upstream_requests();
    assert_eq!(
        up.requests("GET", "/v2/team/app/manifests/v1", None),
        1,
        "{}",
        up.log_text()
    );

    // Within the TTL: the tag, the manifest by digest, the blobs: no
    // upstream request.
    let r = fetch_manifest(&c, reqwest::Method::HEAD, manifest_path).await;
    assert_eq!(r.status(), 200);
    let r = fetch_manifest(
        &c,
        reqwest::Method::GET,
        &format!("/v2/up/team/app/manifests/{digest}"),
    )
    .await;
    assert_eq!(r.bytes().await.unwrap(), manifest);
    for d in &blobs[1..] {
        let r = get(&c, &format!("/v2/up/team/app/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
    }
    assert!(
        pulled.elapsed() < ttl,
        "the checks above ran within the TTL"
    );
    assert_eq!(upstream_requests(), after_first, "{}", up.log_text());

    // After the TTL: exactly one HEAD, no GET.
    tokio::time::sleep(ttl.saturating_sub(confirmed.elapsed()) + Duration::from_millis(100)).await;
    for _ in 0..3 {
        let r = fetch_manifest(&c, reqwest::Method::GET, manifest_path).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(up.requests("HEAD", "/v2/team/app/manifests/v1", None), 1);
    assert_eq!(upstream_requests(), after_first + 1);

    // Pushes into the proxied prefix are refused, naming it.
    let r = c
        .post("/v2/up/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"up\""),
        "{body}"
    );
    // Hosted repositories live beside it.
    c.push_image("hosted/app", "v1", &[b"hosted layer"]).await;

    // The tag list comes from the upstream, under the client's name.
    let (_, _, _) = push_image(&uc, "team/app", "v2", &[pseudo_random(3, 1000)]).await;
    let r = get(&c, "/v2/up/team/app/tags/list").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, json!({"name": "up/team/app", "tags": ["v1", "v2"]}));

    // Upstream stopped: what is cached still pulls (the tag stale), what is
    // not gets a spec error naming the upstream.
    let url = up.base.clone();
    drop(up);
    tokio::time::sleep(ttl).await;
    let r = fetch_manifest(&c, reqwest::Method::GET, manifest_path).await;
    assert_eq!(r.status(), 200, "stale-if-error");
    assert_eq!(r.bytes().await.unwrap(), manifest);
    let r = get(&c, &format!("/v2/up/team/app/blobs/{}", blobs[1])).await;
    assert_eq!(&r.bytes().await.unwrap()[..], &layers[0][..]);
    for path in [
        "/v2/up/team/app/manifests/v2".to_owned(),
        format!("/v2/up/team/app/blobs/{}", sha256_digest(b"never pushed")),
    ] {
        let r = fetch_manifest(&c, reqwest::Method::GET, &path).await;
        assert_eq!(r.status(), 502, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
        // The prefix, not the upstream's URL (logged with the request id).
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("the upstream of up cannot serve this request")
                && message.contains("request id")
                && !message.contains(&url),
            "{body}"
        );
    }
    let (stale, m) = proxy_metric(&s, "stale").await;
    assert_eq!(stale, 1, "{m}");
    let (errors, m) = proxy_metric(&s, "upstream_errors").await;
    assert!(errors >= 3, "{m}");
}

#[tokio::test]
async fn a_lying_upstream_is_never_cached_and_its_clients_fail() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let data = pseudo_random(9, 3 << 20);
    let digest = upstream_client(&up)
        .push_blob_by("lies/here", &data, Upload::PostPut)
        .await;
    // The upstream's stored bytes change under it: it serves other bytes
    // for the digest.
    let file = blob_file(&dir.path().join("data"), &digest);
    std::fs::write(&file, pseudo_random(10, 3 << 20)).unwrap();
    let s = proxy_of(&up.base).await;
    let path = format!("/v2/up/lies/here/blobs/{digest}");
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            let c = s.client();
            let path = path.clone();
            tokio::spawn(async move {
                let r = get(&c, &path).await;
                assert_eq!(r.status(), 200);
                r.bytes().await
            })
        })
        .collect();
    for p in pulls {
        let result = p.await.unwrap();
        assert!(
            result.is_err(),
            "the body is aborted, not completed: {:?}",
            result.map(|b| b.len())
        );
    }
    assert!(
        !blob_file(&s.storage_root(), &digest).exists(),
        "not cached"
    );
    // Not cached: the next pull asks again (and fails again).
    let r = get(&s.client(), &path).await;
    assert!(r.bytes().await.is_err());
    assert!(up.requests("GET", "/v2/lies/here/blobs/", None) >= 2);
    assert!(!blob_file(&s.storage_root(), &digest).exists());
}

#[tokio::test]
async fn restart_mid_fetch_leaves_no_partial_blob() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let size = 8 << 20;
    let data = pseudo_random(11, size);
    let digest = upstream_client(&up)
        .push_blob_by("slow/blob", &data, Upload::PostPut)
        .await;
    // 64 KiB every 20 ms: 2.6 s for the blob.
    let (_relay, s) = slow_proxy(&up, 64 << 10, Duration::from_millis(20), u64::MAX).await;
    let path = format!("/v2/up/slow/blob/blobs/{digest}");
    let mut r = get(&s.client(), &path).await;
    assert_eq!(r.status(), 200);
    assert!(!r.chunk().await.unwrap().unwrap().is_empty());
    drop(r);
    let s = s.restart().await;
    assert!(
        !blob_file(&s.storage_root(), &digest).exists(),
        "no partial blob"
    );
    let r = s.client().head(&path).send().await.unwrap();
    assert_eq!(r.status(), 200, "HEAD asks the upstream");
    let r = get(&s.client(), &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_digest(&r.bytes().await.unwrap()), digest);
    assert!(
        blob_file(&s.storage_root(), &digest).exists(),
        "fetched again, cached"
    );
    assert!(up.requests("GET", &format!("/v2/slow/blob/blobs/{digest}"), None) >= 1);
}

/// This registry in token mode as the upstream, anonymous pulls allowed:
/// the flow Docker Hub runs. The cache has no credentials; Docker Engine's
/// `registry-mirrors` form (no prefix, `library/` added) and containerd's
/// `?ns=` reach the same cached repository.
#[tokio::test]
async fn token_upstream_anonymous_flow_mirror_and_ns() {
    let mut hub = TestServer::start().await;
    let (digest, manifest) = hub
        .client()
        .push_image("library/alpine", "latest", &[b"alpine layer"])
        .await;
    let layer = sha256_digest(b"alpine layer");
    // A signature of it (a referrer, OCI 1.1).
    let empty = hub.client().push_blob("library/alpine", b"{}").await;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len()},
    }))
    .unwrap();
    let sig_digest = sha256_digest(&sig);
    hub.client()
        .push_manifest("library/alpine", &sig_digest, OCI_MANIFEST, &sig)
        .await;
    hub.config.auth.mode = AuthMode::Token;
    hub.config.auth.token.signing_key = hub.dir().join("token-key.pem");
    // Anonymous pulls of library/** only, as Docker Hub serves public images.
    hub.config.acl = Some(AclConfig {
        default: vec![AclAction::Pull, AclAction::Push, AclAction::Delete],
        rules: vec![RuleConfig {
            repository: "library/**".into(),
            pull: vec!["*".into()],
            anonymous: vec![AclAction::Pull],
            ..Default::default()
        }],
        ..Default::default()
    });
    let hub = hub.restart().await;
    // Anonymous requests get a Bearer challenge.
    let r = get(&hub.anonymous(), "/v2/library/alpine/manifests/latest").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer "));

    let s = proxy_with(
        vec![ProxyUpstream {
            prefix: "hub".into(),
            url: hub.base.clone(),
            library: true,
            docker_mirror: true,
            ..Default::default()
        }],
        |_| {},
    )
    .await;
    let c = s.client();
    let host = hub.addr.to_string();
    for path in [
        // docker pull alpine through registry-mirrors
        "/v2/alpine/manifests/latest".to_owned(),
        "/v2/library/alpine/manifests/latest".to_owned(),
        format!("/v2/library/alpine/manifests/latest?ns={host}"),
        "/v2/library/alpine/manifests/latest?ns=hub".to_owned(),
        "/v2/hub/alpine/manifests/latest".to_owned(),
        format!("/v2/hub/library/alpine/manifests/{digest}"),
    ] {
        let r = fetch_manifest(&c, reqwest::Method::GET, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.bytes().await.unwrap(), manifest, "{path}");
    }
    let r = get(&c, &format!("/v2/library/alpine/blobs/{layer}?ns={host}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"alpine layer");
    // Referrers come from the upstream when asked, then their manifests
    // through the cache.
    let r = get(&c, &format!("/v2/hub/library/alpine/referrers/{digest}")).await;
    assert_eq!(r.status(), 200);
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        sig_digest.as_str(),
        "{index}"
    );
    let r = fetch_manifest(
        &c,
        reqwest::Method::GET,
        &format!("/v2/hub/library/alpine/manifests/{sig_digest}"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), sig);
    // One cached repository.
    assert!(s
        .storage_root()
        .join("docker/registry/v2/repositories/hub/library/alpine/_manifests")
        .exists());
    // Unprefixed names hosted here stay hosted: pushes work, reads are local.
    c.push_image("team/own", "v1", &[b"own layer"]).await;
    let r = fetch_manifest(&c, reqwest::Method::GET, "/v2/team/own/manifests/v1").await;
    assert_eq!(r.status(), 200);
    // An image the upstream does not have: the spec's 404.
    let r = get(&c, "/v2/hub/nothing/manifests/latest").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    // A private repository upstream (its token grants nothing): a 404 that
    // says so, not a gateway error.
    let r = get(&c, "/v2/hub/private/app/manifests/latest").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("denies access"),
        "{body}"
    );
}

/// registry:2's `proxy.remoteurl` as is (variables): every repository
/// mirrors the upstream, pushes are refused.
#[tokio::test]
async fn registry2_remoteurl_mirrors_everything() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let (digest, manifest, _) = push_image(
        &upstream_client(&up),
        "any/repo",
        "1.0",
        &[pseudo_random(4, 999)],
    )
    .await;
    let env = [
        ("REGISTRY_PROXY_REMOTEURL", up.base.as_str()),
        ("REGISTRY_PROXY_USERNAME", UP_USER),
        ("REGISTRY_PROXY_PASSWORD", UP_PASSWORD),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let proxy = Config::load(None, env).unwrap().proxy;
    let s = TestServer::start_with(|c| c.proxy = proxy).await;
    let r = fetch_manifest(
        &s.client(),
        reqwest::Method::GET,
        "/v2/any/repo/manifests/1.0",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), manifest);
    let r = s
        .client()
        .put("/v2/other/manifests/x")
        .header("content-type", OCI_MANIFEST)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("pull-through cache"),
        "{body}"
    );
}

#[tokio::test]
#[ignore = "needs skopeo (scripts/ci-deps.sh)"]
async fn skopeo_copies_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let layers = vec![pseudo_random(5, 100_000), pseudo_random(6, 2000)];
    let (_, _, blobs) = push_image(&upstream_client(&up), "team/tool", "v3", &layers).await;
    let s = proxy_of(&up.base).await;
    let skopeo = skopeo::Skopeo::new();
    let src = format!("docker://{}/up/team/tool:v3", s.addr);
    let creds = format!("{}:{}", support::USER, support::PASSWORD);
    let mut upstream_gets = Vec::new();
    // The second copy is served from the cache: no new upstream GET.
    for run in ["first", "second"] {
        let out = dir.path().join(run);
        // `dir:` keeps blobs as they are (an `oci:` layout would compress them).
        let dst = format!("dir:{}", out.display());
        let args = [
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &src,
            &dst,
        ];
        skopeo.ok(&args).await;
        for d in &blobs {
            let hex = d.strip_prefix("sha256:").unwrap();
            assert!(out.join(hex).exists(), "{run} copy: {d}");
        }
        upstream_gets.push(up.requests("GET", "/v2/team/tool/", None));
    }
    assert_eq!(upstream_gets[0], upstream_gets[1], "{}", up.log_text());
    assert!(
        upstream_gets[0] >= 3,
        "manifest, config and layers came from upstream"
    );
}

/// An upstream that rate-limits (this registry throttling failed logins,
/// with Retry-After): the 429 and its Retry-After reach the client, and no
/// request reaches the upstream again before it allows.
#[tokio::test]
async fn upstream_429_is_passed_on_and_not_retried() {
    let up = TestServer::start_with(|c| {
        c.auth.htpasswd.max_failures_per_minute = 2;
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await;
    let s = proxy_with(
        vec![ProxyUpstream {
            password: Some("wrong".into()),
            ..upstream("up", &up.base, Duration::from_secs(60))
        }],
        |_| {},
    )
    .await;
    let c = s.client();
    // Two failed logins (Basic, then Basic again after the challenge).
    let r = fetch_manifest(&c, reqwest::Method::GET, "/v2/up/a/manifests/v1").await;
    assert_eq!(r.status(), 502);
    // Which credentials failed is the operator's to read, in the log.
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("the upstream of up cannot serve this request"));
    let upstream_429s = || async {
        let text = up.metrics_text().await;
        metric(
            &text,
            "registry_http_requests_total{method=\"GET\",route=\"manifest\",status=\"429\"}",
        )
    };
    for _ in 0..10 {
        let r = fetch_manifest(&c, reqwest::Method::GET, "/v2/up/a/manifests/v1").await;
        assert_eq!(r.status(), 429);
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    }
    assert_eq!(
        upstream_429s().await,
        1,
        "one 429 upstream, then no request"
    );
}

/// `proxy.ttl`: a tag nobody pulls is removed from the cache, and `gc`
/// then removes its content; a tag that is pulled stays.
#[tokio::test]
async fn tags_not_pulled_within_ttl_are_evicted_and_gc_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let uc = upstream_client(&up);
    let (_, _, kept_blobs) = push_image(&uc, "team/app", "kept", &[pseudo_random(20, 4000)]).await;
    let (_, _, gone_blobs) = push_image(&uc, "team/app", "gone", &[pseudo_random(21, 4000)]).await;
    let ttl = Duration::from_secs(2);
    let s = proxy_with(
        vec![upstream("up", &up.base, Duration::from_secs(60))],
        |c| {
            c.proxy.ttl = ttl;
        },
    )
    .await;
    let c = s.client();
    for (tag, blobs) in [("kept", &kept_blobs), ("gone", &gone_blobs)] {
        let r = fetch_manifest(
            &c,
            reqwest::Method::GET,
            &format!("/v2/up/team/app/manifests/{tag}"),
        )
        .await;
        assert_eq!(r.status(), 200);
        for d in blobs {
            assert_eq!(
                get(&c, &format!("/v2/up/team/app/blobs/{d}"))
                    .await
                    .status(),
                200
            );
        }
    }
    let tag_link = |tag: &str| {
        s.storage_root().join(format!(
            "docker/registry/v2/repositories/up/team/app/_manifests/tags/{tag}/current/link"
        ))
    };
    assert!(tag_link("gone").exists());
    // "kept" is pulled every 200 ms; "gone" is not pulled again. The
    // eviction is over when it is counted: the link goes first, so waiting
    // on the file alone races the counter.
    let deadline = Instant::now() + ttl * 3;
    while proxy_metric(&s, "evicted").await.0 == 0 {
        assert!(
            Instant::now() < deadline,
            "the unpulled tag was not evicted"
        );
        let r = fetch_manifest(&c, reqwest::Method::HEAD, "/v2/up/team/app/manifests/kept").await;
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!tag_link("gone").exists(), "the unpulled tag is evicted");
    assert!(tag_link("kept").exists(), "a pulled tag stays");
    let (evicted, m) = proxy_metric(&s, "evicted").await;
    assert_eq!(evicted, 1, "{m}");
    // gc (deleting untagged manifests) removes what only the evicted tag held.
    support::gc_untagged(&s).await;
    for d in &kept_blobs {
        assert!(blob_file(&s.storage_root(), d).exists(), "kept: {d}");
    }
    for d in &gone_blobs {
        assert!(!blob_file(&s.storage_root(), d).exists(), "removed: {d}");
    }
    // Evicted is not lost: the next pull fetches it again.
    let r = fetch_manifest(&c, reqwest::Method::GET, "/v2/up/team/app/manifests/gone").await;
    assert_eq!(r.status(), 200);
}

/// Pull times survive a restart: a tag pulled before it expires on its own
/// schedule, not as if it had been pulled when the server came back (the
/// order `max_bytes` evicts in comes from the same record).
#[tokio::test]
async fn pull_times_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let uc = upstream_client(&up);
    push_image(&uc, "team/app", "before", &[pseudo_random(22, 3000)]).await;
    push_image(&uc, "team/app", "after", &[pseudo_random(23, 3000)]).await;
    let ttl = Duration::from_secs(4);
    let s = proxy_with(
        vec![upstream("up", &up.base, Duration::from_secs(60))],
        |c| c.proxy.ttl = ttl,
    )
    .await;
    let pull = |s: &TestServer, tag: &'static str| {
        let c = s.client();
        async move {
            let path = format!("/v2/up/team/app/manifests/{tag}");
            let r = fetch_manifest(&c, reqwest::Method::GET, &path).await;
            assert_eq!(r.status(), 200, "{tag}");
        }
    };
    let pulled = Instant::now();
    let pulled_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    pull(&s, "before").await;
    // Recorded within a quarter of the ttl, not per pull.
    let record_file = s
        .storage_root()
        .join("docker/registry/v2/_pulls/up/team/app/_pulls.json");
    let record = || -> serde_json::Value {
        std::fs::read(&record_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    while record()["before"].is_null() {
        assert!(pulled.elapsed() < ttl / 2, "no pull record written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = record()["before"].as_u64().unwrap();
    assert!(
        at.abs_diff(pulled_at) <= 2,
        "recorded {at}, pulled {pulled_at}"
    );

    let s = s.restart().await;
    tokio::time::sleep_until((pulled + ttl / 2).into()).await;
    pull(&s, "after").await;
    let tag_link = |tag: &str| {
        s.storage_root().join(format!(
            "docker/registry/v2/repositories/up/team/app/_manifests/tags/{tag}/current/link"
        ))
    };
    // Counted from its pull, "before" expires half a ttl ahead of "after";
    // counted from the restart it would go in the same sweep or later.
    while tag_link("before").exists() {
        assert!(
            pulled.elapsed() < ttl * 2,
            "the tag pulled before the restart was not evicted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tag_link("after").exists(),
        "evicted together: the restart forgot when \"before\" was pulled"
    );
    // The evicted tag leaves the record with the next batch; a tag still
    // cached stays. "after" is pulled again first, so it cannot expire (a
    // ttl from now) while the batch is awaited on a loaded machine: the
    // record is read once per check, so both facts come from one version.
    pull(&s, "after").await;
    let refreshed = Instant::now();
    loop {
        let r = record();
        if r["before"].is_null() {
            assert!(!r["after"].is_null(), "{r}");
            break;
        }
        assert!(refreshed.elapsed() < ttl, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `max_bytes`: past the cap, the least recently pulled tags leave the
/// cache (a tag pulled again is newer than one pulled once), never more than
/// needed, and gc then frees exactly their blobs.
#[tokio::test]
async fn a_size_capped_cache_drops_the_least_recently_pulled_tags() {
    let dir = tempfile::tempdir().unwrap();
    let up = htpasswd_upstream(dir.path()).await;
    let uc = upstream_client(&up);
    let mut images = HashMap::new();
    for (i, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let (_, _, blobs) = push_image(
            &uc,
            "team/app",
            tag,
            &[pseudo_random(40 + i as u64, 300_000)],
        )
        .await;
        images.insert(tag, blobs);
    }
    // Two of the three images fit.
    let cap = 700_000;
    let s = proxy_with(
        vec![ProxyUpstream {
            max_bytes: cap,
            ..upstream("up", &up.base, Duration::from_secs(60))
        }],
        |_| {},
    )
    .await;
    let c = s.client();
    let pull = |tag: &'static str| {
        let c = &c;
        let blobs = &images[tag];
        async move {
            let r = fetch_manifest(
                c,
                reqwest::Method::GET,
                &format!("/v2/up/team/app/manifests/{tag}"),
            )
            .await;
            assert_eq!(r.status(), 200);
            for d in blobs {
                let r = get(c, &format!("/v2/up/team/app/blobs/{d}")).await;
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    };
    // a is pulled again after b: b is the least recently pulled when c comes.
    for tag in ["a", "b", "a", "c"] {
        pull(tag).await;
    }
    let tag_link = |tag: &str| {
        s.storage_root().join(format!(
            "docker/registry/v2/repositories/up/team/app/_manifests/tags/{tag}/current/link"
        ))
    };
    // Counted after its link goes: wait on the count, not the file.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy_metric(&s, "evicted").await.0 == 0 {
        assert!(Instant::now() < deadline, "the cap was not enforced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !tag_link("b").exists(),
        "the least recently pulled tag went"
    );
    assert!(
        tag_link("a").exists() && tag_link("c").exists(),
        "only what was needed went"
    );
    let (evicted, m) = proxy_metric(&s, "evicted").await;
    assert_eq!(evicted, 1, "{m}");
    support::gc_untagged(&s).await;
    for (tag, blobs) in &images {
        for d in blobs {
            assert_eq!(
                blob_file(&s.storage_root(), d).exists(),
                *tag != "b",
                "{tag}: {d}"
            );
        }
    }
}

const ALICE: (&str, &str) = ("alice", "alice-pw");
const BOB: (&str, &str) = ("bob", "bob-pw");

/// A proxy of `hub` (this registry, alice's credentials upstream) whose
/// ACL is `acl`, with users alice and bob.
async fn proxy_with_acl(hub: &TestServer, prefix: &str, acl: &str) -> TestServer {
    let url = hub.base.clone();
    let prefix = prefix.to_owned();
    let acl = acl.to_owned();
    proxy_with(
        vec![ProxyUpstream {
            prefix,
            url,
            username: Some(support::USER.into()),
            password: Some(support::PASSWORD.into()),
            tag_ttl: Some(Duration::from_secs(60)),
            ..Default::default()
        }],
        move |c| support::users_and_acl(c, &[ALICE, BOB], &acl),
    )
    .await
}

/// Item 1 of the security review: a proxied name served any digest stored
/// anywhere (a manifest is a blob too), to anyone who may pull that name.
/// Table: the proxy prefix `up` (private content pushed here), and
/// `remoteurl` (private content cached from the upstream by its one user).
#[tokio::test]
async fn a_proxied_name_never_serves_private_blobs_or_manifests_by_digest() {
    let hub = TestServer::start().await;
    let shared = b"a layer both the private image and the public one have".to_vec();
    let (_, _) = hub
        .client()
        .push_image("pub/app", "v1", &[&shared, b"public only"])
        .await;
    let (hub_secret, _) = hub
        .client()
        .push_image("secret/app", "v1", &[b"upstream secret layer"])
        .await;
    let _ = hub_secret;
    struct Case {
        prefix: &'static str,
        acl: &'static str,
        /// Where alice's private image is (pushed here, or pulled through).
        private: &'static str,
        /// The proxied name the attackers use, and its `?ns=` twin.
        proxied: &'static str,
        ns_twin: Option<&'static str>,
    }
    let cases = [
        Case {
            prefix: "up",
            acl: r#"
                default = ["pull"]
                anonymous = ["pull"]
                [[rules]]
                repository = "private/**"
                pull = ["alice"]
                push = ["alice"]
            "#,
            private: "private/app",
            proxied: "up/pub/app",
            ns_twin: Some("pub/app"),
        },
        Case {
            prefix: "",
            acl: r#"
                default = ["pull"]
                anonymous = ["pull"]
                [[rules]]
                repository = "secret/**"
                pull = ["alice"]
            "#,
            private: "secret/app",
            proxied: "pub/app",
            ns_twin: None,
        },
    ];
    for case in cases {
        let s = proxy_with_acl(&hub, case.prefix, case.acl).await;
        let alice = support::client_as(&s, &[ALICE, BOB], "alice");
        let secret_layer = b"private layer of alice".to_vec();
        let (manifest, blobs) = if case.prefix.is_empty() {
            // remoteurl: alice pulls the upstream's private image through.
            let r = fetch_manifest(
                &alice,
                reqwest::Method::GET,
                &format!("/v2/{}/manifests/v1", case.private),
            )
            .await;
            assert_eq!(r.status(), 200, "alice pulls her image through the cache");
            let m: serde_json::Value = r.json().await.unwrap();
            let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
            for l in m["layers"].as_array().unwrap() {
                let d = l["digest"].as_str().unwrap().to_owned();
                let r = get(&alice, &format!("/v2/{}/blobs/{d}", case.private)).await;
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                blobs.push(d);
            }
            (hub_secret.clone(), blobs)
        } else {
            let (m, _) = alice
                .push_image(case.private, "v1", &[&secret_layer, &shared, b"3"])
                .await;
            let config = r#"{"architecture":"amd64","os":"linux","n":3}"#;
            (
                m,
                vec![
                    sha256_digest(config.as_bytes()),
                    sha256_digest(&secret_layer),
                ],
            )
        };
        let bob = support::client_as(&s, &[ALICE, BOB], "bob");
        let anonymous = s.anonymous();
        let mut paths = vec![case.proxied.to_owned()];
        if let Some(twin) = case.ns_twin {
            paths.push(format!("{twin}?ns={}", case.prefix));
        }
        for (who, c) in [("anonymous", &anonymous), ("bob", &bob)] {
            // The private repository itself is closed to them.
            let r = get(c, &format!("/v2/{}/manifests/{manifest}", case.private)).await;
            assert!(
                [401, 403].contains(&r.status().as_u16()),
                "{who}: {}",
                r.status()
            );
            for name in &paths {
                let (path, query) = name
                    .split_once('?')
                    .map_or((name.as_str(), ""), |(p, q)| (p, q));
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                for d in blobs.iter().chain([&manifest]) {
                    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
                        let r = c
                            .request(method.clone(), &format!("/v2/{path}/blobs/{d}{q}"))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 404, "{who} {method} {path} blob {d}{q}");
                        if method == reqwest::Method::GET {
                            assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
                        }
                    }
                }
                let r = fetch_manifest(
                    c,
                    reqwest::Method::GET,
                    &format!("/v2/{path}/manifests/{manifest}{q}"),
                )
                .await;
                assert_eq!(r.status(), 404, "{who} {path} manifest {manifest}{q}");
                assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
            }
        }
        // Nothing was linked into the proxied repository by the attempts.
        let layers = s.storage_root().join(format!(
            "docker/registry/v2/repositories/{}/_layers/sha256",
            case.proxied
        ));
        for d in blobs.iter().chain([&manifest]) {
            let link = layers.join(d.trim_start_matches("sha256:"));
            assert!(!link.exists(), "{} linked {d}", case.proxied);
        }
        // The digest the upstream really has under that name is still
        // served, from the copy already stored (one blob file).
        let shared_digest = sha256_digest(&shared);
        let label = if case.prefix.is_empty() {
            hub.base.as_str()
        } else {
            "up"
        };
        let misses = |text: &str| {
            metric(
                text,
                &format!("registry_proxy_misses_total{{upstream=\"{label}\"}}"),
            )
        };
        let before = misses(&s.metrics_text().await);
        let r = get(
            &anonymous,
            &format!("/v2/{}/blobs/{shared_digest}", case.proxied),
        )
        .await;
        assert_eq!(r.status(), 200, "{}: the upstream has it", case.proxied);
        assert_eq!(r.bytes().await.unwrap(), shared);
        if !case.prefix.is_empty() {
            // Stored here already (alice pushed it): linked, not fetched.
            assert_eq!(misses(&s.metrics_text().await), before, "no upstream fetch");
        }
        assert!(layers
            .join(shared_digest.trim_start_matches("sha256:"))
            .exists());
        s.stop().await;
    }
}

/// Item 2 of the security review: `?ns=` (and the Docker mirror rewrite)
/// served `up/<name>` to callers the ACL kept out of `up/**`, checked only
/// on the name in the path.
#[tokio::test]
async fn ns_and_the_mirror_rewrite_cannot_read_around_the_acl_of_a_proxy_prefix() {
    let hub = TestServer::start().await;
    let (digest, _) = hub
        .client()
        .push_image("secret/app", "latest", &[b"upstream private layer"])
        .await;
    let layer = sha256_digest(b"upstream private layer");
    let acl = r#"
        admins = ["alice"]
        default = ["pull", "push"]
        [[rules]]
        repository = "up/**"
        pull = ["alice"]
    "#;
    for mirror in [false, true] {
        let url = hub.base.clone();
        let s = proxy_with(
            vec![ProxyUpstream {
                prefix: "up".into(),
                url,
                username: Some(support::USER.into()),
                password: Some(support::PASSWORD.into()),
                docker_mirror: mirror,
                ..Default::default()
            }],
            |c| support::users_and_acl(c, &[ALICE, BOB], acl),
        )
        .await;
        let bob = support::client_as(&s, &[ALICE, BOB], "bob");
        let alice = support::client_as(&s, &[ALICE, BOB], "alice");
        let q = if mirror { "" } else { "?ns=up" };
        let paths = [
            format!("/v2/secret/app/manifests/latest{q}"),
            format!("/v2/secret/app/manifests/{digest}{q}"),
            format!("/v2/secret/app/blobs/{layer}{q}"),
            format!("/v2/secret/app/tags/list{q}"),
            format!("/v2/secret/app/referrers/{digest}{q}"),
        ];
        for path in &paths {
            let direct = path.replace("/v2/secret/", "/v2/up/secret/").replace(q, "");
            for p in [path, &direct] {
                let r = fetch_manifest(&bob, reqwest::Method::GET, p).await;
                assert_eq!(r.status(), 403, "bob {p} (mirror {mirror})");
                assert_eq!(error_code(r).await, "DENIED", "bob {p}");
            }
            let r = fetch_manifest(&alice, reqwest::Method::GET, path).await;
            assert_eq!(r.status(), 200, "alice {path} (mirror {mirror})");
        }
        // bob's own repositories, under no prefix, stay his.
        bob.push_image("team/own", "v1", &[b"own layer"]).await;
        let r = fetch_manifest(&bob, reqwest::Method::GET, "/v2/team/own/manifests/v1").await;
        assert_eq!(r.status(), 200, "hosted name (mirror {mirror})");
        s.stop().await;
    }
}

/// Security review, item 11: a proxied error sent the upstream's (often
/// internal) URL and the HTTP client's error text; a storage failure's
/// 503 the S3 endpoint, the bucket and the store's own error. The client
/// now reads a generic message and a request id that finds the log line.
#[tokio::test]
async fn failures_show_clients_a_request_id_not_internal_addresses() {
    let dead = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let upstream_port = dead();
    let cache = proxy_of(&format!("http://127.0.0.1:{upstream_port}")).await;
    let store_port = dead();
    let s3 = TestServer::start_with(|c| {
        c.storage.backend = registry::config::StorageBackend::S3;
        let s3 = &mut c.storage.s3;
        s3.bucket = "internal-bucket-name".into();
        s3.regionendpoint = Some(format!("http://127.0.0.1:{store_port}"));
        s3.accesskey = Some("test".into());
        s3.secretkey = Some("test".into());
        s3.forcepathstyle = true;
        s3.max_retries = 0;
        s3.retry_timeout_secs = 1;
    })
    .await;
    let cases = [
        (
            &cache,
            "/v2/up/team/app/manifests/latest",
            502,
            upstream_port,
        ),
        (&cache, "/v2/up/team/app/tags/list", 502, upstream_port),
        (&s3, "/v2/team/app/manifests/latest", 503, store_port),
        (&s3, "/v2/team/app/tags/list", 503, store_port),
    ];
    for (server, path, status, port) in cases {
        let r = server
            .client()
            .get(path)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        let id = r
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = r.text().await.unwrap();
        for secret in [
            format!("{port}"),
            "127.0.0.1".into(),
            "internal-bucket-name".into(),
            "error sending request".into(),
            "tcp connect error".into(),
        ] {
            assert!(!body.contains(&secret), "{path} reveals {secret:?}: {body}");
        }
        let id = id.expect("an X-Request-Id header");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["errors"][0]["detail"]["request_id"],
            id.as_str(),
            "{body}"
        );
        assert!(body.contains(&format!("request id {id}")), "{body}");
    }
    let r = reqwest::get(s3.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("internal-bucket-name") && !body.contains(&store_port.to_string()),
        "{body}"
    );
}

/// distribution-spec (main, "Registry proxying"): a read that `?ns=`
/// scoped echoes the namespace in `OCI-Namespace`; a read without `ns`, or
/// whose `ns` names no upstream, has no such header.
#[tokio::test]
async fn ns_scoped_reads_echo_oci_namespace() {
    let hub = TestServer::start().await;
    let (digest, _) = hub
        .client()
        .push_image("team/app", "v1", &[b"ns layer"])
        .await;
    let layer = sha256_digest(b"ns layer");
    let s = proxy_with(
        vec![ProxyUpstream {
            prefix: "up".into(),
            url: hub.base.clone(),
            username: Some(support::USER.into()),
            password: Some(support::PASSWORD.into()),
            ..Default::default()
        }],
        |_| {},
    )
    .await;
    let c = s.client();
    let host = hub.addr.to_string();
    for ns in ["up", host.as_str()] {
        for path in [
            format!("/v2/team/app/manifests/v1?ns={ns}"),
            format!("/v2/team/app/manifests/{digest}?ns={ns}"),
            format!("/v2/team/app/blobs/{layer}?ns={ns}"),
            format!("/v2/team/app/tags/list?ns={ns}"),
        ] {
            for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
                let r = fetch_manifest(&c, method.clone(), &path).await;
                assert_eq!(r.status(), 200, "{method} {path}");
                assert_eq!(
                    r.headers()
                        .get("oci-namespace")
                        .map(|v| v.to_str().unwrap()),
                    Some(ns),
                    "{method} {path}"
                );
            }
        }
        // An error of an ns-scoped read names it too.
        let r = get(&c, &format!("/v2/team/app/manifests/nope?ns={ns}")).await;
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["oci-namespace"], ns);
    }
    for path in [
        "/v2/up/team/app/manifests/v1".to_owned(),
        // An ns naming no upstream scopes nothing.
        "/v2/up/team/app/manifests/v1?ns=elsewhere.example".to_owned(),
    ] {
        let r = fetch_manifest(&c, reqwest::Method::GET, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().get("oci-namespace").is_none(), "{path}");
    }
}

/// distribution-spec main, "Warnings": a pull through the cache that served
/// a tag stale because the upstream was down carries
/// `Warning: 299 - "..."`; the same pull with the upstream up does not.
#[tokio::test]
async fn a_stale_pull_through_a_down_upstream_carries_a_warning() {
    let hub = TestServer::start().await;
    hub.client()
        .push_image("team/app", "v1", &[b"stale layer"])
        .await;
    let s = proxy_with(
        vec![ProxyUpstream {
            prefix: "up".into(),
            url: hub.base.clone(),
            username: Some(support::USER.into()),
            password: Some(support::PASSWORD.into()),
            tag_ttl: Some(Duration::ZERO),
            ..Default::default()
        }],
        |_| {},
    )
    .await;
    let c = s.client();
    let path = "/v2/up/team/app/manifests/v1";
    let r = fetch_manifest(&c, reqwest::Method::GET, path).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("warning").is_none());
    hub.stop().await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = fetch_manifest(&c, method.clone(), path).await;
        assert_eq!(r.status(), 200, "{method}: stale-if-error");
        let warning = r.headers()["warning"].to_str().unwrap();
        assert!(
            warning.starts_with("299 - \"served from the pull-through cache")
                && warning.ends_with('"')
                && warning.len() <= 4096,
            "{warning}"
        );
    }
}

/// Docker Engine's `registry-mirrors` client asks the built-in endpoint for
/// a token of the name it pulls (`library/redis`) and never for the name
/// the cache keeps it under (`docker.io/library/redis`), nor does it come
/// back for a wider token. Such a token is ours, issued under the `[acl]`:
/// the ACL decides the rerouted name, so the mirror works for whoever the
/// ACL lets pull the prefix and for no one else (the cluster test's mirror
/// phase, anonymous pulls in token mode, found this).
#[tokio::test]
async fn a_mirror_pull_with_a_token_for_the_short_name_is_decided_by_the_acl() {
    let hub = TestServer::start().await;
    hub.client()
        .push_image("library/redis", "7", &[b"redis layer"])
        .await;
    let acl = r#"
        anonymous = ["pull"]
        default = ["pull"]
        [[rules]]
        repository = "hub/private/**"
        pull = ["alice"]
    "#;
    hub.client()
        .push_image("private/app", "v1", &[b"private upstream layer"])
        .await;
    let url = hub.base.clone();
    let s = proxy_with(
        vec![ProxyUpstream {
            prefix: "hub".into(),
            url,
            username: Some(support::USER.into()),
            password: Some(support::PASSWORD.into()),
            library: true,
            docker_mirror: true,
            ..Default::default()
        }],
        |c| {
            support::users_and_acl(c, &[ALICE, BOB], acl);
            c.auth.mode = AuthMode::Token;
            c.auth.token.signing_key = c.auth.htpasswd.path.with_file_name("token-key.pem");
        },
    )
    .await;
    let token = |user: Option<(&'static str, &'static str)>, repo: &str| {
        let url = s.url(&format!(
            "/auth/token?service=registry&scope=repository:{repo}:pull"
        ));
        async move {
            let mut r = reqwest::Client::new().get(url);
            if let Some((u, p)) = user {
                r = r.basic_auth(u, Some(p));
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let pull = |token: String, path: &str| {
        let url = s.url(path);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap()
        }
    };
    // Anonymous, as the Docker daemon pulls through its mirror.
    let t = token(None, "library/redis").await;
    let r = pull(t, "/v2/library/redis/manifests/7").await;
    assert_eq!(r.status(), 200, "anonymous mirror pull of library/redis");
    // The rerouted name still needs the ACL's pull: bob's token for the
    // short name does not reach hub/private/app; alice's does.
    let t = token(Some(BOB), "private/app").await;
    let r = pull(t, "/v2/private/app/manifests/v1?ns=hub").await;
    assert_eq!(r.status(), 401, "bob through ?ns=");
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let t = token(Some(ALICE), "private/app").await;
    let r = pull(t, "/v2/private/app/manifests/v1?ns=hub").await;
    assert_eq!(r.status(), 200, "alice through ?ns=");
}
