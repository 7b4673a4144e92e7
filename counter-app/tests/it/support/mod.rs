//! Test support shared by counter-app's test suites (and by the registry's
//! image test, which includes `docker.rs` and `registry_image.rs`).
//!
//! * `redis_server`: a real `redis-server` process per test, on a free port.
//! * `app`: the `counter-app` binary under test, started as a child process.
//! * `docker`: docker CLI helpers and a guard that removes what a test created.
//! * `counter_image`: the counter-app image from the static binary.
//! * `redis_image`: a FROM scratch Redis image built from the host's binary.
//! * `registry_image`: the registry image (registry/Dockerfile) from the static binary.
//! * `stack_images`: a Redis image with redis-cli and /data (what the stack
//!   files expect of `redis:7-alpine`) and a busybox client image.
//! * `swarm`: single-node swarm, private docker config, stack guard, tasks.

// Each test binary uses a different subset of these helpers.

pub mod app;
pub mod counter_image;
pub mod redis_image;
pub mod redis_server;
pub mod stack_images;
pub mod swarm;

// Shared with the registry's image test (the `testkit` crate).
pub use testkit::{docker, registry_image, wait_for};

use std::time::{Duration, Instant};

/// Async flavour of [`wait_for`] for checks that make HTTP requests.
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A name no concurrent test run (or leftover of a crashed one) can share.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// A Python interpreter that can import `module` (a tool the tests drive:
/// `kubernetes_validate`, `locust`): the one in the virtual environment
/// scripts/ci-deps.sh makes (`$CI_VENV`, default `.venv` at the workspace
/// root) first, else `python3` on PATH. Panics naming the install command
/// when neither has it.
pub fn python_with(module: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    let venv = std::env::var_os("CI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("counter-app has a parent")
                .join(".venv")
        });
    let candidates = [venv.join("bin").join("python"), PathBuf::from("python3")];
    for python in &candidates {
        let imports = std::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imports {
            return python.clone();
        }
    }
    panic!(
        "no Python with the module {module} (tried {} and python3 on PATH): run \
         scripts/ci-deps.sh, which installs scripts/ci-requirements.txt into {}",
        candidates[0].display(),
        venv.display()
    );
}
