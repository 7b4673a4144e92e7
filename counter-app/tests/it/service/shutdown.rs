//! SIGTERM (Docker stop, Swarm rolling update) must not drop a request the
//! server has accepted: the listener closes, in-flight requests complete,
//! then the process exits 0.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{client, get, metric, seen_count, try_get};
use crate::support::app::App;
use crate::support::redis_server::RedisServer;
use crate::support::{wait_for, wait_for_async};

fn app_for(redis: &RedisServer) -> App {
    App::start(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &redis.port().to_string()),
        // Generous bounds: this test holds requests open on purpose.
        ("REDIS_TIMEOUT_MS", "30000"),
        ("SHUTDOWN_TIMEOUT_SECS", "30"),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    const IN_FLIGHT: u64 = 32;
    let redis = RedisServer::start();
    let mut app = app_for(&redis);
    let http = client();
    assert_eq!(seen_count(&get(&http, &app.url("/")).await.body), 1);

    // Hold every INCR inside Redis so the requests stay in flight for as long
    // as the test needs, without any timing guess.
    redis.cmd(&["CLIENT", "PAUSE", "60000", "WRITE"]);
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (http, url) = (http.clone(), app.url("/"));
            tokio::spawn(async move { try_get(&http, &url, &[]).await })
        })
        .collect();
    wait_for_async(
        "all requests to be in flight",
        Duration::from_secs(15),
        || async {
            let text = get(&http, &app.url("/metrics")).await.body;
            // The scrape itself is in flight too.
            (metric(&text, "counter_http_requests_in_flight") == Some((IN_FLIGHT + 1) as f64))
                .then_some(())
        },
    )
    .await;

    app.sigterm();
    wait_for("the listener to close", Duration::from_secs(10), || {
        TcpStream::connect(app.addr).is_err().then_some(())
    });
    assert!(
        app.try_exit_status().is_none(),
        "exited with requests in flight:\n{}",
        app.logs()
    );

    redis.cmd(&["CLIENT", "UNPAUSE"]);
    let mut counts = Vec::new();
    for request in requests {
        let reply = request
            .await
            .unwrap()
            .expect("an in-flight request was dropped");
        assert_eq!(reply.status, 200, "{}", reply.body);
        counts.push(seen_count(&reply.body));
    }
    counts.sort_unstable();
    assert_eq!(counts, (2..=IN_FLIGHT + 1).collect::<Vec<_>>());

    let status = app.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}\n{}", app.logs());
    let logs = app.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("all requests finished"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_answers_every_increment_it_makes() {
    const CLIENTS: usize = 16;
    let redis = RedisServer::start();
    let mut app = app_for(&redis);
    let http = client();
    let url = app.url("/");

    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            let (answered, refused, stop) = (answered.clone(), refused.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match try_get(&http, &url, &[]).await {
                        Ok(reply) => {
                            assert_eq!(reply.status, 200, "{}", reply.body);
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused or closed before the request was read: the
                        // server never saw it, a client would retry elsewhere.
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            })
        })
        .collect();

    wait_for_async("load to build up", Duration::from_secs(30), || async {
        (answered.load(Ordering::Relaxed) >= 2000).then_some(())
    })
    .await;
    app.sigterm();
    let status = wait_for_async("counter-app to exit", Duration::from_secs(30), || {
        let status = app.try_exit_status();
        async move { status }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a client saw a non-200 answer");
    }

    assert!(status.success(), "exit status {status}\n{}", app.logs());
    // Every INCR the server performed reached its client: no request was
    // processed and then cut off by the shutdown.
    let answered = answered.load(Ordering::Relaxed);
    assert_eq!(redis.cmd(&["GET", "hits"]), answered.to_string());
    eprintln!(
        "answered {answered}, refused/closed after SIGTERM {}",
        refused.load(Ordering::Relaxed)
    );
}
