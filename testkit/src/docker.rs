//! Thin helpers over the docker CLI, and a guard that removes every container,
//! network and image a test created, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `docker args...`; stdout (trimmed) on success, a readable error otherwise.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The directory of the static release binaries (scripts/static-build.sh).
pub fn static_bin_dir() -> PathBuf {
    let dir = std::env::var_os("STATIC_BIN_DIR").unwrap_or_else(|| {
        panic!(
            "STATIC_BIN_DIR is not set: build the static binaries first, e.g.\n  \
             STATIC_BIN_DIR=$(scripts/static-build.sh) cargo test -p counter-app -- --include-ignored"
        )
    });
    PathBuf::from(dir)
}

/// A static binary from STATIC_BIN_DIR, checked to exist.
pub fn static_binary(name: &str) -> PathBuf {
    let path = static_bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist: run scripts/static-build.sh",
        path.display()
    );
    path
}

/// `docker inspect -f FORMAT target`.
pub fn inspect(target: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, target])
}

/// Polls a container's health status until it is `wanted`.
pub fn wait_for_health(container: &str, wanted: &str, timeout: Duration) {
    let mut last = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::wait_for(&format!("{container} to be {wanted}"), timeout, || {
            last = try_docker(&["inspect", "-f", "{{.State.Health.Status}}", container])
                .unwrap_or_else(|e| e);
            (last == wanted).then_some(())
        })
    }));
    if result.is_err() {
        let health = try_docker(&["inspect", "-f", "{{json .State.Health}}", container])
            .unwrap_or_else(|e| e);
        let logs = try_docker(&["logs", "--tail", "30", container]).unwrap_or_else(|e| e);
        panic!("{container} is {last:?}, not {wanted:?} after {timeout:?}\nhealth: {health}\nlogs:\n{logs}");
    }
}

/// The host address of a container port published on 127.0.0.1.
pub fn published_addr(container: &str, port: &str) -> std::net::SocketAddr {
    let out = docker(&["port", container, port]);
    out.lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no published address for {container} {port}: {out:?}"))
}

/// Everything a test created in the engine; removed on drop, newest first.
#[derive(Default)]
pub struct Resources {
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// `docker build -t tag -f dockerfile context [extra...]`, tracked for removal.
    pub fn build_image(&mut self, tag: &str, dockerfile: &Path, context: &Path, extra: &[&str]) {
        self.images.push(tag.to_owned());
        let dockerfile = dockerfile.to_str().expect("utf-8 path");
        let context = context.to_str().expect("utf-8 path");
        let mut args = vec!["build", "-q", "-t", tag, "-f", dockerfile];
        args.extend_from_slice(extra);
        args.push(context);
        docker(&args);
    }

    /// Registers an image built elsewhere so it is removed with the rest
    /// (the registry's image test, which includes this file).
    #[allow(dead_code)]
    pub fn track_image(&mut self, tag: &str) {
        self.images.push(tag.to_owned());
    }

    pub fn network(&mut self, name: &str) {
        self.networks.push(name.to_owned());
        docker(&["network", "create", name]);
    }

    /// `docker run -d --name name args...`, tracked for removal.
    pub fn run(&mut self, name: &str, args: &[&str]) -> String {
        self.containers.push(name.to_owned());
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        docker(&all)
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        for c in self.containers.iter().rev() {
            let _ = try_docker(&["rm", "-f", "-v", c]);
        }
        for n in self.networks.iter().rev() {
            let _ = try_docker(&["network", "rm", n]);
        }
        for i in self.images.iter().rev() {
            let _ = try_docker(&["rmi", "-f", i]);
        }
    }
}
