//! `regbench`: measures one registry (any: docker-registry, ours, zot) over
//! HTTP, Basic or token auth, and prints one JSON document of medians.
//! `bench/registry.sh` runs it against docker-registry and ours in one run
//! and writes the table in docs/benchmarks.md.
//!
//! ```text
//! cargo run --release -p registry --example regbench -- \
//!     --url http://127.0.0.1:5000 --user bench --password pw [--pid PID] [--repeat 3]
//! ```
//!
//! Scenarios (`--only a,b` to pick): pushes docker-style (POST, one streamed
//! PATCH, PUT), monolithic (POST, PUT with the body) and chunked (16 MiB
//! PATCHes with Content-Range); pulls; request rates by wrk (GET /v2/,
//! manifest GET/HEAD by tag and digest, blob HEAD, a 1,000-tag list,
//! catalog); and pull storms: N new clients pulling one image at once as
//! docker does (challenge, token or Basic, index, manifest, config, layers
//! three at a time), with per-client times, the server's CPU-seconds per pull
//! and bytes it read per byte served (`--pid`). Before each scenario the
//! machine's CPU is sampled: a run on a busy machine is marked `busy` in the
//! output (and by the script in the table).

mod client;
mod load;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::{json, Value};

use client::{location, with_query, Registry, MANIFEST_ACCEPT};
use load::{machine_busy, median, quantile, sample_process, Blob};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "bench")]
    user: String,
    #[arg(long, default_value = "")]
    password: String,
    /// The server's process id, for CPU and read counts (local only).
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds per wrk rate measurement.
    #[arg(long, default_value_t = 8)]
    wrk_seconds: u64,
    /// Comma-separated scenario names; default all.
    #[arg(long)]
    only: Option<String>,
    /// Pull storm sizes.
    #[arg(long, default_value = "16,64")]
    storms: String,
    /// Large blob sizes in MiB for the single-blob pushes and pulls.
    #[arg(long, default_value = "64,512")]
    sizes: String,
    /// Seed offset, so two runs against one registry push new blobs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

type Outcome = Result<f64, String>;

struct Bench {
    reg: Registry,
    args: Args,
    results: BTreeMap<String, Value>,
    seed: std::sync::atomic::AtomicU64,
}

const IMAGE_REPO: &str = "bench/app";
const TAGS_REPO: &str = "bench/tags";
const LAYER_MIB: u64 = 4;

fn scope(repo: &str, actions: &str) -> String {
    format!("repository:{repo}:{actions}")
}

impl Bench {
    fn next_seed(&self) -> u64 {
        self.args.seed * 1_000_000 + self.seed.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn wanted(&self, name: &str) -> bool {
        match &self.args.only {
            None => true,
            Some(list) => list.split(',').any(|s| name.starts_with(s.trim())),
        }
    }

    /// Runs `one` `repeat` times after a busy check; records the median.
    async fn measure<F, Fut>(&mut self, name: &str, unit: &str, one: F)
    where
        F: Fn(u64) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        if !self.wanted(name) {
            return;
        }
        let busy = machine_busy(Duration::from_millis(500)).await;
        let mut runs = Vec::new();
        for _ in 0..self.args.repeat {
            match one(self.next_seed()).await {
                Ok(v) => runs.push(v),
                Err(e) => {
                    eprintln!("regbench: {name}: {e}");
                    self.results.insert(name.into(), json!({"error": e}));
                    return;
                }
            }
        }
        let m = median(&mut runs.clone());
        eprintln!(
            "regbench: {name}: {m:.1} {unit} (runs {runs:.1?}, machine busy {:.0}%)",
            busy * 100.0
        );
        self.results.insert(
            name.into(),
            json!({"median": m, "unit": unit, "runs": runs, "busy": busy > BUSY, "machine_busy": busy}),
        );
    }
}

/// Above this share of non-idle CPU before a scenario, with the server
/// idle, another load is running.
const BUSY: f64 = 0.25;

// ----- pushes and pulls -----

