//! What clients see when Redis is up: the greeting, JSON, HTML, metrics,
//! and no lost increments under concurrency.

use super::{client, get, host_name, metric, seen_count, try_get};
use crate::support::app::App;
use crate::support::redis_server::RedisServer;

fn app_for(redis: &RedisServer) -> App {
    App::start(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &redis.port().to_string()),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn greeting_counts_up_and_names_the_replica() {
    let redis = RedisServer::start();
    // A count left by the original Flask app (same key) carries on.
    redis.cmd(&["SET", "hits", "41"]);
    let app = app_for(&redis);
    let http = client();

    for expected in 42..=44 {
        let reply = get(&http, &app.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.body,
            format!(
                "Hello World! I have been seen {expected} times.\nServed by: {}\n",
                host_name()
            )
        );
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
        assert_eq!(reply.header("x-served-by"), host_name());
        assert_eq!(reply.header("cache-control"), "no-store");
    }
    assert_eq!(redis.cmd(&["GET", "hits"]), "44");

    // HEAD (uptime checkers, load balancers) is not a visit.
    let head = http.head(app.url("/")).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(redis.cmd(&["GET", "hits"]), "44");

    // /api/count reads without incrementing.
    for _ in 0..2 {
        let reply = get(&http, &app.url("/api/count")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), "application/json");
        let json = reply.json();
        assert_eq!(json["count"], 44);
        assert_eq!(json["hostname"], host_name().as_str());
    }
    assert_eq!(redis.cmd(&["GET", "hits"]), "44");
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_get_html_and_the_counter_key_is_configurable() {
    let redis = RedisServer::start();
    let app = App::start(&[
        (
            "REDIS_URL",
            &format!("redis://127.0.0.1:{}/0", redis.port()),
        ),
        ("COUNTER_KEY", "visits"),
    ]);
    let http = client();

    let reply = try_get(
        &http,
        &app.url("/"),
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");
    assert!(
        reply
            .body
            .contains("I have been seen <strong>1</strong> times."),
        "{}",
        reply.body
    );
    assert!(reply
        .body
        .contains(&format!("<code>{}</code>", host_name())));
    assert_eq!(redis.cmd(&["GET", "visits"]), "1");
    assert_eq!(redis.cmd(&["GET", "hits"]), "");

    let api = get(&http, &app.url("/api/count")).await;
    assert_eq!(api.json()["count"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_are_never_lost() {
    const REQUESTS: u64 = 2000;
    const CONCURRENCY: u64 = 64;
    let redis = RedisServer::start();
    let app = app_for(&redis);
    let http = client();
    let url = app.url("/");

    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts = Vec::new();
            for _ in (worker..REQUESTS).step_by(CONCURRENCY as usize) {
                let reply = get(&http, &url).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                counts.push(seen_count(&reply.body));
            }
            counts
        }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.extend(task.await.unwrap());
    }
    counts.sort_unstable();

    // Every request got its own value, and together they are exactly 1..=N.
    assert_eq!(counts, (1..=REQUESTS).collect::<Vec<_>>());
    assert_eq!(redis.cmd(&["GET", "hits"]), REQUESTS.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_route_and_code() {
    let redis = RedisServer::start();
    let app = app_for(&redis);
    let http = client();

    for _ in 0..3 {
        assert_eq!(get(&http, &app.url("/")).await.status, 200);
    }
    assert_eq!(get(&http, &app.url("/health")).await.status, 200);
    let missing = get(&http, &app.url("/no/such/page")).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("/api/count"), "{}", missing.body);

    let reply = get(&http, &app.url("/metrics")).await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .starts_with("text/plain; version=0.0.4"));
    let text = &reply.body;
    let series = |s: &str| metric(text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        series(r#"counter_http_requests_total{route="/",code="200"}"#),
        3.0
    );
    assert_eq!(
        series(r#"counter_http_requests_total{route="/health",code="200"}"#),
        1.0
    );
    assert_eq!(
        series(r#"counter_http_requests_total{route="other",code="404"}"#),
        1.0
    );
    assert_eq!(
        series(r#"counter_http_requests_total{route="/",code="503"}"#),
        0.0
    );
    // Only the scrape itself is in flight.
    assert_eq!(series("counter_http_requests_in_flight"), 1.0);
    assert_eq!(series("counter_redis_up"), 1.0);
    assert_eq!(series("counter_redis_errors_total"), 0.0);
}
