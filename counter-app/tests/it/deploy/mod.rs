//! Deploy tests (issue 6): the files in compose/ and the whole pipeline on
//! this machine's Docker engine. The registry runs from its image as a Swarm
//! stack (compose/registry.yml: htpasswd and TLS from secrets, named volume);
//! compose/deploy.sh builds, pushes and deploys the counter stack on a
//! single-node swarm; the test then checks replicas, counting, the spread of
//! requests, a rolling update, scaling, and that `docker stack rm` cleans up.
//!
//! Ignored by default: they need Docker, docker-compose, openssl,
//! STATIC_BIN_DIR and kubernetes-validate (scripts/test.sh provides all).

mod files;
mod pipeline;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The Docker-heavy tests of this binary run one at a time (2 cores).
pub static DOCKER: Mutex<()> = Mutex::new(());

pub fn docker_lock() -> std::sync::MutexGuard<'static, ()> {
    DOCKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The workspace's compose/ directory.
pub fn compose_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("counter-app has a parent")
        .join("compose")
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 GET with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from {addr}: {raw:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok(Reply {
        status,
        body: body.to_owned(),
    })
}

/// (count, replica hostname) from the counter's greeting.
pub fn greeting(body: &str) -> (u64, String) {
    let count = body
        .strip_prefix("Hello World! I have been seen ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected greeting: {body:?}"));
    let host = body
        .lines()
        .find_map(|l| l.strip_prefix("Served by: "))
        .unwrap_or_else(|| panic!("no 'Served by' in {body:?}"))
        .trim()
        .to_owned();
    (count, host)
}