#[derive(Clone, Copy)]
enum PushStyle {
    /// docker: POST, one streamed PATCH, PUT ?digest.
    Streamed,
    /// POST, PUT ?digest with the whole body.
    Monolithic,
    /// POST, PATCH per 16 MiB with Content-Range, PUT ?digest.
    Chunked,
}

async fn push(reg: &Registry, repo: &str, blob: &Blob, style: PushStyle) -> Result<(), String> {
    let s = scope(repo, "pull,push");
    let r = reg
        .expect(
            &s,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            202,
            None,
            &[],
        )
        .await?;
    let mut loc = location(&r)?;
    let octets = ("content-type", "application/octet-stream");
    match style {
        PushStyle::Monolithic => {
            let put = with_query(&loc, &format!("digest={}", blob.digest));
            reg.expect(&s, Method::PUT, &put, 201, Some(blob.whole()), &[octets])
                .await?;
            return Ok(());
        }
        PushStyle::Streamed => {
            let pieces = blob.pieces();
            let url = reg.url(&loc);
            let r = reg
                .send(&s, |h| {
                    let body = futures::stream::iter(
                        pieces.clone().into_iter().map(Ok::<_, std::io::Error>),
                    );
                    h.patch(&url)
                        .header(octets.0, octets.1)
                        .body(reqwest::Body::wrap_stream(body))
                })
                .await?;
            if r.status() != 202 {
                return Err(format!("PATCH: {}", r.status()));
            }
            loc = location(&r)?;
        }
        PushStyle::Chunked => {
            let mut offset = 0u64;
            for chunk in blob.slices(16 << 20) {
                let end = offset + chunk.len() as u64 - 1;
                let range = format!("{offset}-{end}");
                let r = reg
                    .expect(
                        &s,
                        Method::PATCH,
                        &loc,
                        202,
                        Some(chunk),
                        &[octets, ("content-range", &range)],
                    )
                    .await?;
                loc = location(&r)?;
                offset = end + 1;
            }
        }
    }
    let put = with_query(&loc, &format!("digest={}", blob.digest));
    reg.expect(&s, Method::PUT, &put, 201, None, &[]).await?;
    Ok(())
}

async fn pull(reg: &Registry, repo: &str, digest: &str) -> Result<u64, String> {
    let r = reg
        .expect(
            &scope(repo, "pull"),
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            200,
            None,
            &[],
        )
        .await?;
    let mut stream = r.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.map_err(|e| e.to_string())?.len() as u64;
    }
    Ok(n)
}

/// MiB/s of one push of `mib` MiB, then (returned separately) its pull.
async fn push_one(
    reg: &Registry,
    seed: u64,
    size: u64,
    style: PushStyle,
) -> Result<(f64, String), String> {
    let blob = Blob::new(seed, size);
    let t = Instant::now();
    push(reg, "bench/big", &blob, style).await?;
    Ok((size as f64 / t.elapsed().as_secs_f64(), blob.digest))
}

