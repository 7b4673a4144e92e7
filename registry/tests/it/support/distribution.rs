//! Debian's `docker-registry` (CNCF Distribution 2.8, what `registry:2`
//! runs) as a child process on 127.0.0.1, no auth, for layout compatibility
//! checks. Killed when dropped, even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, Client};

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

pub struct DockerRegistry {
    child: Option<Child>,
    pub base: String,
    pub host: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts `docker-registry serve` on a free port with filesystem storage
    /// at `root` and deletes enabled; returns once `GET /v2/` answers 200.
    pub async fn start(root: &Path) -> DockerRegistry {
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        DockerRegistry::start_with_storage(&storage).await
    }

    /// Starts with an S3 bucket (path-style, at an S3-compatible endpoint)
    /// as storage.
    pub async fn start_s3(endpoint: &str, bucket: &str) -> DockerRegistry {
        let storage = format!(
            "  s3:\n    accesskey: test\n    secretkey: test\n    region: us-east-1\n    \
             regionendpoint: {endpoint}\n    bucket: {bucket}\n    forcepathstyle: true\n    \
             secure: false\n    v4auth: true\n  redirect:\n    disable: true\n"
        );
        DockerRegistry::start_with_storage(&storage).await
    }

    /// `storage` is the YAML body of the `storage:` section, minus `delete`.
    pub async fn start_with_storage(storage: &str) -> DockerRegistry {
        DockerRegistry::start_with_config(storage, "").await
    }

    /// Token auth against an external issuer (`realm`, `service`, `issuer`,
    /// its certificate), filesystem storage at `root`. Ready when `GET /v2/`
    /// answers 401.
    pub async fn start_token(
        root: &Path,
        realm: &str,
        service: &str,
        issuer: &str,
        cert: &Path,
    ) -> DockerRegistry {
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        let auth = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
             issuer: {issuer}\n    rootcertbundle: {}\n",
            cert.display()
        );
        DockerRegistry::start_with_config(&storage, &auth).await
    }

    /// `storage` as above; `extra` is YAML appended at the top level.
    pub async fn start_with_config(storage: &str, extra: &str) -> DockerRegistry {
        DockerRegistry::start_inner(storage, extra, false).await
    }

    /// As [`Self::start_with_config`], with its access log on (in `log`), to
    /// count the requests it served ([`Self::requests`]).
    pub async fn start_logged(storage: &str, extra: &str) -> DockerRegistry {
        DockerRegistry::start_inner(storage, extra, true).await
    }

    /// Access-log lines of requests whose request line starts with
    /// `METHOD path` and whose status is `status` (any when None).
    pub fn requests(&self, method: &str, path: &str, status: Option<u16>) -> usize {
        let needle = format!("\"{method} {path}");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter(|l| {
                status.is_none_or(|s| {
                    l.split('"')
                        .nth(2)
                        .and_then(|rest| rest.split_whitespace().next())
                        .is_some_and(|code| code == s.to_string())
                })
            })
            .count()
    }

    async fn start_inner(storage: &str, extra: &str, access_log: bool) -> DockerRegistry {
        assert!(
            Path::new(DOCKER_REGISTRY).exists(),
            "{DOCKER_REGISTRY} is missing: run scripts/ci-deps.sh (apt package docker-registry)"
        );
        let mut last_log = String::new();
        // The port is free when picked; another process may take it before
        // the child binds, so a start that dies early is retried.
        for _ in 0..3 {
            match DockerRegistry::try_start(storage, extra, free_port(), access_log).await {
                Ok(r) => return r,
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start:\n{last_log}");
    }

    async fn try_start(
        storage: &str,
        extra: &str,
        port: u16,
        access_log: bool,
    ) -> Result<DockerRegistry, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: {}\n\
                 storage:\n{storage}  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: layout-compat-test\n{extra}",
                !access_log
            ),
        )
        .unwrap();
        let log = dir.path().join("log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            // The Go AWS SDK refuses to start when this names a bundle it
            // cannot use with its transport; the S3 endpoint here is http.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {DOCKER_REGISTRY}: {e}"));
        let mut r = DockerRegistry {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            host: format!("127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = r.child.as_mut().unwrap().try_wait().unwrap() {
                r.child = None;
                return Err(format!("exited with {status}: {}", r.log_text()));
            }
            if let Ok(resp) = http.get(format!("{}/v2/", r.base)).send().await {
                // 401: it is up, and asks for the token auth it was given.
                if resp.status() == 200 || (!extra.is_empty() && resp.status() == 401) {
                    return Ok(r);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no 200 on /v2/ within 30 s: {}", r.log_text()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            auth: None,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process and waits for it: every response it sent was
    /// written to disk before it was sent, so nothing is lost.
    pub fn stop(mut self) -> String {
        self.kill();
        self.log_text()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}
