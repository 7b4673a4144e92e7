//! Redis outages: /health reports them, requests fail fast with a clear 503,
//! and the app recovers on its own when Redis is back.

use std::time::{Duration, Instant};

use super::{client, get, metric, seen_count, try_get};
use crate::support::app::App;
use crate::support::redis_server::RedisServer;
use crate::support::{free_port, wait_for_async};

const FLIP_TIMEOUT: Duration = Duration::from_secs(15);

async fn health_status(http: &reqwest::Client, app: &App) -> u16 {
    get(http, &app.url("/health")).await.status
}

#[tokio::test(flavor = "multi_thread")]
async fn health_follows_redis_down_and_back_up() {
    let mut redis = RedisServer::start();
    let app = App::start(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &redis.port().to_string()),
    ]);
    let http = client();

    let health = get(&http, &app.url("/health")).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(seen_count(&get(&http, &app.url("/")).await.body), 1);

    redis.stop();
    wait_for_async("/health to turn 503", FLIP_TIMEOUT, || async {
        (health_status(&http, &app).await == 503).then_some(())
    })
    .await;

    let health = get(&http, &app.url("/health")).await;
    assert_eq!(health.json()["status"], "unavailable");
    let target = format!("127.0.0.1:{}", redis.port());
    assert!(
        health.json()["redis"].as_str().unwrap().contains(&target),
        "{}",
        health.body
    );

    // A clear, quick 503 for the counter, in text and in JSON.
    let started = Instant::now();
    let reply = get(&http, &app.url("/")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), "1");
    assert!(
        reply.body.contains("temporarily unavailable"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains(&format!("Redis at {target} is unavailable")),
        "{}",
        reply.body
    );
    let api = get(&http, &app.url("/api/count")).await;
    assert_eq!(api.status, 503);
    assert_eq!(api.json()["error"], "redis_unavailable");

    let metrics = get(&http, &app.url("/metrics")).await.body;
    assert_eq!(metric(&metrics, "counter_redis_up"), Some(0.0));
    assert!(
        metric(
            &metrics,
            r#"counter_http_requests_total{route="/",code="503"}"#
        ) >= Some(1.0)
    );

    redis.restart();
    wait_for_async("/health to turn 200 again", FLIP_TIMEOUT, || async {
        (health_status(&http, &app).await == 200).then_some(())
    })
    .await;
    // The restarted Redis is empty: counting starts over, without an app restart.
    let reply = get(&http, &app.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(seen_count(&reply.body), 1);
    assert!(
        app.logs().contains("Redis became unavailable"),
        "{}",
        app.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_without_redis_and_connects_when_it_appears() {
    let port = free_port();
    let app = App::start(&[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))]);
    let http = client();

    assert_eq!(health_status(&http, &app).await, 503);
    assert_eq!(get(&http, &app.url("/")).await.status, 503);

    let _redis = RedisServer::start_on(port);
    wait_for_async("/health to turn 200", FLIP_TIMEOUT, || async {
        (health_status(&http, &app).await == 200).then_some(())
    })
    .await;
    assert_eq!(seen_count(&get(&http, &app.url("/")).await.body), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_from_a_secret_file_and_a_wrong_one() {
    let redis = RedisServer::start_with_password("correct horse");
    let secrets = tempfile::tempdir().unwrap();
    let good = secrets.path().join("good");
    let bad = secrets.path().join("bad");
    std::fs::write(&good, "correct horse\n").unwrap();
    std::fs::write(&bad, "battery staple\n").unwrap();
    let port = redis.port().to_string();
    let http = client();

    let app = App::start(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &port),
        ("REDIS_PASSWORD_FILE", good.to_str().unwrap()),
    ]);
    let reply = get(&http, &app.url("/")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(redis.cmd(&["GET", "hits"]), "1");

    let wrong = App::start(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &port),
        ("REDIS_PASSWORD_FILE", bad.to_str().unwrap()),
    ]);
    let reply = try_get(&http, &wrong.url("/health"), &[]).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        !reply.body.contains("battery"),
        "the password leaked: {}",
        reply.body
    );
    assert_eq!(get(&http, &wrong.url("/")).await.status, 503);
    assert_eq!(redis.cmd(&["GET", "hits"]), "1");

    // An authentication failure is not an I/O error, so the client library
    // alone would never retry it; the app must, e.g. once the password is
    // rotated on the server. (Last step: the helper still AUTHs with the old one.)
    redis.cmd(&["CONFIG", "SET", "requirepass", "battery staple"]);
    wait_for_async(
        "the app with the new password to recover",
        FLIP_TIMEOUT,
        || async { (health_status(&http, &wrong).await == 200).then_some(()) },
    )
    .await;
    assert_eq!(seen_count(&get(&http, &wrong.url("/")).await.body), 2);
}

#[test]
fn invalid_configuration_stops_the_process_with_a_message() {
    let output = crate::support::app::command(&[], &[("REDIS_PORT", "not-a-port")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("REDIS_PORT=\"not-a-port\" is invalid"),
        "{stdout}"
    );
}
