//! registry:2 configuration files, unchanged, start this registry and make
//! it behave as Debian's docker-registry (Distribution 2.8) does with the
//! same file and the same variables: each case starts both binaries with
//! `serve <file>`, overrides only what a test must (listen address, storage
//! directory, files it makes) with REGISTRY_* variables given to both, and
//! compares what real clients see.

use crate::support;
use crate::support::oci_layout;
use crate::support::skopeo;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_layout::{Layer, Layout, Tar};
use skopeo::Skopeo;
const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
use support::s3::Moto;
use support::token_issuer::{openssl, TokenIssuer};
use support::{free_port, sha256_digest};

const OURS: &str = env!("CARGO_BIN_EXE_registry");
const USER: &str = "alice";
const PASSWORD: &str = "wonderland-2";

/// A registry child process, killed when dropped.
struct Proc {
    child: Child,
    base: String,
    host: String,
    log: PathBuf,
    /// `http.debug.addr`, given to each process as a variable.
    debug: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `<bin> serve <file>` with `env`, its own port and storage directory;
/// returns once it answers `GET /v2/` (any status).
async fn start(
    bin: &str,
    file: &Path,
    env: &[(String, String)],
    dir: &Path,
    tls: Option<&Path>,
) -> Proc {
    let on_disk = std::fs::read_to_string(file)
        .unwrap()
        .contains("filesystem:");
    let port = free_port();
    let debug = format!("127.0.0.1:{}", free_port());
    let root = dir.join(format!("storage-{port}"));
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.join(format!("log-{port}"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(bin);
    if on_disk {
        cmd.env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root);
    }
    let child = cmd
        .arg("serve")
        .arg(file)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_HTTP_DEBUG_ADDR", &debug)
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut p = Proc {
        child,
        base: format!("{scheme}://127.0.0.1:{port}"),
        host: format!("127.0.0.1:{port}"),
        log,
        debug,
    };
    let http = client(tls);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!("{bin} exited with {status}:\n{}", p.log_text());
        }
        let answer = http.get(format!("{}/v2/", p.base)).send().await;
        if answer.is_ok() {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{bin}: no answer in 30 s ({answer:?}):\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client(ca: Option<&Path>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// Both registries, on the same file and variables.
struct Both {
    ours: Proc,
    theirs: Proc,
}

async fn both(file: &Path, env: &[(String, String)], dir: &Path, tls: Option<&Path>) -> Both {
    assert!(
        Path::new(DOCKER_REGISTRY).exists(),
        "{DOCKER_REGISTRY} is missing: run scripts/ci-deps.sh"
    );
    Both {
        ours: start(OURS, file, env, dir, tls).await,
        theirs: start(DOCKER_REGISTRY, file, env, dir, tls).await,
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bcrypt_htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let hash = htpasswd::hash_bcrypt(PASSWORD, 5).unwrap();
    std::fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
    path
}

/// What an anonymous and a logged-in `GET /v2/` show: status, challenge,
/// the configured headers.
async fn base_view(http: &reqwest::Client, p: &Proc, creds: Option<(&str, &str)>) -> Vec<String> {
    let mut req = http.get(format!("{}/v2/", p.base));
    if let Some((u, pw)) = creds {
        req = req.basic_auth(u, Some(pw));
    }
    let r = req.send().await.unwrap();
    let h = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    vec![
        r.status().as_u16().to_string(),
        h("www-authenticate"),
        h("x-content-type-options"),
        h("docker-distribution-api-version"),
    ]
}

/// Ours and registry:2's `base_view`s agree, but for one header: ours sends
/// `X-Content-Type-Options: nosniff` whether or not `http.headers` names it
/// (registry:2 only when its config does, as its shipped config.yml does).
fn assert_same_view(mut ours: Vec<String>, mut theirs: Vec<String>) {
    assert_eq!(ours[2], "nosniff", "{ours:?}");
    assert!(theirs[2].is_empty() || theirs[2] == "nosniff", "{theirs:?}");
    ours.remove(2);
    theirs.remove(2);
    assert_eq!(ours, theirs);
}

fn small_image(dir: &Path, seed: u64) -> (PathBuf, String) {
    let src = dir.join(format!("layout-{seed}"));
    let mut layout = Layout::create(&src);
    let layer = Layer::tar_gz(
        Tar::new()
            .file("hello.txt", 0o644, format!("seed {seed}\n").as_bytes())
            .finish(),
    );
    let image = layout.add_image("linux", "amd64", &[layer]);
    layout.tag("v1", &image);
    (src, image.digest)
}

/// skopeo pushes an image to `p` with Basic credentials and reads its
/// digest back.
async fn skopeo_push(sk: &Skopeo, src: &Path, p: &Proc, tls: bool) -> String {
    let dest = format!("docker://{}/team/app:v1", p.host);
    let creds = format!("{USER}:{PASSWORD}");
    let verify = if tls {
        "--dest-tls-verify=true"
    } else {
        "--dest-tls-verify=false"
    };
    let mut args = vec!["copy", "--preserve-digests", "--dest-creds", &creds, verify];
    let src_ref = format!("oci:{}:v1", src.display());
    args.push(&src_ref);
    args.push(&dest);
    sk.ok(&args).await;
    let out = sk
        .ok(&[
            "inspect",
            "--creds",
            &creds,
            "--tls-verify=false",
            "--raw",
            &dest,
        ])
        .await;
    sha256_digest(&out.stdout)
}

/// POST then PUT with the digest (Distribution 2.8 has no monolithic POST);
/// the PUT's status.
async fn push_blob(
    http: &reqwest::Client,
    p: &Proc,
    repo: &str,
    blob: &[u8],
    token: Option<&str>,
) -> u16 {
    let auth = |r: reqwest::RequestBuilder| match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let r = auth(http.post(format!("{}/v2/{repo}/blobs/uploads/", p.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}: start upload", p.base);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{}{location}", p.base)
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let digest = sha256_digest(blob);
    auth(http.put(format!("{url}{sep}digest={digest}")))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Debian's own file, and Distribution's documented htpasswd example: the
/// same challenge and headers, logins, a skopeo push, a delete.
#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_files_behave_as_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = bcrypt_htpasswd(dir.path());
    let example = dir.path().join("htpasswd-example.yml");
    std::fs::write(
        &example,
        "version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
    environment: development
storage:
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
http:
  addr: :5000
  secret: asecretforlocaldevelopment
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/registry
",
    )
    .unwrap();
    let debian = Path::new("/etc/docker/registry/config.yml");
    assert!(
        debian.exists(),
        "Debian's docker-registry package ships {}: run scripts/ci-deps.sh",
        debian.display()
    );
    let sk = Skopeo::new();
    let http = client(None);
    for file in [debian, example.as_path()] {
        // Debian's file names the directory /etc/docker/registry as the
        // htpasswd file; docker-registry then refuses every login (400) and
        // we refuse to start: both need the variable.
        let env = vars(&[("REGISTRY_AUTH_HTPASSWD_PATH", htpasswd.to_str().unwrap())]);
        let b = both(file, &env, dir.path(), None).await;
        for creds in [None, Some((USER, PASSWORD)), Some((USER, "wrong"))] {
            assert_eq!(
                base_view(&http, &b.ours, creds).await,
                base_view(&http, &b.theirs, creds).await,
                "{}: GET /v2/ with {creds:?}",
                file.display()
            );
        }
        let (src, digest) = small_image(dir.path(), 1);
        assert_eq!(skopeo_push(&sk, &src, &b.ours, false).await, digest);
        assert_eq!(skopeo_push(&sk, &src, &b.theirs, false).await, digest);
        // delete.enabled: true in both files.
        for p in [&b.ours, &b.theirs] {
            let r = http
                .delete(format!("{}/v2/team/app/manifests/{digest}", p.base))
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}: delete on {}", file.display(), p.base);
        }
    }
}

/// Distribution's token example against an external issuer (docker_auth's
/// shape: ES256, the certificate's libtrust kid): the same challenge, and
/// the issuer's tokens push and pull on both.
#[tokio::test(flavor = "multi_thread")]
async fn token_file_behaves_as_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let policy = [(USER, (PASSWORD, vec![("team/app", vec!["pull", "push"])]))]
        .into_iter()
        .collect();
    let issuer = TokenIssuer::start("auth.example.com", "registry.example.com", policy).await;
    let file = dir.path().join("token.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
auth:
  token:
    realm: {}
    service: registry.example.com
    issuer: auth.example.com
    rootcertbundle: {}
",
            issuer.realm,
            issuer.cert.display()
        ),
    )
    .unwrap();
    let b = both(&file, &[], dir.path(), None).await;
    let http = client(None);
    for p in [&b.ours, &b.theirs] {
        let r = http
            .get(format!("{}/v2/team/app/tags/list", p.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        let params = support::token_issuer::parse_challenge(&challenge);
        assert_eq!(params["realm"], issuer.realm, "{challenge}");
        assert_eq!(params["service"], "registry.example.com", "{challenge}");
        assert_eq!(params["scope"], "repository:team/app:pull", "{challenge}");
        let token: serde_json::Value = http
            .get(format!(
                "{}?service=registry.example.com&scope=repository:team/app:pull,push",
                issuer.realm
            ))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap();
        let blob = b"a blob pushed with an external issuer's token";
        let digest = sha256_digest(blob);
        let r = push_blob(&http, p, "team/app", blob, Some(token)).await;
        assert_eq!(r, 201, "{}: push", p.base);
        let r = http
            .get(format!("{}/v2/team/app/blobs/{digest}", p.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), &blob[..]);
        let r = http
            .get(format!("{}/v2/team/app/tags/list", p.base))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{}: a bad token", p.base);
    }
}

/// Distribution's S3 example on moto, both registries on one bucket and
/// root directory: what either pushes, the other serves.
#[tokio::test(flavor = "multi_thread")]
async fn s3_file_shares_a_bucket_with_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start().await;
    moto.create_bucket("registry-bucket").await;
    let endpoint = moto.endpoint.trim_start_matches("http://");
    let file = dir.path().join("s3.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1
log:
  level: info
storage:
  s3:
    accesskey: test
    secretkey: test
    region: us-east-1
    regionendpoint: {endpoint}
    bucket: registry-bucket
    encrypt: false
    secure: false
    v4auth: true
    chunksize: 5242880
    forcepathstyle: true
    rootdirectory: /s3/object/name/prefix
  redirect:
    disable: true
  delete:
    enabled: true
http:
  addr: :5000
"
        ),
    )
    .unwrap();
    let b = both(&file, &[], dir.path(), None).await;
    let http = client(None);
    // No auth section: both serve anonymously, as registry:2 does.
    assert_same_view(
        base_view(&http, &b.ours, None).await,
        base_view(&http, &b.theirs, None).await,
    );
    for (writer, reader) in [(&b.theirs, &b.ours), (&b.ours, &b.theirs)] {
        let blob = format!("pushed to {}", writer.base).into_bytes();
        let digest = sha256_digest(&blob);
        let r = push_blob(&http, writer, "shared/app", &blob, None).await;
        assert_eq!(r, 201, "push to {}", writer.base);
        let r = http
            .get(format!("{}/v2/shared/app/blobs/{digest}", reader.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "{} serves what {} pushed",
            reader.base,
            writer.base
        );
        assert_eq!(r.bytes().await.unwrap(), blob);
    }
    let keys = moto
        .keys(
            "registry-bucket",
            "s3/object/name/prefix/docker/registry/v2/",
        )
        .await;
    assert!(!keys.is_empty(), "both write under rootdirectory");
}

/// Distribution's TLS example: both serve HTTPS with the file's certificate.
#[tokio::test(flavor = "multi_thread")]
async fn tls_file_serves_https_as_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("domain.key");
    let cert = dir.path().join("domain.crt");
    openssl(&[
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        // A leaf, not a CA (rustls refuses a CA as the server's certificate).
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let htpasswd = bcrypt_htpasswd(dir.path());
    let file = dir.path().join("tls.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  tls:
    certificate: {}
    key: {}
    minimumtls: tls1.2
auth:
  htpasswd:
    realm: basic-realm
    path: {}
",
            cert.display(),
            key.display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let b = both(&file, &[], dir.path(), Some(&cert)).await;
    let http = client(Some(&cert));
    for creds in [None, Some((USER, PASSWORD))] {
        assert_same_view(
            base_view(&http, &b.ours, creds).await,
            base_view(&http, &b.theirs, creds).await,
        );
    }
    // Plain HTTP to a TLS listener is refused by both (no answer as HTTP).
    for p in [&b.ours, &b.theirs] {
        let plain = client(None)
            .get(format!("http://{}/v2/", p.host))
            .send()
            .await;
        assert!(plain.map_or(true, |r| r.status() == 400), "{}", p.host);
    }
}

/// Files with sections this build does not carry out start, and
/// `check-config` names each such key and what happens instead; a key that
/// would change security is refused with its name.
#[tokio::test(flavor = "multi_thread")]
async fn unimplemented_keys_are_named_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mirror.yml");
    std::fs::write(
        &file,
        "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  secret: topsecret
redis:
  addr: localhost:6379
proxy:
  remoteurl: https://registry-1.docker.io
  username: someone
  password: hunter2
  ttl: 168h
",
    )
    .unwrap();
    let out = Command::new(OURS)
        .args(["check-config"])
        .arg(&file)
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# warning: redis: not used"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("proxy.remoteurl")
            && l.contains("https://registry-1.docker.io")
            && l.ends_with("# file")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("proxy.ttl") && l.contains("7days")),
        "{text}"
    );
    assert!(text.contains("# warning: auth: not set"), "{text}");
    assert!(
        !text.contains("topsecret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("http.addr")
            && l.contains("127.0.0.1:0")
            && l.ends_with("# variable REGISTRY_HTTP_ADDR")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("http.secret")
            && l.contains("********")
            && l.ends_with("# file")),
        "{text}"
    );

    std::fs::write(&file, "version: 0.1\nstorage:\n  gcs:\n    bucket: b\n").unwrap();
    let out = Command::new(OURS).arg("serve").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("storage.gcs"), "{err}");

    std::fs::write(&file, "version: 0.1\nstorage:\n  filesystem: {}\n").unwrap();
    let out = Command::new(OURS)
        .arg("serve")
        .arg(&file)
        .env("REGISTRY_AUTH_SILLY_REALM", "r")
        .env("REGISTRY_AUTH_SILLY_SERVICE", "s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth.silly") && err.contains("REGISTRY_AUTH_SILLY"),
        "{err}"
    );
}

/// `http.debug`: the debug listener serves Prometheus metrics at the
/// configured path and `/debug/health`, on both.
#[tokio::test(flavor = "multi_thread")]
async fn debug_listener_serves_metrics_and_health_as_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("debug.yml");
    std::fs::write(
        &file,
        "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  debug:
    addr: localhost:5001
    prometheus:
      enabled: true
      path: /metrics
",
    )
    .unwrap();
    let b = both(&file, &[], dir.path(), None).await;
    let http = client(None);
    for p in [&b.ours, &b.theirs] {
        // The API answers once, so the request counters exist.
        http.get(format!("{}/v2/", p.base)).send().await.unwrap();
        let r = http
            .get(format!("http://{}/metrics", p.debug))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}: /metrics", p.debug);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("# TYPE") && text.contains("http_request"),
            "{}: {text}",
            p.debug
        );
        let r = http
            .get(format!("http://{}/debug/health", p.debug))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}: /debug/health", p.debug);
        assert_eq!(r.text().await.unwrap().trim(), "{}");
    }
}