async fn push_many(
    reg: &Registry,
    seed: u64,
    count: u64,
    concurrency: usize,
) -> Result<(f64, Vec<String>), String> {
    let blobs: Vec<Blob> = (0..count)
        .map(|i| Blob::new(seed * 10_000 + i, 1))
        .collect();
    let digests = blobs.iter().map(|b| b.digest.clone()).collect();
    let t = Instant::now();
    futures::stream::iter(blobs)
        .map(|b| {
            let reg = reg.clone();
            async move { push(&reg, "bench/many", &b, PushStyle::Streamed).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((count as f64 / t.elapsed().as_secs_f64(), digests))
}

// ----- the image the rate and storm scenarios read -----

struct Image {
    index: String,
    manifest: String,
    config: String,
    layers: Vec<String>,
    bytes: u64,
}

async fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &Value,
) -> Result<String, String> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    reg.expect(
        &scope(repo, "pull,push"),
        Method::PUT,
        &format!("/v2/{repo}/manifests/{reference}"),
        201,
        Some(bytes),
        &[("content-type", media_type)],
    )
    .await?;
    Ok(digest)
}

/// An OCI index (linux/amd64) over a manifest of a config and three
/// 4 MiB layers, tagged `latest` in bench/app; and bench/tags with 1,000
/// tags.
async fn setup(reg: &Registry, seed: u64) -> Result<Image, String> {
    let config = Blob::small(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
    );
    let layers: Vec<Blob> = (0..3)
        .map(|i| Blob::new(seed * 100 + 90 + i, LAYER_MIB))
        .collect();
    for b in std::iter::once(&config).chain(&layers) {
        push(reg, IMAGE_REPO, b, PushStyle::Monolithic).await?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.digest, "size": l.len()})).collect::<Vec<_>>(),
    });
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let m = put_manifest(reg, IMAGE_REPO, "amd64", oci_manifest, &manifest).await?;
    let msize = serde_json::to_vec(&manifest).unwrap().len();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": oci_manifest, "digest": m, "size": msize, "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    let i = put_manifest(
        reg,
        IMAGE_REPO,
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await?;
    // 1,000 tags on one manifest, 8 at a time.
    for b in std::iter::once(&config) {
        push(reg, TAGS_REPO, b, PushStyle::Monolithic).await?;
    }
    let small = json!({
        "schemaVersion": 2,
        "mediaType": oci_manifest,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.len()},
        "layers": [],
    });
    futures::stream::iter(0..1000)
        .map(|n| {
            let (reg, small) = (reg.clone(), small.clone());
            async move {
                put_manifest(&reg, TAGS_REPO, &format!("ci-{n:04}"), oci_manifest, &small).await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(Image {
        index: i,
        manifest: m,
        config: config.digest.clone(),
        layers: layers.iter().map(|l| l.digest.clone()).collect(),
        bytes: config.len() + layers.iter().map(Blob::len).sum::<u64>(),
    })
}

// ----- rates by wrk -----

async fn wrk(url: &str, authorization: &str, seconds: u64) -> Outcome {
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{seconds}s")])
        .args([
            "-H",
            &format!("Authorization: {authorization}"),
            "-H",
            &format!("Accept: {MANIFEST_ACCEPT}"),
            url,
        ])
        .output()
        .await
        .map_err(|e| format!("wrk: {e} (install Debian's wrk)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors: {text}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no rate in wrk's output: {text}"))
}

/// HEAD rates: wrk cannot measure them (it waits for the body a HEAD
/// response's Content-Length announces), so 32 connections of our own
/// client do, the same for every registry measured.
async fn head_rate(url: &str, authorization: &str, seconds: u64) -> Outcome {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let counts = futures::future::join_all((0..32).map(|_| {
        let http = http.clone();
        async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let r = http
                    .head(url)
                    .header("authorization", authorization)
                    .header("accept", MANIFEST_ACCEPT)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("HEAD {url}: {}", r.status()));
                }
                n += 1;
            }
            Ok::<u64, String>(n)
        }
    }))
    .await;
    let total: u64 = counts
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .sum();
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

// ----- pull storm -----

/// One `docker pull` of bench/app:latest by a new client: its seconds.
async fn docker_pull(reg: Registry, image: Arc<Image>) -> Result<(f64, u64), String> {
    let t = Instant::now();
    let s = scope(IMAGE_REPO, "pull");
    let accept = [("accept", MANIFEST_ACCEPT)];
    // docker's ping first: learns the auth scheme.
    let ping = reg.url("/v2/");
    let _ = reg.send("", |h| h.get(&ping)).await?;
    let get = |path: String| {
        let reg = reg.clone();
        let s = s.clone();
        async move {
            let r = reg
                .expect(&s, Method::GET, &path, 200, None, &accept)
                .await?;
            r.bytes()
                .await
                .map(|b| b.len() as u64)
                .map_err(|e| e.to_string())
        }
    };
    let mut n = get(format!("/v2/{IMAGE_REPO}/manifests/latest")).await?;
    n += get(format!("/v2/{IMAGE_REPO}/manifests/{}", image.manifest)).await?;
    n += get(format!("/v2/{IMAGE_REPO}/blobs/{}", image.config)).await?;
    let layers: Vec<u64> = futures::stream::iter(image.layers.clone())
        .map(|d| get(format!("/v2/{IMAGE_REPO}/blobs/{d}")))
        .buffer_unordered(3)
        .try_collect()
        .await?;
    n += layers.iter().sum::<u64>();
    Ok((t.elapsed().as_secs_f64(), n))
}

