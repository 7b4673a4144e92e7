//! Load generator for `bench/registry.sh`: pushes and pulls blobs the way
//! docker does (POST, one streamed PATCH, PUT) against any registry, and
//! prints one JSON line of results. Data is generated before the clock
//! starts and sent from memory, so the client is never the disk-bound side
//! and spends no CPU on it while the server under test is timed.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest as _;

struct Target {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

// The same data as regbench's (one generator for both clients).
#[allow(dead_code)]
#[path = "regbench/load.rs"]
mod load;

/// A blob of `size_mib` MiB and its digest.
fn blob(seed: u64, size_mib: u64) -> (Vec<Bytes>, String) {
    let b = load::Blob::new(seed, size_mib);
    (b.pieces(), b.digest)
}

impl Target {
    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{}", self.base, url)
        };
        self.http
            .request(method, url)
            .basic_auth(&self.user, Some(&self.password))
    }

    /// `data`: the blob, one `Bytes` per MiB (cheap clones of pre-generated
    /// memory).
    async fn push(&self, repo: &str, data: Vec<Bytes>, digest: &str) {
        let r = self
            .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "POST");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let body = futures::stream::iter(data.into_iter().map(Ok::<_, std::io::Error>));
        let r = self
            .req(reqwest::Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "PATCH: {}",
            r.text().await.unwrap_or_default()
        );
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "PUT: {}",
            r.text().await.unwrap_or_default()
        );
    }

    async fn pull(&self, repo: &str, digest: &str) -> u64 {
        let r = self
            .req(reqwest::Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET blob");
        let mut stream = r.bytes_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            n += chunk.unwrap().len() as u64;
        }
        n
    }

    async fn put_image(&self, repo: &str, tag: &str) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let layer = load::Blob::new(7, 1).whole();
        let mut ds = Vec::new();
        for data in [Bytes::from_static(config), layer] {
            let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
            let r = self
                .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let sep = if location.contains('?') { '&' } else { '?' };
            let r = self
                .req(reqwest::Method::PUT, &format!("{location}{sep}digest={d}"))
                .header("content-type", "application/octet-stream")
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            ds.push((d, data.len()));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": ds[0].0, "size": ds[0].1},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ds[1].0, "size": ds[1].1}],
        });
        let r = self
            .req(reqwest::Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
            .header(
                "content-type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "manifest PUT");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_client BASE USER PASSWORD (big SIZE_MIB SEED | many COUNT CONCURRENCY SEED | image REPO TAG)";
    if args.len() < 5 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let target = std::sync::Arc::new(Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        base: args[1].clone(),
        user: args[2].clone(),
        password: args[3].clone(),
    });
    let num = |i: usize| args[i].parse::<u64>().expect(usage);
    match args[4].as_str() {
        "big" => {
            let (size, seed) = (num(5), num(6));
            let (data, digest) = blob(seed, size);
            let repo = "bench/big";
            let t = Instant::now();
            target.push(repo, data, &digest).await;
            let push_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let n = target.pull(repo, &digest).await;
            let pull_s = t.elapsed().as_secs_f64();
            assert_eq!(n, size << 20);
            println!(
                "{{\"size_mib\":{size},\"push_mib_s\":{:.1},\"pull_mib_s\":{:.1}}}",
                size as f64 / push_s,
                size as f64 / pull_s
            );
        }
        "many" => {
            let (count, concurrency, seed) = (num(5), num(6) as usize, num(7));
            let blobs: Vec<_> = (0..count).map(|i| blob(seed * 100_000 + i, 1)).collect();
            let t = Instant::now();
            futures::stream::iter(blobs)
                .map(|(data, d)| {
                    let target = target.clone();
                    async move { target.push("bench/many", data, &d).await }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<()>>()
                .await;
            let s = t.elapsed().as_secs_f64();
            println!(
                "{{\"blobs\":{count},\"concurrency\":{concurrency},\"blobs_s\":{:.1}}}",
                count as f64 / s
            );
        }
        "image" => {
            target.put_image(&args[5], &args[6]).await;
            println!("{{\"image\":\"{}:{}\"}}", args[5], args[6]);
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
