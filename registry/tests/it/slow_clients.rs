//! Clients that open connections and never finish a request cannot keep
//! them open, nor keep other clients out (`conn_limits`).

use crate::support;

use std::time::{Duration, Instant};

use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (end of file or a reset);
/// how long that took, or `None` when it was still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection that sends half a request's headers, one that sends
/// nothing, and one that stops inside the HTTP/2 preface are all closed
/// once the header timeout has passed.
#[tokio::test]
async fn half_sent_headers_are_closed_after_the_header_timeout() {
    let s = TestServer::start_with(|c| c.http.header_read_timeout = Duration::from_secs(1)).await;
    let mut half = TcpStream::connect(s.addr).await.unwrap();
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let mut preface = TcpStream::connect(s.addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    let start = Instant::now();
    for (what, stream) in [
        ("half a header", &mut half),
        ("nothing", &mut silent),
        ("half the HTTP/2 preface", &mut preface),
    ] {
        closed_within(stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("a connection that sent {what} is still open after 5 s"));
        let took = start.elapsed();
        eprintln!("a connection that sent {what} was closed after {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "{what}: closed after {took:?}"
        );
    }
    s.stop().await;
}

/// A kept-alive connection with no request is closed after the idle
/// timeout, well before the header timeout.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let s = TestServer::start_with(|c| {
        c.http.header_read_timeout = Duration::from_secs(30);
        c.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /livez HTTP/1.1\r\nHost: registry\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The response is short enough to arrive in one read; from here the
    // connection is idle.
    let took = closed_within(&mut conn, Duration::from_secs(10))
        .await
        .expect("an idle connection is still open after 10 s");
    eprintln!("an idle kept-alive connection was closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    s.stop().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sets this process's soft open-file limit (client and server sockets
/// share it: the server runs in this process).
fn set_open_file_limit(soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        assert!(
            limit.rlim_max >= soft as libc::rlim_t,
            "this test needs a hard open-file limit of at least {soft} (ulimit -Hn is {})",
            limit.rlim_max
        );
        limit.rlim_cur = soft as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

const SLOW_CLIENTS: usize = 2000;
const CAP: usize = 1000;

/// 2,000 connections that never finish their headers, against a cap of
/// 1,000 and a long header timeout: a normal client is still answered at
/// once, the server's memory stays bounded, and it keeps answering.
///
/// The open-file limit is set to what the 2,000 client sockets, 1,000
/// server connections and some spare need (3,500): a server that accepted
/// every connection would run out of descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_sent_headers_do_not_keep_a_client_out() {
    if !support::alone::in_own_process(
        "slow_clients::two_thousand_half_sent_headers_do_not_keep_a_client_out",
    ) {
        return;
    }
    set_open_file_limit(3500);
    let s = TestServer::start_with(|c| {
        c.http.header_read_timeout = Duration::from_secs(60);
        c.http.max_connections = CAP;
    })
    .await;
    let client = s.anonymous();
    // The registry is up and the client's pool is warm before the flood.
    let r = client.get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let rss_before = rss_kib();

    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for i in 0..SLOW_CLIENTS {
        let mut c = TcpStream::connect(s.addr)
            .await
            .unwrap_or_else(|e| panic!("slow client {i}: {e}"));
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Slow: ")
            .await
            .unwrap_or_else(|e| panic!("slow client {i}: {e}"));
        slow.push(c);
    }

    let normal = reqwest::Client::new();
    for _ in 0..3 {
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), normal.get(s.url("/v2/")).send())
            .await
            .expect("a normal client is answered while 2,000 slow ones are connected")
            .expect("a normal client's request succeeds");
        let took = start.elapsed();
        eprintln!("normal client answered with {} in {took:?}", r.status());
        assert_eq!(r.status(), 401);
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
    }
    let rss_after = rss_kib();
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "RSS {rss_before} KiB before, {rss_after} KiB with {SLOW_CLIENTS} slow clients (+{grown} KiB)"
    );
    assert!(grown < 128 * 1024, "RSS grew by {grown} KiB");
    drop(slow);
    s.stop().await;
}