/// Distribution's own example configurations (`cmd/registry/*.yml` at
/// v2.8.3 and v3.1.1, in tests/fixtures/distribution/) as a user would run
/// them: only the storage root changed (and the htpasswd path, which the
/// registry would otherwise create under /etc), plus the ports 5000/5001
/// made free ones so the test runs beside others. Host forms are kept:
/// `:port`, and `localhost:5001` for the debug listener.
fn fixture_copy(src: &Path, dir: &Path, port: u16, debug: u16) -> PathBuf {
    let name = format!(
        "{}-{}",
        src.parent().unwrap().file_name().unwrap().to_string_lossy(),
        src.file_name().unwrap().to_string_lossy()
    );
    let root = dir.join(format!("root-{name}"));
    let text: String = std::fs::read_to_string(src)
        .unwrap()
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let line = if line.trim_start().starts_with("rootdirectory:") {
                format!("{indent}rootdirectory: {}", root.display())
            } else if line.trim() == "path: /etc/registry" {
                format!(
                    "{indent}path: {}",
                    dir.join(format!("htpasswd-{name}")).display()
                )
            } else {
                line.to_owned()
            };
            line.replace(":5000", &format!(":{port}"))
                .replace(":5001", &format!(":{debug}"))
                + "\n"
        })
        .collect();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn distribution_example_configs_check_and_serve() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/distribution");
    let dir = tempfile::tempdir().unwrap();
    let http = client(None);
    let mut seen = Vec::new();
    for version in ["v2.8.3", "v3.1.1"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures.join(version))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        files.sort();
        for src in files {
            let text = std::fs::read_to_string(&src).unwrap();
            assert!(
                text.starts_with("# Copyright The CNCF Distribution Authors, Apache License 2.0"),
                "{}: license header",
                src.display()
            );
            let (port, debug) = (free_port(), free_port());
            let file = fixture_copy(&src, dir.path(), port, debug);
            let shown = format!("{version}/{}", src.file_name().unwrap().to_string_lossy());
            let out = Command::new(OURS)
                .arg("check-config")
                .arg(&file)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("configuration ok"),
                "{shown}: check-config failed:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let log = dir.path().join(format!("log-{port}"));
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(OURS)
                .arg("serve")
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "{shown}: exited with {status}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                if let Ok(r) = http.get(format!("{base}/v2/")).send().await {
                    break r.status().as_u16();
                }
                assert!(Instant::now() < deadline, "{shown}: no answer in 30 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // 401 where the file sets htpasswd auth, else 200.
            let expected = if text.contains("htpasswd:") { 401 } else { 200 };
            let debug_status = if text.contains("debug:") {
                // `localhost:5001` and `:5001` both answer on loopback.
                let r = http
                    .get(format!("http://localhost:{debug}/metrics"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                Some(r.unwrap_or(0))
            } else {
                None
            };
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(status, expected, "{shown}: GET /v2/");
            if let Some(s) = debug_status {
                assert_eq!(s, 200, "{shown}: GET /metrics on http.debug.addr");
            }
            seen.push(shown);
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

/// `http.net: unix` with `http.addr` a socket path, as registry:2 takes it:
/// the API answers on the socket, and a stale socket file left by an
/// earlier run is replaced.
#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_listener_serves_the_api() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("registry.sock");
    // A stale socket (bound, nobody listening).
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let file = dir.path().join("unix.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1
storage:
  filesystem:
    rootdirectory: {}
http:
  net: unix
  addr: {}
",
            dir.path().join("storage").display(),
            sock.display()
        ),
    )
    .unwrap();
    let out = Command::new(OURS)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("listening on unix:{}", sock.display())),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(OURS)
        .arg("serve")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&sock) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            break reply;
        }
        assert!(Instant::now() < deadline, "no answer on {}", sock.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The healthcheck subcommand probes the socket too.
    let health = Command::new(OURS)
        .arg("healthcheck")
        .arg(&file)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("docker-distribution-api-version: registry/2.0"),
        "{reply}"
    );
    assert!(
        health.status.success(),
        "healthcheck: {}",
        String::from_utf8_lossy(&health.stderr)
    );
}
