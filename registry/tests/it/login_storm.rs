//! Failed logins cannot buy memory: storms of wrong passwords and of unknown
//! users, from one address and from several, leave the release binary's
//! resident memory where it was, peak bounded by the verification slots
//! times argon2's working area, while the throttles still answer 429.
//!
//! On the release binary because that is what is deployed, and because the
//! storms need real argon2 speed: STATIC_BIN_DIR (scripts/test.sh sets it).

use crate::support::registry_bin;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// argon2id's default working area (m=19456 KiB), what `htpasswd` writes.
const ARGON2_AREA_MIB: u64 = 19;

fn release_binary() -> PathBuf {
    let dir = std::env::var("STATIC_BIN_DIR").expect("STATIC_BIN_DIR (run scripts/test.sh)");
    PathBuf::from(dir).join("registry")
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    unauthorized: usize,
    throttled: usize,
    other: Vec<u16>,
}

/// `count` requests to `/v2/` with the credentials `user_of(i)` / a wrong
/// password, `concurrency` at a time, from `source`.
async fn storm(
    base: &str,
    source: IpAddr,
    count: usize,
    concurrency: usize,
    user_of: impl Fn(usize) -> String,
) -> Tally {
    let client = reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let request = client
            .get(format!("{base}/v2/"))
            .basic_auth(user_of(i), Some(format!("wrong-{i}")));
        tasks.push(tokio::spawn(async move {
            let status = request.send().await.expect("answered").status().as_u16();
            drop(permit);
            status
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        match task.await.unwrap() {
            401 => tally.unauthorized += 1,
            429 => tally.throttled += 1,
            other => tally.other.push(other),
        }
    }
    tally
}

async fn alice_logs_in(base: &str) {
    let ok = reqwest::Client::new()
        .get(format!("{base}/v2/"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs STATIC_BIN_DIR, the release binary (run scripts/test.sh)"]
async fn login_storms_leave_memory_where_it_was_and_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", htpasswd::hash_argon2id("secret")),
    )
    .unwrap();
    let served = registry_bin::serve(registry_bin::command_of(
        &release_binary(),
        &dir.path().join("storage"),
        &htpasswd,
        &[],
    ));
    let pid = served.child.id();
    let base = format!("http://{}", served.addr);
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;

    // Where it starts: after one successful login, the state of a registry
    // in use.
    alice_logs_in(&base).await;
    let (start, _) = memory_mib(pid);

    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    // 1. One address, one known user, wrong passwords.
    let known = storm(&base, localhost, 1000, 32, |_| "alice".into()).await;
    let (after_known, peak_known) = memory_mib(pid);
    eprintln!("known user: {known:?}; RSS {start} -> {after_known} MiB, peak {peak_known}");
    assert!(known.other.is_empty(), "{known:?}");
    assert!(known.throttled >= 900, "per-address throttle: {known:?}");
    assert!(known.unauthorized >= 10, "{known:?}");

    // 2. Four addresses, 200 requests each, users that do not exist.
    let mut unknown = Vec::new();
    for n in 2..=5u8 {
        let source = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n));
        let tally = storm(&base, source, 200, 32, |i| format!("ghost-{n}-{i}")).await;
        let (rss, peak) = memory_mib(pid);
        eprintln!("unknown users from 127.0.0.{n}: {tally:?}; RSS {rss} MiB, peak {peak}");
        unknown.push(rss);
        assert!(tally.other.is_empty(), "{tally:?}");
        assert!(tally.throttled >= 150, "per-address throttle: {tally:?}");
    }

    // 3. One user guessed from many addresses: the per-user throttle.
    let mut per_user = Tally::default();
    for n in 1..=40u8 {
        let source = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, n));
        let t = storm(&base, source, 2, 2, |_| "alice".into()).await;
        per_user.unauthorized += t.unauthorized;
        per_user.throttled += t.throttled;
        per_user.other.extend(t.other);
    }
    eprintln!("one user from 40 addresses: {per_user:?}");
    assert!(per_user.other.is_empty(), "{per_user:?}");
    assert!(per_user.throttled > 0, "per-user throttle: {per_user:?}");

    let (end, peak) = memory_mib(pid);
    eprintln!("RSS start {start} MiB, end {end} MiB, peak {peak} MiB ({slots} slots)");
    assert!(
        end <= start + 20,
        "RSS grew from {start} to {end} MiB over the storms (after each address: {unknown:?})"
    );
    assert!(
        peak <= start + slots * ARGON2_AREA_MIB + 20,
        "peak RSS {peak} MiB exceeds start {start} + {slots} slots x {ARGON2_AREA_MIB} MiB"
    );

    // The real user still gets in (from an address it used before).
    alice_logs_in(&base).await;
}
