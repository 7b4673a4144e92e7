//! Docker Swarm helpers for the deploy tests: the single-node swarm, a
//! private docker client configuration (logins never touch ~/.docker), and a
//! guard that removes a stack with everything it left behind (services,
//! containers, networks, volumes, secrets) even when the test panics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::docker::try_docker;

/// Makes sure this engine is a swarm manager; inits a single-node swarm on
/// 127.0.0.1 if it is in none (left in place afterwards, as the issue says).
/// Returns what was done, for the test log.
pub fn ensure_swarm() -> String {
    let state = try_docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"]).unwrap_or_default();
    match state.as_str() {
        "active" => {
            let manager =
                try_docker(&["info", "-f", "{{.Swarm.ControlAvailable}}"]).unwrap_or_default();
            assert_eq!(
                manager, "true",
                "this engine is in a swarm but not a manager"
            );
            "swarm: already active (manager)".to_owned()
        }
        "inactive" => {
            super::docker::docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            "swarm: initialised a single-node swarm on 127.0.0.1 (left in place)".to_owned()
        }
        other => panic!("cannot use this engine's swarm: state {other:?}"),
    }
}

/// A docker client configuration directory of the test's own.
pub struct DockerConfig {
    dir: tempfile::TempDir,
}

impl DockerConfig {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp DOCKER_CONFIG"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `docker args...` with this configuration and `stdin`; the raw output.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", self.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run docker");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("write docker's stdin");
        child.wait_with_output().expect("wait for docker")
    }

    /// [`run`](Self::run), panicking unless it succeeds; stdout.
    pub fn docker(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// A stack deployed by a test (or by the deploy script under test); removed
/// with all its leftovers on drop.
pub struct Stack {
    pub name: String,
}

impl Stack {
    /// Takes charge of the stack `name` (deployed or about to be).
    pub fn track(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// What of the stack still exists, one line per kind that is not empty.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let kinds: [(&str, Vec<&str>); 5] = [
            ("services", vec!["service", "ls", "-q", "--filter", &label]),
            ("containers", vec!["ps", "-aq", "--filter", &label]),
            ("networks", vec!["network", "ls", "-q", "--filter", &label]),
            ("volumes", vec!["volume", "ls", "-q", "--filter", &label]),
            ("secrets", vec!["secret", "ls", "-q", "--filter", &label]),
        ];
        kinds
            .iter()
            .filter_map(|(kind, args)| {
                let out = try_docker(args).unwrap_or_else(|e| e);
                (!out.is_empty()).then(|| format!("{kind}: {}", out.replace('\n', " ")))
            })
            .collect()
    }

    /// `docker stack rm`, then waits until its containers and networks are
    /// gone and removes its volumes (which `stack rm` keeps). Returns the
    /// leftovers that are still there after `timeout` (empty: all clean).
    pub fn remove(&self, timeout: Duration) -> Vec<String> {
        let _ = try_docker(&["stack", "rm", &self.name]);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // Volumes can go once no container uses them.
            if let Ok(volumes) = try_docker(&["volume", "ls", "-q", "--filter", &label]) {
                for volume in volumes.lines() {
                    let _ = try_docker(&["volume", "rm", volume]);
                }
            }
            let left = self.leftovers();
            if left.is_empty() || std::time::Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let left = self.remove(Duration::from_secs(60));
        if !left.is_empty() {
            eprintln!("stack {} left behind: {left:?}", self.name);
        }
    }
}

/// A running task of a service, as seen from the host.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub state: String,
    pub image: String,
    pub container: String,
    /// The host port of a host-mode published port, if any.
    pub host_port: Option<u16>,
}

/// The tasks of `service` that Swarm wants running.
pub fn tasks(service: &str) -> Vec<Task> {
    let ids = try_docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ])
    .unwrap_or_default();
    ids.lines()
        .filter_map(|id| {
            let out = try_docker(&[
                "inspect",
                "-f",
                "{{.Status.State}}|{{.Spec.ContainerSpec.Image}}|\
                 {{if .Status.ContainerStatus}}{{.Status.ContainerStatus.ContainerID}}{{end}}|\
                 {{range .Status.PortStatus.Ports}}{{.PublishedPort}} {{end}}",
                id,
            ])
            .ok()?;
            let mut parts = out.split('|');
            Some(Task {
                id: id.to_owned(),
                state: parts.next()?.to_owned(),
                image: parts.next()?.to_owned(),
                container: parts.next()?.to_owned(),
                // The first published port (one is listed per address family).
                host_port: parts
                    .next()
                    .and_then(|p| p.split_whitespace().next())
                    .and_then(|p| p.parse().ok()),
            })
        })
        .collect()
}

/// Polls until `service` has exactly `replicas` tasks running (Swarm marks a
/// task running only once its healthcheck passed) whose image satisfies
/// `image_ok`, and no update is in progress.
pub fn wait_converged(
    service: &str,
    replicas: usize,
    image_ok: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Vec<Task> {
    let mut last = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::wait_for(
            &format!("{service} to run {replicas} healthy tasks"),
            timeout,
            || {
                last = tasks(service);
                let update = try_docker(&[
                    "service",
                    "inspect",
                    "-f",
                    "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                    service,
                ])
                .unwrap_or_default();
                let done = last.len() == replicas
                    && last
                        .iter()
                        .all(|t| t.state == "running" && image_ok(&t.image))
                    && update != "updating";
                done.then(|| last.clone())
            },
        )
    }));
    result.unwrap_or_else(|_| {
        let ps = try_docker(&["service", "ps", "--no-trunc", service]).unwrap_or_else(|e| e);
        panic!("{service} did not converge to {replicas} tasks; last: {last:?}\n{ps}")
    })
}

/// A self-signed CA and a server certificate for 127.0.0.1/localhost signed
/// by it, made with the openssl CLI (as docs/deploy.md tells operators to).
pub struct Certificates {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certificates(dir: &Path) -> Certificates {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("cannot run openssl");
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test registry CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "registry.key",
        "-out",
        "registry.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "registry.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "registry.crt",
    ]);
    Certificates {
        cert: dir.join("registry.crt"),
        key: dir.join("registry.key"),
    }
}
