//! `counter-app healthcheck`, the probe the FROM scratch image's HEALTHCHECK runs.

use std::process::Output;
use std::time::Duration;

use crate::support::app::{command, App};
use crate::support::redis_server::RedisServer;
use crate::support::wait_for;

fn healthcheck(listen: &str) -> Output {
    command(&["healthcheck"], &[("LISTEN_ADDR", listen)])
        .output()
        .expect("run counter-app healthcheck")
}

#[test]
fn exit_code_follows_the_server_health() {
    let mut redis = RedisServer::start();
    let app = App::start(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &redis.port().to_string()),
    ]);
    let listen = app.addr.to_string();

    let ok = healthcheck(&listen);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("healthy: HTTP/1.1 200"));

    redis.stop();
    let failed = wait_for("healthcheck to fail", Duration::from_secs(15), || {
        let out = healthcheck(&listen);
        (out.status.code() == Some(1)).then_some(out)
    });
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("HTTP 503"),
        "{failed:?}"
    );

    redis.restart();
    wait_for("healthcheck to pass again", Duration::from_secs(15), || {
        (healthcheck(&listen).status.code() == Some(0)).then_some(())
    });

    drop(app);
    let down = healthcheck(&listen);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot connect"),
        "{down:?}"
    );
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let out = command(&["frobnicate"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: counter-app"));
    let help = command(&["--help"], &[]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("REDIS_PASSWORD_FILE"));
}
