//! Runs the `registry` binary against a test server's configuration (same
//! storage, same htpasswd file), for the subcommands and for signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_registry");

/// `registry <args>` with the configuration given as registry:2-style
/// environment variables.
pub fn command(storage_root: &Path, htpasswd: &Path, args: &[&str]) -> Command {
    command_of(Path::new(BIN), storage_root, htpasswd, args)
}

/// [`command`] for another build of the binary (the static release one).
pub fn command_of(bin: &Path, storage_root: &Path, htpasswd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env("REGISTRY_HTTP_ADDR", "127.0.0.1:0")
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", storage_root)
        .env("REGISTRY_STORAGE_FILESYSTEM_FSYNC", "false")
        .env("REGISTRY_AUTH_HTPASSWD_PATH", htpasswd)
        .env("REGISTRY_LOG_FORMATTER", "json")
        .env("REGISTRY_LOG_LEVEL", "info")
        .stdin(Stdio::null());
    c
}

pub fn run(storage_root: &Path, htpasswd: &Path, args: &[&str]) -> Output {
    command(storage_root, htpasswd, args)
        .output()
        .expect("run registry")
}

/// A `registry serve` child, killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: String,
    /// From the "metrics listening" line, when metrics are enabled.
    pub metrics_addr: Option<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `registry serve` and waits for the "registry listening" log line.
pub fn serve(mut cmd: Command) -> Served {
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn registry");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut metrics = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["fields"]["message"] == "metrics listening" {
                    metrics = v["fields"]["addr"].as_str().map(str::to_owned);
                }
                if v["fields"]["message"] == "registry listening" {
                    let addr = v["fields"]["addr"].as_str().unwrap_or("").to_owned();
                    let _ = tx.send((addr, metrics.take()));
                    sent = true;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    let (addr, metrics_addr) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("registry logged its address");
    Served {
        child,
        addr,
        metrics_addr,
    }
}

impl Served {
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
