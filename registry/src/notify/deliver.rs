//! One endpoint's delivery loop: oldest events first, removed once
//! answered 2xx; after `threshold` failures in a row, `backoff` between
//! attempts.

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use tokio_util::sync::CancellationToken;

use super::event::{cloudevent, envelope, CLOUDEVENTS_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE};
use super::{Endpoint, Notifier};

/// Events in one registry:2 envelope at most.
const BATCH: usize = 32;
/// A queue that looked empty is looked at again this often (events queued
/// by another replica, or before a restart).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Wait between attempts before `threshold` failures.
const QUICK_RETRY: Duration = Duration::from_millis(100);

pub const SIGNATURE_HEADER: &str = "x-registry-signature-256";

pub(super) async fn run(n: Arc<Notifier>, e: Arc<Endpoint>, shutdown: CancellationToken) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match client(e.config.timeout) {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(endpoint = %e.config.name, error = %err, "notification client");
            return;
        }
    };
    let name = e.config.name.as_str();
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let names = match n.storage.queue_list(name).await {
            Ok(names) => names,
            Err(err) => {
                tracing::warn!(endpoint = name, error = %err, "notification queue unreadable");
                if pause(&shutdown, e.config.backoff).await {
                    return;
                }
                continue;
            }
        };
        n.metrics
            .pending
            .get_or_create(&e.label)
            .set(names.len() as i64);
        if names.is_empty() {
            tokio::select! {
                _ = e.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        let take = if e.config.format == "cloudevents" {
            1
        } else {
            BATCH
        };
        let mut batch = Vec::new();
        let mut events = Vec::new();
        for event_name in names.iter().take(take) {
            match n.storage.queue_read(name, event_name).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(v) => {
                        batch.push(event_name.clone());
                        events.push(v);
                    }
                    Err(_) => {
                        // Never sendable: drop it rather than block the queue.
                        tracing::warn!(endpoint = name, event = %event_name, "unreadable queued event dropped");
                        let _ = n.storage.queue_remove(name, event_name).await;
                        n.metrics.dropped.get_or_create(&e.label).inc();
                    }
                },
                Ok(None) => {}
                Err(_) => break,
            }
        }
        if events.is_empty() {
            continue;
        }
        let (body, content_type) = if e.config.format == "cloudevents" {
            (cloudevent(&events[0]), CLOUDEVENTS_MEDIA_TYPE)
        } else {
            (envelope(&events), ENVELOPE_MEDIA_TYPE)
        };
        match send(&client, &e, body, content_type).await {
            Ok(()) => {
                failures = 0;
                for event_name in &batch {
                    if let Err(err) = n.storage.queue_remove(name, event_name).await {
                        tracing::warn!(endpoint = name, error = %err, "delivered event not removed; it will be sent again");
                    }
                }
                n.metrics
                    .sent
                    .get_or_create(&e.label)
                    .inc_by(batch.len() as u64);
            }
            Err(why) => {
                failures = failures.saturating_add(1);
                n.metrics.failed.get_or_create(&e.label).inc();
                let wait = if failures >= e.config.threshold.max(1) {
                    e.config.backoff
                } else {
                    QUICK_RETRY.min(e.config.backoff)
                };
                tracing::warn!(endpoint = name, failures, error = %why, retry_in = ?wait, "notification delivery failed");
                if pause(&shutdown, wait).await {
                    return;
                }
            }
        }
    }
}

/// An endpoint's HTTP client. Redirects are not followed: the custom
/// headers (often a token) and the signature would go to wherever the
/// endpoint points; a 3xx is a failed delivery, retried like any other.
fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Sleeps `d`; true when shutting down.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

async fn send(
    client: &reqwest::Client,
    e: &Endpoint,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), String> {
    let mut request = client
        .post(&e.config.url)
        .header("content-type", content_type);
    for (header, values) in &e.config.headers {
        for v in values {
            request = request.header(header.as_str(), v.as_str());
        }
    }
    if let Some(secret) = &e.config.secret {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(&body);
        let signature = hex::encode(mac.finalize().into_bytes());
        request = request.header(SIGNATURE_HEADER, format!("sha256={signature}"));
    }
    // reqwest's error names the URL, userinfo and all: the log line names
    // the endpoint instead.
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("endpoint answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Read as _, Write as _};

    use super::*;
    use crate::config::NotifyEndpoint;

    fn endpoint(url: String) -> Endpoint {
        Endpoint {
            label: crate::metrics::EndpointLabel {
                endpoint: "hook".into(),
            },
            config: NotifyEndpoint {
                name: "hook".into(),
                url,
                headers: BTreeMap::from([(
                    "X-Hook-Token".to_string(),
                    vec!["tok-hunter2".to_string()],
                )]),
                timeout: Duration::from_secs(5),
                ..NotifyEndpoint::default()
            },
            wake: tokio::sync::Notify::new(),
            trim: tokio::sync::Mutex::new(()),
        }
    }

    async fn deliver(e: &Endpoint) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        send(
            &client(e.config.timeout).unwrap(),
            e,
            b"{}".to_vec(),
            "application/json",
        )
        .await
        .unwrap_err()
    }

    /// A delivery that fails is logged with its error: the URL's password
    /// is not in it.
    #[tokio::test]
    async fn a_failed_delivery_does_not_log_the_urls_password() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let why = deliver(&endpoint(format!(
            "http://bot:hunter2@127.0.0.1:{port}/hook"
        )))
        .await;
        assert!(!why.contains("hunter2"), "{why}");
    }

    /// An endpoint that redirects elsewhere does not get the custom
    /// headers sent on: the redirect is not followed (a failed delivery).
    #[tokio::test]
    async fn notification_headers_do_not_follow_a_redirect_to_another_host() {
        let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let target = format!("http://{}/steal", elsewhere.local_addr().unwrap());
        let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", hook.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = hook.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(answer.as_bytes()).unwrap();
        });
        let why = deliver(&endpoint(url)).await;
        server.join().unwrap();
        assert!(why.contains("307"), "{why}");
        // Had the redirect been followed, its connection would be waiting
        // to be accepted now (send returns after the whole chain).
        match elsewhere.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((mut conn, _)) => {
                let mut got = Vec::new();
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = conn.read_to_end(&mut got);
                panic!(
                    "the redirect was followed with: {}",
                    String::from_utf8_lossy(&got)
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
}