async fn storm(b: &Bench, image: &Arc<Image>, clients: usize) -> Result<Value, String> {
    let before = sample_process(b.args.pid);
    let t = Instant::now();
    let pulls: Vec<(f64, u64)> =
        futures::future::join_all((0..clients).map(|_| docker_pull(b.reg.fresh(), image.clone())))
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
    let wall = t.elapsed().as_secs_f64();
    let after = sample_process(b.args.pid);
    let mut times: Vec<f64> = pulls.iter().map(|p| p.0).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let served: u64 = pulls.iter().map(|p| p.1).sum();
    let blob_bytes = image.bytes * clients as u64;
    let mut v = json!({
        "clients": clients,
        "p50": quantile(&times, 0.5),
        "p99": quantile(&times, 0.99),
        "max": quantile(&times, 1.0),
        "wall": wall,
        "bytes_served": served,
    });
    if let (Some(a), Some(z)) = (before, after) {
        v["cpu_seconds_per_pull"] = json!((z.cpu_seconds - a.cpu_seconds) / clients as f64);
        v["read_bytes_per_blob_byte"] =
            json!(z.read_bytes.saturating_sub(a.read_bytes) as f64 / blob_bytes as f64);
    }
    Ok(v)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let reg = Registry::new(&args.url, &args.user, &args.password, 64);
    let mut b = Bench {
        reg: reg.clone(),
        args,
        results: BTreeMap::new(),
        seed: std::sync::atomic::AtomicU64::new(1),
    };
    if let Err(e) = run(&mut b).await {
        eprintln!("regbench: {e}");
        std::process::exit(1);
    }
    let out = json!({"url": b.args.url, "repeat": b.args.repeat, "results": b.results});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

async fn run(b: &mut Bench) -> Result<(), String> {
    let reg = b.reg.clone();
    let sizes: Vec<u64> = b
        .args
        .sizes
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let pulled = std::sync::Mutex::new(Vec::<(u64, String)>::new());
    for &size in &sizes {
        for (style, name) in [
            (PushStyle::Streamed, "streamed"),
            (PushStyle::Monolithic, "monolithic"),
            (PushStyle::Chunked, "chunked"),
        ] {
            let reg = reg.clone();
            let pulled = &pulled;
            b.measure(&format!("push_{size}m_{name}"), "MiB/s", |seed| {
                let reg = reg.clone();
                async move {
                    let (rate, digest) = push_one(&reg, seed, size, style).await?;
                    pulled.lock().unwrap().push((size, digest));
                    Ok(rate)
                }
            })
            .await;
        }
    }
    for &size in &sizes {
        let Some(digest) = pulled
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.0 == size)
            .map(|p| p.1.clone())
        else {
            continue;
        };
        let reg = reg.clone();
        b.measure(&format!("pull_{size}m"), "MiB/s", |_| {
            let (reg, digest) = (reg.clone(), digest.clone());
            async move {
                let t = Instant::now();
                let n = pull(&reg, "bench/big", &digest).await?;
                Ok(n as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64())
            }
        })
        .await;
    }
    let many = std::sync::Mutex::new(Vec::<String>::new());
    {
        let reg = reg.clone();
        let many = &many;
        b.measure("push_1m_x256_c16", "blobs/s", |seed| {
            let reg = reg.clone();
            async move {
                let (rate, digests) = push_many(&reg, seed, 256, 16).await?;
                *many.lock().unwrap() = digests;
                Ok(rate)
            }
        })
        .await;
    }
    let digests = many.lock().unwrap().clone();
    if !digests.is_empty() {
        let reg = reg.clone();
        b.measure("pull_1m_x256_c16", "blobs/s", |_| {
            let (reg, digests) = (reg.clone(), digests.clone());
            async move {
                let t = Instant::now();
                futures::stream::iter(digests.clone())
                    .map(|d| {
                        let reg = reg.clone();
                        async move { pull(&reg, "bench/many", &d).await }
                    })
                    .buffer_unordered(16)
                    .try_collect::<Vec<u64>>()
                    .await?;
                Ok(digests.len() as f64 / t.elapsed().as_secs_f64())
            }
        })
        .await;
    }

    let rate_names = [
        "rate_v2",
        "rate_manifest",
        "rate_blob_head",
        "rate_tags",
        "rate_catalog",
        "storm",
    ];
    if !rate_names.iter().any(|n| b.wanted(n)) {
        return Ok(());
    }
    let image = Arc::new(setup(&reg, b.next_seed()).await?);
    let pull_auth = reg
        .authorization(
            &scope(IMAGE_REPO, "pull"),
            &format!("/v2/{IMAGE_REPO}/manifests/latest"),
        )
        .await?;
    let tags_auth = reg
        .authorization(
            &scope(TAGS_REPO, "pull"),
            &format!("/v2/{TAGS_REPO}/manifests/ci-0000"),
        )
        .await?;
    // The catalog's scope (token mode) is asked for by GET /v2/_catalog.
    let catalog_url = reg.url("/v2/_catalog");
    let catalog_auth = {
        let r = reg
            .send("registry:catalog:*", |h| h.get(&catalog_url))
            .await?;
        if !r.status().is_success() {
            return Err(format!("catalog: {}", r.status()));
        }
        reg.learned("registry:catalog:*")
            .unwrap_or_else(|| pull_auth.clone())
    };
    let secs = b.args.wrk_seconds;
    let rates: Vec<(&str, String, &str, String)> = vec![
        ("rate_v2", reg.url("/v2/"), "GET", pull_auth.clone()),
        (
            "rate_manifest_tag_get",
            reg.url(&format!("/v2/{IMAGE_REPO}/manifests/latest")),
            "GET",
            pull_auth.clone(),
        ),
        (
            "rate_manifest_tag_head",
            reg.url(&format!("/v2/{IMAGE_REPO}/manifests/latest")),
            "HEAD",
            pull_auth.clone(),
        ),
        (
            "rate_manifest_digest_get",
            reg.url(&format!("/v2/{IMAGE_REPO}/manifests/{}", image.index)),
            "GET",
            pull_auth.clone(),
        ),
        (
            "rate_manifest_digest_head",
            reg.url(&format!("/v2/{IMAGE_REPO}/manifests/{}", image.index)),
            "HEAD",
            pull_auth.clone(),
        ),
        (
            "rate_blob_head",
            reg.url(&format!("/v2/{IMAGE_REPO}/blobs/{}", image.layers[0])),
            "HEAD",
            pull_auth.clone(),
        ),
        (
            "rate_tags_list_1000",
            reg.url(&format!("/v2/{TAGS_REPO}/tags/list")),
            "GET",
            tags_auth.clone(),
        ),
        (
            "rate_catalog",
            catalog_url.clone(),
            "GET",
            catalog_auth.clone(),
        ),
    ];
    for (name, url, method, auth) in rates {
        b.measure(name, "req/s", |_| {
            let (url, auth) = (url.clone(), auth.clone());
            async move {
                match method {
                    "HEAD" => head_rate(&url, &auth, secs).await,
                    _ => wrk(&url, &auth, secs).await,
                }
            }
        })
        .await;
    }
    let storms: Vec<usize> = b
        .args
        .storms
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for clients in storms {
        let name = format!("storm_{clients}");
        if !b.wanted(&name) {
            continue;
        }
        let busy = machine_busy(Duration::from_millis(500)).await;
        let mut runs = Vec::new();
        for _ in 0..b.args.repeat {
            runs.push(storm(b, &image, clients).await?);
        }
        let pick = |key: &str| {
            let mut v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
            median(&mut v)
        };
        let mut summary = json!({"busy": busy > BUSY, "machine_busy": busy, "runs": runs.clone()});
        for key in [
            "p50",
            "p99",
            "max",
            "wall",
            "cpu_seconds_per_pull",
            "read_bytes_per_blob_byte",
        ] {
            let m = pick(key);
            if m.is_finite() {
                summary[key] = json!(m);
            }
        }
        eprintln!("regbench: {name}: {summary}");
        b.results.insert(name, summary);
    }
    Ok(())
}
