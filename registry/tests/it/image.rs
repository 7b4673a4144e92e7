//! The registry image (registry/Dockerfile): FROM scratch around the static
//! binary, non-root, registry:2's defaults, a working HEALTHCHECK, writable
//! data and auth directories. Ignored by default: it needs the Docker engine
//! and STATIC_BIN_DIR (scripts/test.sh provides both).

fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{docker, registry_image};

use docker::{docker, inspect, published_addr, wait_for_health, Resources};

/// Issue 5 asked for 15 MB; raised to 18 MB as the web UI, the cache and the
/// registry:2 config reader came, to 19 MB for the OpenTelemetry exporter
/// (+0.94 MB measured), and to 20 MB for quotas, untagged-manifest
/// retention and hot-blob reads (18,405,360 -> 19,077,808 bytes).
/// docker-registry 2.8's binary is 20.7 MB.
const MAX_IMAGE_BYTES: u64 = 20_000_000;
const USER: &str = "65532:65532";

/// One HTTP/1.1 GET; (status, head, body).
fn http_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
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
    (status, head.to_owned(), body.to_owned())
}

/// `docker args...` with its own client configuration directory (so logins
/// never touch the developer's ~/.docker) and `stdin` fed to it.
fn docker_with_config(config: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run docker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs docker and STATIC_BIN_DIR (run scripts/test.sh)"]
fn registry_image_is_small_non_root_healthy_and_stores_pushes() {
    let mut resources = Resources::new();
    let tag = format!("{}:test", unique_name("registry-image"));
    registry_image::build(&mut resources, &tag, &["--build-arg", "VERSION=9.9.9-test"]);

    let size: u64 = inspect(&tag, "{{.Size}}").parse().unwrap();
    eprintln!("registry image: {size} bytes");
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    assert_eq!(inspect(&tag, "{{.Config.User}}"), USER);
    assert_eq!(
        inspect(&tag, "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/registry","healthcheck"]"#
    );
    assert_eq!(
        inspect(&tag, "{{json .Config.Entrypoint}}"),
        r#"["/registry"]"#
    );
    assert!(inspect(&tag, "{{json .Config.ExposedPorts}}").contains("\"5000/tcp\""));
    assert!(inspect(&tag, "{{json .Config.Volumes}}").contains("\"/var/lib/registry\""));
    // The defaults are the binary's in image mode, not REGISTRY_* variables
    // (which would override a mounted registry:2 config.yml).
    let env = inspect(&tag, "{{json .Config.Env}}");
    assert!(env.contains("REGISTRY_DEFAULTS=image"), "{env}");
    assert!(!env.contains("REGISTRY_HTTP_ADDR"), "{env}");
    let labels: serde_json::Value =
        serde_json::from_str(&inspect(&tag, "{{json .Config.Labels}}")).unwrap();
    assert_eq!(labels["org.opencontainers.image.title"], "registry");
    assert_eq!(labels["org.opencontainers.image.version"], "9.9.9-test");
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels["org.opencontainers.image.description"].is_string());
    assert!(labels["org.opencontainers.image.revision"].is_string());

    // No mounts at all: the registry must create /auth/htpasswd and store
    // blobs under /var/lib/registry (an anonymous volume from VOLUME, which
    // inherits the image directory's owner) as the non-root user.
    let name = unique_name("registry-image-run");
    resources.run(
        &name,
        &[
            "-p",
            "127.0.0.1::5000",
            "--health-interval",
            "1s",
            "--health-timeout",
            "3s",
            "--health-retries",
            "2",
            &tag,
        ],
    );
    wait_for_health(&name, "healthy", Duration::from_secs(60));
    let top = docker(&["top", &name, "-o", "pid,uid,args"]);
    let uids: Vec<&str> = top
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        !uids.is_empty() && uids.iter().all(|uid| *uid == "65532"),
        "not running as 65532: {top}"
    );
    let logs = docker(&["logs", &name]);
    let password = logs
        .lines()
        .find_map(|l| {
            l.strip_prefix("Created /auth/htpasswd with user 'admin' and password '")
                .and_then(|rest| rest.strip_suffix("' (shown only this once)."))
        })
        .unwrap_or_else(|| panic!("no created-user line in the logs:\n{logs}"))
        .to_owned();

    let addr = published_addr(&name, "5000/tcp");
    let (status, head, _) = http_get(addr, "/v2/", None);
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{head}"
    );

    // A real push through the docker engine: the storage directory is
    // writable by the image's user.
    let config = tempfile::tempdir().unwrap();
    let registry = format!("127.0.0.1:{}", addr.port());
    docker_with_config(
        config.path(),
        &[
            "login",
            "--username",
            "admin",
            "--password-stdin",
            &registry,
        ],
        &password,
    );
    let pushed = format!("{registry}/selftest/registry:9.9.9-test");
    docker(&["tag", &tag, &pushed]);
    resources.track_image(&pushed);
    docker_with_config(config.path(), &["push", &pushed], "");
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"))
    );
    let (status, _, body) = http_get(addr, "/v2/selftest/registry/tags/list", Some(&basic));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"9.9.9-test\""), "{body}");
    assert_eq!(inspect(&name, "{{.State.Health.Status}}"), "healthy");

    // SIGTERM as PID 1: a clean, quick exit.
    docker(&["stop", "-t", "10", &name]);
    assert_eq!(inspect(&name, "{{.State.ExitCode}}"), "0");

    // A registry:2 deployment's config.yml, mounted where registry:2 reads
    // it, is what the image runs with (its realm, its headers), and the
    // healthcheck follows its address.
    let mounted = tempfile::tempdir().unwrap();
    let file = mounted.path().join("config.yml");
    std::fs::write(
        &file,
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n\
         http:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\n\
         auth:\n  htpasswd:\n    realm: mounted-realm\n    path: /auth/htpasswd\n",
    )
    .unwrap();
    let volume = format!("{}:/etc/docker/registry/config.yml:ro", file.display());
    let name = unique_name("registry-mounted");
    resources.run(
        &name,
        &[
            "-p",
            "127.0.0.1::5000",
            "-v",
            &volume,
            "--health-interval",
            "1s",
            "--health-timeout",
            "3s",
            "--health-retries",
            "2",
            &tag,
        ],
    );
    wait_for_health(&name, "healthy", Duration::from_secs(60));
    let addr = published_addr(&name, "5000/tcp");
    let (status, head, _) = http_get(addr, "/v2/", None);
    assert_eq!(status, 401, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("www-authenticate: basic realm=\"mounted-realm\""),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    docker(&["stop", "-t", "10", &name]);
}
