//! Image tests: counter-app/Dockerfile around the static binary, run on a
//! Docker network of the test's own with a locally built Redis image.
//! Ignored by default: they need the Docker engine and STATIC_BIN_DIR
//! (scripts/test.sh provides both).

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::docker::{docker, inspect, published_addr, wait_for_health, Resources};
use support::{counter_image, redis_image, unique_name};

/// The issue's limit: each image under 15 MB.
const MAX_IMAGE_BYTES: u64 = 15_000_000;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 GET with `Connection: close`; (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response from {addr}: {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    (status, body.to_owned())
}

fn seen_count(body: &str) -> u64 {
    body.strip_prefix("Hello World! I have been seen ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected greeting: {body:?}"))
}

#[test]
#[ignore = "needs docker and STATIC_BIN_DIR (run scripts/test.sh)"]
fn counter_image_is_small_labelled_non_root_and_runs() {
    let mut resources = Resources::new();
    let tag = format!("{}:test", unique_name("counter-app-image"));
    counter_image::build(&mut resources, &tag, &["--build-arg", "VERSION=9.9.9-test"]);

    let size: u64 = inspect(&tag, "{{.Size}}").parse().unwrap();
    eprintln!("counter-app image: {size} bytes");
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    assert_eq!(
        inspect(&tag, "{{len .RootFS.Layers}}"),
        "1",
        "only the binary"
    );

    assert_eq!(inspect(&tag, "{{.Config.User}}"), "65532:65532");
    assert!(inspect(&tag, "{{json .Config.ExposedPorts}}").contains("\"8000/tcp\""));
    assert_eq!(
        inspect(&tag, "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/counter-app","healthcheck"]"#
    );
    let labels: serde_json::Value =
        serde_json::from_str(&inspect(&tag, "{{json .Config.Labels}}")).unwrap();
    assert_eq!(labels["org.opencontainers.image.title"], "counter-app");
    assert_eq!(labels["org.opencontainers.image.version"], "9.9.9-test");
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels["org.opencontainers.image.description"].is_string());

    // The static binary runs in an empty filesystem, as the non-root user.
    let name = unique_name("counter-app-version");
    resources.run(&name, &[&tag, "--version"]);
    support::wait_for(
        "the version container to exit",
        Duration::from_secs(30),
        || (inspect(&name, "{{.State.Status}}") == "exited").then_some(()),
    );
    assert_eq!(inspect(&name, "{{.State.ExitCode}}"), "0");
    assert_eq!(docker(&["logs", &name]), "counter-app 0.1.0");
}

#[test]
#[ignore = "needs docker and STATIC_BIN_DIR (run scripts/test.sh)"]
fn two_replicas_share_one_redis_and_health_follows_it() {
    let mut resources = Resources::new();
    let app_tag = format!("{}:test", unique_name("counter-app-image"));
    let redis_tag = format!("{}:test", unique_name("counter-redis-image"));
    counter_image::build(&mut resources, &app_tag, &[]);
    redis_image::build(&mut resources, &redis_tag);
    eprintln!(
        "redis test image: {} bytes",
        inspect(&redis_tag, "{{.Size}}")
    );

    let network = unique_name("counter-net");
    resources.network(&network);
    let redis = unique_name("counter-redis");
    // The app's default REDIS_HOST is "redis", as in the seed's stack.
    resources.run(
        &redis,
        &[
            "--network",
            &network,
            "--network-alias",
            "redis",
            &redis_tag,
        ],
    );

    let apps: Vec<String> = (0..2)
        .map(|i| unique_name(&format!("counter-app{i}")))
        .collect();
    for app in &apps {
        resources.run(
            app,
            &[
                "--network",
                &network,
                "-p",
                "127.0.0.1::8000",
                // Faster than the Dockerfile's 10 s, same probe command.
                "--health-interval",
                "1s",
                "--health-timeout",
                "3s",
                "--health-retries",
                "2",
                &app_tag,
            ],
        );
    }
    for app in &apps {
        wait_for_health(app, "healthy", HEALTH_TIMEOUT);
    }
    let addrs: Vec<SocketAddr> = apps.iter().map(|a| published_addr(a, "8000/tcp")).collect();
    let hostnames: Vec<String> = apps
        .iter()
        .map(|a| inspect(a, "{{.Config.Hostname}}"))
        .collect();
    assert_ne!(hostnames[0], hostnames[1]);

    // Alternating between the replicas, one shared counter goes 1, 2, 3, ...
    let mut expected = 0;
    for _ in 0..3 {
        for (addr, hostname) in addrs.iter().zip(&hostnames) {
            expected += 1;
            let (status, body) = http_get(*addr, "/");
            assert_eq!(status, 200, "{body}");
            assert_eq!(seen_count(&body), expected, "{body}");
            assert!(body.contains(&format!("Served by: {hostname}")), "{body}");
        }
    }

    docker(&["stop", "-t", "5", &redis]);
    for app in &apps {
        wait_for_health(app, "unhealthy", HEALTH_TIMEOUT);
    }
    let (status, body) = http_get(addrs[0], "/");
    assert_eq!(status, 503, "{body}");

    // Redis comes back (possibly at a new address): the replicas recover alone.
    docker(&["start", &redis]);
    for app in &apps {
        wait_for_health(app, "healthy", HEALTH_TIMEOUT);
    }
    let (status, body) = http_get(addrs[1], "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen_count(&body), 1, "the test Redis keeps no data: {body}");

    // As PID 1 the app handles SIGTERM itself: a quick, clean exit.
    let started = Instant::now();
    docker(&["stop", "-t", "10", &apps[0]]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(inspect(&apps[0], "{{.State.ExitCode}}"), "0");
    let logs = docker(&["logs", &apps[0]]);
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("all requests finished"), "{logs}");
}
