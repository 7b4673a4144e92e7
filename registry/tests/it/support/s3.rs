//! A real S3-compatible server for tests: moto's server mode (PyPI `moto`,
//! installed by scripts/ci-deps.sh into its virtual environment), one process
//! per test on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registry::config::{Config, StorageBackend};

use super::free_port;

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// The server's request log (werkzeug's, on stderr), when kept.
    log: Option<tempfile::NamedTempFile>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` from the virtual environment scripts/ci-deps.sh makes
/// (`$CI_VENV`, default `.venv` at the workspace root), else from PATH.
fn moto_server() -> PathBuf {
    let venv = std::env::var_os("CI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("registry has a parent")
                .join(".venv")
        });
    let bin = venv.join("bin").join("moto_server");
    if bin.is_file() {
        bin
    } else {
        PathBuf::from("moto_server")
    }
}

impl Moto {
    pub async fn start() -> Moto {
        Moto::start_with_log(None).await
    }

    /// A server whose request log `requests` can count.
    pub async fn start_logged() -> Moto {
        Moto::start_with_log(Some(tempfile::NamedTempFile::new().unwrap())).await
    }

    async fn start_with_log(log: Option<tempfile::NamedTempFile>) -> Moto {
        let port = free_port();
        let program = moto_server();
        let stderr = match &log {
            Some(f) => Stdio::from(f.reopen().unwrap()),
            None => Stdio::null(),
        };
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run scripts/ci-deps.sh, which installs \
                     moto[server]==5.2.5 into .venv (or $CI_VENV)",
                    program.display()
                )
            });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {}",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        moto
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Writes one object, as a crash or another writer could have left it.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}/{key}", self.endpoint))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "put {key}: {}", r.status());
    }

    /// Keys in a bucket under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let text = reqwest::Client::new()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}&max-keys=100000",
                self.endpoint
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// Requests the server logged so far with `method` whose path ends
    /// with `path_end` (a start_logged server).
    pub fn requests(&self, method: &str, path_end: &str) -> usize {
        let log = self
            .log
            .as_ref()
            .expect("a server started with start_logged");
        let text = std::fs::read_to_string(log.path()).unwrap();
        // `... "GET /bucket/key HTTP/1.1" 200 -`, the request line
        // coloured by status (ANSI codes stuck to its ends).
        text.lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter(|request| {
                let mut words = request.split_whitespace();
                words.next().is_some_and(|m| m.ends_with(method))
                    && words.next().is_some_and(|p| p.ends_with(path_end))
            })
            .count()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Points `config` at `bucket` on this server.
    pub fn configure(&self, config: &mut Config, bucket: &str) {
        config.storage.backend = StorageBackend::S3;
        let s3 = &mut config.storage.s3;
        s3.bucket = bucket.into();
        s3.regionendpoint = Some(self.endpoint.clone());
        s3.accesskey = Some("test".into());
        s3.secretkey = Some("test".into());
        s3.forcepathstyle = true;
        s3.max_retries = 2;
        s3.retry_timeout_secs = 5;
    }
}
