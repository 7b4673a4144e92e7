//! The `registry` binary as the README's first command runs it: embedded
//! defaults, a generated admin password printed once, health probes, a bad
//! configuration refused with the key named, clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_registry");

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary started by `spawn_with`, and its JSON log lines as they come.
struct Spawned {
    server: Server,
    /// The password line it printed, when asked to expect one.
    printed: Option<String>,
    addr: String,
    log: Receiver<serde_json::Value>,
    /// The lines logged before "registry listening".
    startup: Vec<serde_json::Value>,
}

/// Starts the binary in `dir` on an ephemeral port, with `env` on top of the
/// defaults, and waits for its "listening" line.
fn spawn_with(dir: &std::path::Path, env: &[(&str, &str)], expect_password: bool) -> Spawned {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
        .env("REGISTRY_LOG_FORMATTER", "json")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let printed = expect_password.then(|| {
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line
    });
    let (lines_tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                if lines_tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let server = Server { child };
    let mut startup = Vec::new();
    let started = next_matching(&log, |v| {
        startup.push(v.clone());
        v["fields"]["message"] == "registry listening"
    });
    let addr = started["fields"]["addr"]
        .as_str()
        .expect("listening address logged")
        .to_owned();
    Spawned {
        server,
        printed,
        addr,
        log,
        startup,
    }
}

/// Starts the binary with the embedded defaults; see `spawn_with`.
fn spawn(dir: &std::path::Path, expect_password: bool) -> (Server, Option<String>, String) {
    let s = spawn_with(dir, &[], expect_password);
    (s.server, s.printed, s.addr)
}

/// The next log line `pred` accepts.
fn next_matching(
    log: &Receiver<serde_json::Value>,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let v = log
            .recv_timeout(Duration::from_secs(20))
            .expect("the log line arrives");
        if pred(&v) {
            return v;
        }
    }
}

#[test]
fn first_start_creates_an_admin_and_serves_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (server, line, addr) = spawn(dir.path(), true);
    let line = line.unwrap();
    let password = line
        .split("password '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no password in {line:?}"))
        .to_owned();
    assert!(line.contains("data/auth/htpasswd"), "{line}");
    assert!(dir.path().join("data/auth/htpasswd").exists());
    assert!(dir.path().join("data/storage").is_dir());

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/v2/");
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http
            .get(&url)
            .basic_auth("admin", Some(&password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("http://{addr}/livez"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });

    let probe = Command::new(BIN)
        .arg("healthcheck")
        .env("REGISTRY_HTTP_ADDR", &addr)
        .status()
        .unwrap();
    assert!(probe.success(), "healthcheck against a live registry");

    // SIGTERM: a clean, prompt exit.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");

    // The second start reuses the file and prints no password.
    let (_server, _, addr) = spawn(dir.path(), false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(
        reqwest::Client::new()
            .get(format!("http://{addr}/v2/"))
            .basic_auth("admin", Some(&password))
            .send(),
    );
    assert_eq!(
        r.unwrap().status(),
        200,
        "the same password works after a restart"
    );
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = crate::support::free_port();
    let status = Command::new(BIN)
        .arg("healthcheck")
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

#[test]
fn bad_configuration_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("REGISTRY_STORAGE_DELETE_ENABLED", "perhaps")],
            "REGISTRY_STORAGE_DELETE_ENABLED",
        ),
        (&[("REGISTRY_HTTP_ADDR", "not-an-address")], "http.addr"),
        (&[("REGISTRY_AUTH", "ldap")], "REGISTRY_AUTH"),
        // What `REGISTRY_AUTH: ${AUTH}` becomes when AUTH is unset.
        (&[("REGISTRY_AUTH", "")], "REGISTRY_AUTH"),
    ];
    for (env, key) in cases {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{env:?}: {stderr}");
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[storage]\ndelet_enabled = true\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("delet_enabled"));
    // Nothing was created for a configuration that was refused.
    assert!(!dir.path().join("data").exists());
}

/// The access log counts the bytes a request body really had, also when it
/// came chunked without a Content-Length (docker's PATCH).
#[test]
fn access_log_counts_chunked_upload_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/auth")).unwrap();
    let Spawned {
        server: _server,
        addr,
        log,
        startup,
        ..
    } = spawn_with(dir.path(), &[("REGISTRY_AUTH", "none")], false);
    // Running open is said at every start (it was asked for explicitly).
    assert!(
        startup.iter().any(|v| v["level"] == "WARN"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("authentication is disabled"))),
        "{startup:?}"
    );

    let size = 3 * 65_536 + 17;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{addr}/v2/logs/test/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let pieces = (0..4).map(|i| {
            let len = if i < 3 { 65_536 } else { 17 };
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; len]))
        });
        let r = http
            .patch(format!("http://{addr}{location}"))
            .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    });
    let line = next_matching(&log, |v| {
        v["target"] == "access" && v["fields"]["method"] == "PATCH"
    });
    assert_eq!(line["fields"]["bytes_in"], size, "{line}");
}
