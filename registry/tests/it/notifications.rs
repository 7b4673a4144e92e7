//! Notifications: the events registry:2 (Debian's docker-registry 2.8)
//! sends for the same pushes, pulls, mount and delete, field by field; and
//! what registry:2 lacks: events stored before the answer, so an endpoint
//! down, a full queue, a restart or a kill -9 loses nothing (or drops the
//! oldest, counted); HMAC signatures, CloudEvents, filters, metrics. Every
//! receiver is a real HTTP server started by the test.

use crate::support;
use crate::support::distribution;
use crate::support::registry_bin;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distribution::DockerRegistry;
use hmac::{KeyInit, Mac};
use registry::config::{AuthMode, NotifyEndpoint};
use serde_json::Value;
use support::{Client, TestServer, Upload};

type Received = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<u8>)>>>;

/// A webhook receiver: every request's headers and body, answering
/// `status` after `delay_ms`; `started` counts requests that arrived.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Received,
    delay_ms: Arc<AtomicU64>,
    started: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Receiver::on(listener).await
    }

    async fn on(listener: std::net::TcpListener) -> Receiver {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Received = Arc::new(Mutex::new(Vec::new()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (g, dl, sn) = (got.clone(), delay_ms.clone(), started.clone());
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, dl, sn) = (g.clone(), dl.clone(), sn.clone());
                    async move {
                        sn.fetch_add(1, Ordering::SeqCst);
                        let delay = dl.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let h = headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        g.lock().unwrap().push((h, body.to_vec()));
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/events"),
            got,
            delay_ms,
            started,
        }
    }

    /// Every event received so far, in order (envelopes unpacked).
    fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (headers, body) in self.got.lock().unwrap().iter() {
            let v: Value = serde_json::from_slice(body).unwrap();
            if headers.get("content-type").map(String::as_str)
                == Some("application/cloudevents+json")
            {
                out.push(v["data"].clone());
            } else {
                out.extend(v["events"].as_array().unwrap().iter().cloned());
            }
        }
        out
    }

    /// Waits until `n` distinct event ids arrived.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = dedupe(self.events());
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events within {within:?}: {events:#?}",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// At-least-once delivery: the receiver keeps the first of each id.
fn dedupe(events: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    events
        .into_iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn endpoint(url: &str) -> NotifyEndpoint {
    NotifyEndpoint {
        name: "hook".into(),
        url: url.into(),
        backoff: Duration::from_millis(100),
        threshold: 2,
        ..Default::default()
    }
}

async fn push_image(c: &Client, repo: &str, tag: &str, layer: &[u8]) -> (String, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = c.push_blob_by(repo, config, Upload::PostPut).await;
    let layer_digest = c.push_blob_by(repo, layer, Upload::PostPut).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let digest = c
        .push_manifest(repo, tag, support::DOCKER_MANIFEST, &manifest)
        .await;
    (digest, layer_digest)
}

/// The same requests on either registry: push, pull, HEAD, mount, delete.
async fn scenario(c: &Client) {
    let (manifest, layer) = push_image(c, "a/app", "v1", b"layer bytes of the comparison").await;
    let accept = "application/vnd.docker.distribution.manifest.v2+json";
    let r = c
        .get("/v2/a/app/manifests/v1")
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(&format!("/v2/a/app/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = c
        .head("/v2/a/app/manifests/v1")
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(&format!(
            "/v2/b/app/blobs/uploads/?mount={layer}&from=a/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .delete(&format!("/v2/a/app/manifests/{manifest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// What a receiver reads, without ids, times and addresses.
fn shape(e: &Value) -> Value {
    let t = &e["target"];
    let url_tail = t["url"]
        .as_str()
        .map(|u| u.splitn(4, '/').nth(3).unwrap_or("").to_owned());
    serde_json::json!({
        "action": e["action"],
        "target": {
            "mediaType": t["mediaType"], "size": t["size"], "length": t["length"],
            "digest": t["digest"], "repository": t["repository"], "tag": t["tag"],
            "fromRepository": t["fromRepository"], "url": url_tail,
        },
        "request.method": e["request"]["method"],
        "request.has_addr_host_useragent": !e["request"]["addr"].as_str().unwrap_or("").is_empty()
            && !e["request"]["host"].as_str().unwrap_or("").is_empty()
            && e["request"]["useragent"].is_string(),
        "actor": e["actor"],
        "source.has_addr_instance": e["source"]["addr"].is_string() && e["source"]["instanceID"].is_string(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn events_match_docker_registry() {
    let theirs_rx = Receiver::start().await;
    let ours_rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "  filesystem:\n    rootdirectory: {}\n",
        dir.path().display()
    );
    let notifications = format!(
        "notifications:\n  endpoints:\n    - name: hook\n      url: {}\n      timeout: 1s\n      threshold: 3\n      backoff: 1s\n",
        theirs_rx.url
    );
    let theirs = DockerRegistry::start_with_config(&storage, &notifications).await;
    let url = ours_rx.url.clone();
    let ours = TestServer::start_with(move |c| {
        c.auth.mode = AuthMode::None;
        c.notifications.endpoints = vec![endpoint(&url)];
    })
    .await;
    scenario(&theirs.client()).await;
    scenario(&ours.anonymous()).await;
    // Pushes of config, layer, manifest; pulls of the manifest (GET and
    // HEAD, as registry:2 counts them) and the layer; the mount; the
    // manifest's delete and its tag's.
    let want = 9;
    let theirs_events = theirs_rx.wait_for(want, Duration::from_secs(20)).await;
    let ours_events = ours_rx.wait_for(want, Duration::from_secs(20)).await;
    let t: Vec<Value> = theirs_events.iter().map(shape).collect();
    let o: Vec<Value> = ours_events.iter().map(shape).collect();
    assert_eq!(o, t, "ours (left) and docker-registry's (right) events");
    let (headers, _) = &ours_rx.got.lock().unwrap()[0];
    assert_eq!(
        headers["content-type"],
        "application/vnd.docker.distribution.events.v1+json"
    );
}

/// A port with nothing listening (the receiver is down); bind it later to
/// bring the receiver up.
fn dead_port() -> (u16, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    (port, format!("http://127.0.0.1:{port}/events"))
}

/// `name{endpoint="hook"}`, or None when the exposition has no such line.
async fn metric_line(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    support::sample(&text, &format!("{name}{{endpoint=\"hook\"}}"))
}

/// A counter of the endpoint: a labelled counter appears at its first
/// increment, so a missing one has counted 0. (Asserting a value, use
/// `metric_line`: a missing metric is not a 0.)
async fn metric(addr: &str, name: &str) -> f64 {
    metric_line(addr, name).await.unwrap_or(0.0)
}

async fn wait_metric(addr: &str, name: &str, at_least: f64, within: Duration) {
    let deadline = Instant::now() + within;
    while metric(addr, name).await < at_least {
        assert!(
            Instant::now() < deadline,
            "{name} < {at_least} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ours_with(endpoint: NotifyEndpoint) -> TestServer {
    TestServer::start_with(move |c| {
        c.notifications.endpoints = vec![endpoint];
        c.metrics.addr = Some("127.0.0.1:0".into());
    })
    .await
}

fn digests_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_down_then_up_gets_everything_in_order_per_repository() {
    down_then_up(false).await;
}

/// The queue lives in the bucket when storage is S3 (moto).
#[tokio::test(flavor = "multi_thread")]
async fn receiver_down_then_up_on_s3() {
    down_then_up(true).await;
}

async fn down_then_up(on_s3: bool) {
    let (port, url) = dead_port();
    let moto = if on_s3 {
        let m = support::s3::Moto::start().await;
        m.create_bucket("events").await;
        Some(m)
    } else {
        None
    };
    let ep = endpoint(&url);
    let s = TestServer::start_with(|c| {
        c.notifications.endpoints = vec![ep];
        c.metrics.addr = Some("127.0.0.1:0".into());
        if let Some(m) = &moto {
            m.configure(c, "events");
        }
    })
    .await;
    let m = s.metrics_addr().unwrap().to_string();
    let c = s.client();
    let mut pushed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..4 {
        for repo in ["r/one", "r/two", "r/three"] {
            let d = c
                .push_blob(repo, format!("{repo} blob {i}").as_bytes())
                .await;
            pushed.entry(repo.into()).or_default().push(d);
        }
    }
    // Down for several retries, the pushes answered meanwhile.
    wait_metric(
        &m,
        "registry_notifications_failed_total",
        6.0,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        metric_line(&m, "registry_notifications_pending").await,
        Some(12.0)
    );
    let rx = Receiver::on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()).await;
    let events = rx.wait_for(12, Duration::from_secs(20)).await;
    for (repo, digests) in &pushed {
        let of_repo: Vec<Value> = events
            .iter()
            .filter(|e| e["target"]["repository"] == repo.as_str())
            .cloned()
            .collect();
        assert_eq!(&digests_of(&of_repo), digests, "{repo} in push order");
    }
    wait_metric(
        &m,
        "registry_notifications_sent_total",
        12.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        metric_line(&m, "registry_notifications_pending").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "registry_notifications_dropped_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_drops_the_oldest_counted() {
    let (port, url) = dead_port();
    let s = ours_with(NotifyEndpoint {
        maxpending: 3,
        ..endpoint(&url)
    })
    .await;
    let m = s.metrics_addr().unwrap().to_string();
    let c = s.client();
    let mut digests = Vec::new();
    for i in 0..5 {
        digests.push(c.push_blob("q/app", format!("blob {i}").as_bytes()).await);
    }
    assert_eq!(
        metric(&m, "registry_notifications_dropped_total").await,
        2.0
    );
    assert_eq!(
        metric_line(&m, "registry_notifications_pending").await,
        Some(3.0)
    );
    let rx = Receiver::on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()).await;
    rx.wait_for(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        digests_of(&dedupe(rx.events())),
        digests[2..],
        "the newest three"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_signed_cloudevents_through_filters() {
    let rx = Receiver::start().await;
    let s = ours_with(NotifyEndpoint {
        format: "cloudevents".into(),
        secret: Some("s3cret".into()),
        repositories: vec!["team/**".into()],
        actions: vec!["push".into()],
        ..endpoint(&rx.url)
    })
    .await;
    let c = s.client();
    let first = c.push_blob("team/app", b"wanted").await;
    c.push_blob("other/app", b"filtered out by repository")
        .await;
    let r = c
        .get(&format!("/v2/team/app/blobs/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a pull: filtered out by action");
    let last = c.push_blob("team/app", b"wanted too").await;
    rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = dedupe(rx.events());
    assert_eq!(digests_of(&events), [first, last]);
    let got = rx.got.lock().unwrap().clone();
    for (headers, body) in &got {
        assert_eq!(headers["content-type"], "application/cloudevents+json");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(headers["x-registry-signature-256"], want);
        let ce: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["subject"], "team/app");
        assert_eq!(ce["type"], "org.cncf.distribution.push");
        assert_eq!(ce["id"], ce["data"]["id"]);
        assert_eq!(ce["data"]["actor"]["name"], support::USER);
    }
}

/// The real binary, its file a registry:2 config.yml with the endpoint,
/// killed with SIGKILL while events wait (receiver down), then again in the
/// middle of a delivery (receiver slow): every event arrives in the end.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let (port, url) = dead_port();
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
auth:
  htpasswd:
    realm: basic-realm
    path: /auth/htpasswd
notifications:
  endpoints:
    - name: hook
      url: {url}
      timeout: 10s
      threshold: 2
      backoff: 200ms
"
        ),
    )
    .unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = htpasswd::hash_bcrypt(support::PASSWORD, 4).unwrap();
    std::fs::write(&htpasswd, format!("{}:{hash}\n", support::USER)).unwrap();
    let root = dir.path().join("storage");
    let start = || {
        let mut cmd = registry_bin::command(&root, &htpasswd, &[]);
        cmd.env("REGISTRY_CONFIGURATION_PATH", &file);
        registry_bin::serve(cmd)
    };
    let mut served = start();
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", served.addr),
        auth: Some((support::USER.into(), support::PASSWORD.into())),
    };
    let mut digests = Vec::new();
    for i in 0..5 {
        digests.push(c.push_blob("k/app", format!("kill {i}").as_bytes()).await);
    }
    served.child.kill().unwrap(); // SIGKILL
    served.child.wait().unwrap();

    // Up but slow: the restarted registry is killed mid-delivery.
    let rx = Receiver::on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()).await;
    rx.delay_ms.store(3000, Ordering::SeqCst);
    let mut served = start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no delivery after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    rx.delay_ms.store(0, Ordering::SeqCst);
    let _served = start();
    let events = rx.wait_for(5, Duration::from_secs(20)).await;
    assert_eq!(digests_of(&events), digests);
}

/// Every storage operation the registry has asked of its backend.
async fn storage_operations(s: &TestServer) -> u64 {
    support::sum_samples(
        &s.metrics_text().await,
        "registry_storage_operations_total{",
    ) as u64
}

/// Waits until every queued event was delivered (nothing the delivery task
/// does then touches storage).
async fn wait_delivered(s: &TestServer) {
    let addr = s.metrics_addr().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&addr, "registry_notifications_pending").await > 0.0 {
        assert!(Instant::now() < deadline, "events still pending after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Security review, item 3: the notification layer read every tag of a
/// repository for each `DELETE /v2/<name>/manifests/<digest>` before
/// authentication answered 401 (300 tags: 242 ms per anonymous request,
/// and an oracle for whether a repository exists and how many tags it has).
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_manifest_deletes_cost_no_storage_work_whatever_the_tag_count() {
    let rx = Receiver::start().await;
    let s = ours_with(endpoint(&rx.url)).await;
    let c = s.client();
    let media = "application/vnd.oci.image.manifest.v1+json";
    let (digest, manifest) = c.push_image("big/app", "t0", &[b"one layer"]).await;
    for i in 1..300 {
        c.push_manifest("big/app", &format!("t{i}"), media, &manifest)
            .await;
    }
    assert_eq!(c.tag_list("big/app").await.len(), 300);
    c.push_image("small/app", "v1", &[b"one layer"]).await;
    let r = c.delete("/v2/small/app/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_delivered(&s).await;
    let anonymous = s.anonymous();
    let mut medians = Vec::new();
    for repo in ["big/app", "small/app", "none/app"] {
        let before = storage_operations(&s).await;
        let mut took = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let r = anonymous
                .delete(&format!("/v2/{repo}/manifests/{digest}"))
                .send()
                .await
                .unwrap();
            took.push(started.elapsed());
            assert_eq!(r.status(), 401, "{repo}");
        }
        let operations = storage_operations(&s).await - before;
        // Before the fix: 20 × (a tag listing + 300 tag reads) for big/app.
        // Background work may add one or two; a request adds none.
        assert!(
            operations < 5,
            "{repo}: 20 anonymous deletes asked storage for {operations} operations"
        );
        took.sort();
        medians.push((repo, took[10]));
    }
    println!("median anonymous DELETE: {medians:?}");
    // The tag count does not show in the answer's timing either.
    let (big, small) = (medians[0].1, medians[1].1);
    assert!(
        big < small * 4 + Duration::from_millis(20),
        "big/app {big:?} against small/app {small:?}"
    );
    // The authorized delete still sends one event per tag it removed.
    let r = c
        .delete(&format!("/v2/big/app/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_delivered(&s).await;
    let deletes: Vec<Value> = dedupe(rx.events())
        .into_iter()
        .filter(|e| e["action"] == "delete" && e["target"]["repository"] == "big/app")
        .collect();
    assert_eq!(deletes.len(), 301, "the manifest and its 300 tags");
    assert_eq!(deletes[0]["target"]["digest"], digest.as_str());
    assert_eq!(deletes[0]["actor"]["name"], support::USER);
}

/// Security review, item 10: the UI's delete called the manifest handler
/// directly, so it sent no webhook and skipped the pull-through cache's
/// refusal of writes (the API answers 405; the UI deleted and said 303).
#[tokio::test(flavor = "multi_thread")]
async fn a_ui_delete_sends_the_api_deletes_events_and_cannot_delete_from_a_cache() {
    let hub = TestServer::start().await;
    let (cached, _) = hub
        .client()
        .push_image("lib/app", "v1", &[b"upstream layer"])
        .await;
    let rx = Receiver::start().await;
    let (hub_url, rx_url) = (hub.base.clone(), rx.url.clone());
    let s = TestServer::start_with(move |c| {
        c.notifications.endpoints = vec![endpoint(&rx_url)];
        c.metrics.addr = Some("127.0.0.1:0".into());
        c.proxy.upstreams = vec![registry::config::ProxyUpstream {
            prefix: "up".into(),
            url: hub_url,
            username: Some(support::USER.into()),
            password: Some(support::PASSWORD.into()),
            ..Default::default()
        }];
    })
    .await;
    let c = s.client();
    let media = "application/vnd.oci.image.manifest.v1+json";
    // The same image twice tagged in two repositories: one deleted by the
    // API, one through the UI, both by digest.
    let mut digest = String::new();
    for repo in ["by/api", "by/ui"] {
        let (d, manifest) = c.push_image(repo, "v1", &[b"a layer"]).await;
        c.push_manifest(repo, "v2", media, &manifest).await;
        digest = d;
    }
    wait_delivered(&s).await;
    let r = c
        .delete(&format!("/v2/by/api/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (cookie, csrf) = support::ui_session(&s.base, support::USER, support::PASSWORD).await;
    let ui_delete = |name: &str, reference: &str| {
        let body = support::form_body(&[("name", name), ("reference", reference), ("csrf", &csrf)]);
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(s.url("/ui/delete"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = ui_delete("by/ui", &digest).await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    wait_delivered(&s).await;
    let deletes = |repo: &str| -> Vec<Value> {
        dedupe(rx.events())
            .into_iter()
            .filter(|e| e["action"] == "delete" && e["target"]["repository"] == repo)
            .map(|e| {
                let mut shape = shape(&e);
                shape["target"]["repository"] = Value::Null;
                shape["request.method"] = e["request"]["method"].clone();
                shape
            })
            .collect()
    };
    let (api, ui) = (deletes("by/api"), deletes("by/ui"));
    assert_eq!(api.len(), 3, "the manifest and its two tags: {api:#?}");
    assert_eq!(
        ui, api,
        "the UI's delete events (left) and the API's (right)"
    );
    // A repository of the pull-through cache: the API refuses deletes
    // there, and so does the UI.
    let path = "/v2/up/lib/app/manifests/v1";
    let r = c.get(path).header("accept", media).send().await.unwrap();
    assert_eq!(r.status(), 200, "pulled through the cache");
    let r = c.delete(path).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = ui_delete("up/lib/app", "v1").await.unwrap();
    assert_eq!(r.status(), 405, "the UI refuses as the API does");
    assert!(r.text().await.unwrap().contains("pull-through cache"));
    let r = c.get(path).header("accept", media).send().await.unwrap();
    assert_eq!(r.status(), 200, "still cached");
    assert_eq!(r.headers()["docker-content-digest"], cached.as_str());
}

/// Security review, item 9: webhook `target.url` and `request.host`, and
/// the token realm when `auth.token.realm` is unset, were copied from the
/// client's `Host` header, so a pusher could point receivers' links (and a
/// challenge) at any host. They come from `http.host` now, or from this
/// instance's own address.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_host_header_moves_no_webhook_link_nor_the_token_realm() {
    const EXTERNAL: &str = "https://registry.example.test";
    for external in [Some(EXTERNAL), None] {
        let rx = Receiver::start().await;
        let url = rx.url.clone();
        let s = TestServer::start_with(move |c| {
            c.notifications.endpoints = vec![endpoint(&url)];
            c.metrics.addr = Some("127.0.0.1:0".into());
            c.http.host = external.map(str::to_owned);
        })
        .await;
        let c = s.client();
        let (_, manifest) = c.push_image("team/app", "v1", &[b"layer"]).await;
        let r = c
            .put("/v2/team/app/manifests/v2")
            .header("host", "evil.example")
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        wait_delivered(&s).await;
        let events = dedupe(rx.events());
        let pushed = events
            .iter()
            .find(|e| e["action"] == "push" && e["target"]["tag"] == "v2")
            .expect("the push event");
        let link = pushed["target"]["url"].as_str().unwrap();
        let host = pushed["request"]["host"].as_str().unwrap();
        match external {
            Some(base) => {
                assert!(
                    link.starts_with(&format!("{base}/v2/team/app/manifests/")),
                    "{link}"
                );
                assert_eq!(host, "registry.example.test");
            }
            None => {
                let port = s.addr.port().to_string();
                assert!(
                    link.ends_with(&format!(
                        ":{port}/v2/team/app/manifests/{}",
                        pushed["target"]["digest"].as_str().unwrap()
                    )),
                    "{link}"
                );
                assert!(host.ends_with(&format!(":{port}")), "{host}");
            }
        }
        for e in &events {
            assert!(!e.to_string().contains("evil.example"), "{e}");
        }
        s.stop().await;
    }
    // Token mode without auth.token.realm: the challenge names http.host's
    // endpoint whatever Host the client sent.
    let s = TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.token.signing_key = c.auth.htpasswd.path.with_file_name("token-key.pem");
        c.http.host = Some(EXTERNAL.into());
    })
    .await;
    let r = s
        .anonymous()
        .get("/v2/team/app/tags/list")
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{EXTERNAL}/auth/token\"")),
        "{challenge}"
    );
}

/// distribution-spec main, "Pushing manifests with multiple tags": a push
/// by digest with three `?tag=` sends one manifest push event per tag, as
/// three pushes by tag would; a push by digest alone sends one, untagged.
#[tokio::test(flavor = "multi_thread")]
async fn a_multi_tag_push_sends_one_push_event_per_tag() {
    let rx = Receiver::start().await;
    let s = ours_with(endpoint(&rx.url)).await;
    let c = s.client();
    let media = "application/vnd.oci.image.manifest.v1+json";
    let (digest, manifest) = c.push_image("multi/app", "first", &[b"a layer"]).await;
    wait_delivered(&s).await;
    let before = dedupe(rx.events()).len();
    let r = c
        .put(&format!(
            "/v2/multi/app/manifests/{digest}?tag=1.2.3&tag=1.2&tag=latest"
        ))
        .header("content-type", media)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    c.push_manifest("multi/app", &digest, media, &manifest)
        .await;
    wait_delivered(&s).await;
    let events = dedupe(rx.events());
    let pushed: Vec<(String, String)> = events[before..]
        .iter()
        .filter(|e| e["action"] == "push" && e["target"]["mediaType"] == media)
        .map(|e| {
            assert_eq!(e["target"]["digest"], digest.as_str());
            assert_eq!(e["target"]["repository"], "multi/app");
            (
                e["target"]["tag"].as_str().unwrap_or("").to_owned(),
                e["target"]["url"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let tags: Vec<&str> = pushed.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, ["1.2.3", "1.2", "latest", ""], "{events:#?}");
    assert!(pushed.iter().all(|(_, u)| u.ends_with(&digest)));
}

/// Domain-layer issue: every entrance that deletes sends the event a
/// client's delete of the same thing sends. A repository delete
/// (`DELETE /v2/_ext/repositories/<name>`) sent none; retention's removals
/// sent none. A tag removed by retention now looks like a tag deleted with
/// `DELETE /v2/<name>/manifests/<tag>` but for its request block (no
/// client; the job names itself as the user agent), and a repository
/// delete sends registry:2's repository event (the repository alone).
#[tokio::test(flavor = "multi_thread")]
async fn repository_deletes_and_retention_send_the_delete_events_of_a_client_delete() {
    let rx = Receiver::start().await;
    let rx_url = rx.url.clone();
    let s = TestServer::start_with(move |c| {
        c.notifications.endpoints = vec![endpoint(&rx_url)];
        c.metrics.addr = Some("127.0.0.1:0".into());
        c.policies = toml::from_str(
            "retention_interval = \"200ms\"\n[[retention]]\nrepository = \"ret/**\"\nkeep_last = 1\ndry_run = false",
        )
        .unwrap();
    })
    .await;
    let c = s.client();
    // A tag deleted by a client, the reference the others are held to.
    c.push_image("api/app", "old", &[b"api old"]).await;
    c.push_image("api/app", "new", &[b"api new"]).await;
    let r = c.delete("/v2/api/app/manifests/old").send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Retention keeps the newest tag of ret/app and removes the other.
    c.push_image("ret/app", "old", &[b"ret old"]).await;
    support::next_second().await;
    c.push_image("ret/app", "new", &[b"ret new"]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.tag_list("ret/app").await != ["new"] {
        assert!(
            Instant::now() < deadline,
            "retention did not remove ret/app:old"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A whole repository.
    c.push_image("gone/app", "v1", &[b"gone"]).await;
    let r = c
        .delete("/v2/_ext/repositories/gone/app")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    wait_delivered(&s).await;

    let deletes = |repo: &str| -> Vec<Value> {
        dedupe(rx.events())
            .into_iter()
            .filter(|e| e["action"] == "delete" && e["target"]["repository"] == repo)
            .collect()
    };
    let without_repository = |e: &Value| {
        let mut shape = shape(e);
        shape["target"]["repository"] = Value::Null;
        shape
    };
    let (api, retention, gone) = (deletes("api/app"), deletes("ret/app"), deletes("gone/app"));
    assert_eq!(api.len(), 1, "{api:#?}");
    assert_eq!(
        retention.len(),
        1,
        "one event for the one removed tag: {retention:#?}"
    );
    // The target, action and source match the client's tag delete.
    let (mut ours, mut theirs) = (
        without_repository(&retention[0]),
        without_repository(&api[0]),
    );
    for shape in [&mut ours, &mut theirs] {
        for request_field in ["request.method", "request.has_addr_host_useragent", "actor"] {
            shape[request_field] = Value::Null;
        }
    }
    assert_eq!(
        ours, theirs,
        "retention's event (left) and a client's tag delete (right)"
    );
    assert_eq!(retention[0]["target"]["tag"], "old");
    assert_eq!(retention[0]["request"]["useragent"], "registry/retention");
    assert_eq!(retention[0]["actor"], serde_json::json!({}));
    // registry:2's repository delete event: the repository, nothing else.
    assert_eq!(gone.len(), 1, "{gone:#?}");
    let t = &gone[0]["target"];
    assert_eq!(t["repository"], "gone/app");
    assert!(t["digest"].is_null() && t["tag"].is_null(), "{t}");
    assert_eq!(gone[0]["request"]["method"], "DELETE");
    assert_eq!(gone[0]["actor"]["name"], support::USER);
}

/// An event's `request.addr` names the client as the logs do: behind a
/// proxy of `http.trusted_proxies`, the address it forwarded for (it was
/// the proxy's own address); otherwise the TCP peer, and a forwarding
/// header from an untrusted peer changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_events_request_addr_is_the_client_behind_a_trusted_proxy() {
    for (trusted, expected) in [(true, "203.0.113.7"), (false, "127.0.0.1:")] {
        let rx = Receiver::start().await;
        let rx_url = rx.url.clone();
        let s = TestServer::start_with(move |c| {
            c.notifications.endpoints = vec![endpoint(&rx_url)];
            c.metrics.addr = Some("127.0.0.1:0".into());
            if trusted {
                c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
            }
        })
        .await;
        let data = format!("forwarded {trusted}");
        let digest = support::sha256_digest(data.as_bytes());
        let r = s
            .client()
            .post(&format!("/v2/fwd/app/blobs/uploads/?digest={digest}"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let events = rx.wait_for(1, Duration::from_secs(30)).await;
        let addr = events[0]["request"]["addr"].as_str().unwrap().to_owned();
        assert!(
            addr.starts_with(expected) && (trusted || addr != "127.0.0.1:"),
            "trusted proxies {trusted}: request.addr {addr:?}"
        );
    }
}
