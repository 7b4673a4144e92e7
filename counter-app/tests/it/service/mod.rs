//! Integration tests of the counter-app binary against a real redis-server
//! (one per test, started and stopped by the test itself).

mod api;
mod healthcheck;
mod resilience;
mod shutdown;

use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A plain HTTP/1.1 client: no proxy from the environment, bounded waits.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

pub async fn get(client: &reqwest::Client, url: &str) -> Reply {
    try_get(client, url, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

pub async fn try_get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The count in "Hello World! I have been seen N times.".
pub fn seen_count(body: &str) -> u64 {
    body.strip_prefix("Hello World! I have been seen ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected greeting: {body:?}"))
}

/// A metric's value in Prometheus text, by its full series name.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// What the kernel calls this machine; the app reports the same name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read hostname")
        .trim()
        .to_owned()
}
