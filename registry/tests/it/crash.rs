//! SIGKILL under load loses nothing acknowledged: 50 clients push blobs
//! (docker-style POST, PATCH, PUT) and tag manifests on them against the
//! real binary with fsync on; the process is killed mid-stream; after a
//! restart on the same storage every blob and tag that got its 201 pulls
//! byte-identical, and `registry scrub` finds nothing wrong (no partial blob,
//! no link to nothing).

use crate::support;
use crate::support::registry_bin;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{sha256_digest, OCI_MANIFEST, PASSWORD, USER};

const CLIENTS: usize = 50;

#[derive(Default)]
struct Acknowledged {
    blobs: Vec<(String, Vec<u8>)>,
    tags: Vec<(String, String)>,
    /// Errors before the kill (there must be none).
    failures: Vec<String>,
}

fn data(client: usize, n: usize) -> Vec<u8> {
    let len = 16 * 1024 + (client * 7919 + n * 104_729) % (512 * 1024);
    let mut x = (client as u64 + 1) * 0x9E37_79B9 + n as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn location(r: &reqwest::Response) -> Result<String, String> {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: no location", r.status()))
}

async fn push(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    body: Vec<u8>,
) -> Result<String, String> {
    let digest = sha256_digest(&body);
    let send = |r: reqwest::RequestBuilder| async move {
        r.basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .map_err(|e| e.to_string())
    };
    let r = send(http.post(format!("{base}/v2/{repo}/blobs/uploads/"))).await?;
    let loc = location(&r)?;
    let r = send(
        http.patch(format!("{base}{loc}"))
            .header("content-type", "application/octet-stream")
            .body(body),
    )
    .await?;
    if r.status() != 202 {
        return Err(format!("PATCH {}", r.status()));
    }
    let loc = location(&r)?;
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = send(http.put(format!("{base}{loc}{sep}digest={digest}"))).await?;
    if r.status() != 201 {
        return Err(format!("PUT {}", r.status()));
    }
    Ok(digest)
}

/// Pushes until its first error: the kill ends every client so. An error
/// before the kill is a failure (recorded in `failures`), not the end.
async fn client(
    base: String,
    c: usize,
    acked: Arc<Mutex<Acknowledged>>,
    killed: Arc<std::sync::atomic::AtomicBool>,
) {
    let http = reqwest::Client::new();
    let repo = format!("crash/c{c}");
    let fail = |what: String| {
        if !killed.load(std::sync::atomic::Ordering::SeqCst) {
            acked.lock().unwrap().failures.push(what);
        }
    };
    for n in 0.. {
        let body = data(c, n);
        let digest = match push(&http, &base, &repo, body.clone()).await {
            Ok(digest) => digest,
            Err(e) => return fail(format!("{repo} blob {n}: {e}")),
        };
        acked
            .lock()
            .unwrap()
            .blobs
            .push((format!("{repo}@{digest}"), body.clone()));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": body.len()},
            "layers": [],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let tag = format!("t{n}");
        let r = http
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", OCI_MANIFEST)
            .body(bytes.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => acked
                .lock()
                .unwrap()
                .tags
                .push((format!("{repo}:{tag}"), sha256_digest(&bytes))),
            Ok(r) => return fail(format!("{repo}:{tag}: {}", r.status())),
            Err(e) => return fail(format!("{repo}:{tag}: {e}")),
        }
    }
}

#[tokio::test]
async fn sigkill_under_fifty_pushing_clients_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let htpasswd = support::write_htpasswd(dir.path());
    let start = || {
        let mut cmd = registry_bin::command(&root, &htpasswd, &[]);
        cmd.env("REGISTRY_STORAGE_FILESYSTEM_FSYNC", "true");
        registry_bin::serve(cmd)
    };
    let mut served = start();
    let base = format!("http://{}", served.addr);
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(base.clone(), c, acked.clone(), killed.clone())))
        .collect();
    // Kill once a good number of pushes are acknowledged, mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().tags.len() < 100 {
        assert!(std::time::Instant::now() < deadline, "pushes too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    served.child.kill().unwrap(); // SIGKILL
    served.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.failures.is_empty(),
        "requests failed before the kill: {:?}",
        acked.failures
    );
    println!(
        "killed after {} blobs and {} tags acknowledged",
        acked.blobs.len(),
        acked.tags.len()
    );

    let served = start();
    let base = format!("http://{}", served.addr);
    let http = reqwest::Client::new();
    for (name, body) in &acked.blobs {
        let (repo, digest) = name.split_once('@').unwrap();
        let r = http
            .get(format!("{base}/v2/{repo}/blobs/{digest}"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged blob {name} lost");
        assert!(r.bytes().await.unwrap() == body[..], "blob {name} changed");
    }
    for (name, digest) in &acked.tags {
        let (repo, tag) = name.split_once(':').unwrap();
        let r = http
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .basic_auth(USER, Some(PASSWORD))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged tag {name} lost");
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
    }
    drop(served);
    let scrub = registry_bin::run(&root, &htpasswd, &["scrub"]);
    assert!(
        scrub.status.success(),
        "scrub after the crash: {}",
        String::from_utf8_lossy(&scrub.stdout)
    );
}
