//! Render times of the web UI and the listing extensions on a repository
//! with 1,000 tags (each its own image) and a registry with 10,000 more
//! (empty) repositories: the figures in docs/ui.md. Run by `bench/ui.sh` (release
//! build); prints a table, and fails only past a generous bound so a slow
//! machine in CI does not fail it.

use crate::support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use support::{TestServer, PASSWORD, USER};

const TAGS: usize = 1000;
const REPOSITORIES: usize = 10_000;
const RUNS: usize = 10;

async fn fill(s: &TestServer) {
    let c = s.client();
    let config = br#"{"architecture":"amd64","os":"linux","config":{}}"#;
    let config_digest = c.push_blob("bench/app", config).await;
    let pushes = (0..TAGS).map(|i| {
        let c = &c;
        let config_digest = &config_digest;
        async move {
            let layer = format!("layer {i}").into_bytes();
            let layer_digest = c.push_blob("bench/app", &layer).await;
            let manifest = support::image_manifest(
                config_digest,
                config.len(),
                &[(&layer_digest, layer.len())],
            );
            c.push_manifest(
                "bench/app",
                &format!("t{i:04}"),
                "application/vnd.oci.image.manifest.v1+json",
                &manifest,
            )
            .await;
        }
    });
    futures::stream::iter(pushes)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    // Many repositories, as directories (what a listing walks): each with
    // a `_manifests` directory and no tags.
    let root = s
        .storage_root()
        .join("docker/registry/v2/repositories/many");
    for i in 0..REPOSITORIES {
        std::fs::create_dir_all(root.join(format!("r{i:05}/_manifests/tags"))).unwrap();
    }
}

/// (first, median, max, bytes) of `RUNS` GETs after the first.
async fn time(
    url: &str,
    cookie: Option<&str>,
    basic: bool,
) -> (Duration, Duration, Duration, usize) {
    let http = reqwest::Client::new();
    let get = || {
        let mut r = http.get(url);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if basic {
            r = r.basic_auth(USER, Some(PASSWORD));
        }
        r
    };
    let started = Instant::now();
    let r = get().send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let len = r.bytes().await.unwrap().len();
    let first = started.elapsed();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let r = get().send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    (first, times[RUNS / 2], times[RUNS - 1], len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/ui.sh"]
async fn ui_render_times() {
    let s = TestServer::start().await;
    let started = Instant::now();
    fill(&s).await;
    eprintln!(
        "filled {TAGS} tags and {REPOSITORIES} repositories in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (cookie, _) = support::ui_session(&s.base, USER, PASSWORD).await;
    // (what, path, Basic auth rather than the UI session)
    let pages = [
        (
            "UI repository page: 100 of 1,000 tags, newest first",
            "/ui/r/bench/app",
            false,
        ),
        (
            "UI repository page: 100 of 1,000 tags, by name",
            "/ui/r/bench/app?sort=name",
            false,
        ),
        (
            "UI repository page: the last 100 by name",
            "/ui/r/bench/app?sort=name&last=t0899",
            false,
        ),
        ("UI image page", "/ui/r/bench/app:t0500", false),
        (
            "_ext/tags?n=1 (the tags listing alone)",
            "/v2/bench/app/_ext/tags?n=1",
            true,
        ),
        ("_ext/tags (first 100)", "/v2/bench/app/_ext/tags", true),
        (
            "_ext/tags?n=1000 (all)",
            "/v2/bench/app/_ext/tags?n=1000",
            true,
        ),
        (
            "tags/list (reference: the API's, from the metadata cache)",
            "/v2/bench/app/tags/list",
            true,
        ),
        ("UI repositories page (10,001 repositories)", "/ui/", false),
        (
            "_ext/repositories (first 100)",
            "/v2/_ext/repositories",
            true,
        ),
        (
            "_catalog (reference: the storage walk alone)",
            "/v2/_catalog",
            true,
        ),
    ];
    println!("| page | first request | median of {RUNS} | slowest | bytes |");
    println!("|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut worst = Duration::ZERO;
    for (what, path, basic) in pages {
        let (first, median, max, len) =
            time(&s.url(path), (!basic).then_some(cookie.as_str()), basic).await;
        println!(
            "| {what} | {} | {} | {} | {len} |",
            ms(first),
            ms(median),
            ms(max)
        );
        if path.starts_with("/ui/r/") {
            worst = worst.max(median);
        }
    }
    assert!(
        worst < Duration::from_secs(1),
        "a page of the 1,000-tag repository took {worst:?} (median)"
    );
}
