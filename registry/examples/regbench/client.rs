//! A registry client that authenticates the way docker does: it sends
//! nothing until challenged, then answers a Basic challenge with the
//! credentials, or a Bearer challenge by fetching a token from the realm
//! (Basic credentials, the challenge's service and scope) and caching it per
//! scope. So one client measures registry:2, ours, zot, in either auth mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::{header, Method, Response, StatusCode};

#[derive(Clone)]
pub struct Registry {
    pub http: reqwest::Client,
    pub base: String,
    pub user: String,
    pub password: String,
    /// Authorization values learned from challenges, by scope ("" = Basic).
    auth: Arc<Mutex<HashMap<String, String>>>,
}

/// What a 401 asked for.
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        params: Vec<(String, String)>,
    },
}

fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    // key="value" pairs; values may hold commas (scope lists).
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.push((
            key.trim().trim_start_matches(',').trim().to_owned(),
            value.to_owned(),
        ));
        rest = tail.trim_start_matches(',').trim();
    }
    let realm = params.iter().find(|(k, _)| k == "realm")?.1.clone();
    params.retain(|(k, _)| k != "realm" && k != "error");
    Some(Challenge::Bearer { realm, params })
}

impl Registry {
    pub fn new(base: &str, user: &str, password: &str, pool: usize) -> Registry {
        Registry {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(pool)
                .build()
                .expect("http client"),
            base: base.trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            auth: Arc::default(),
        }
    }

    /// The same registry and credentials with its own connections and no
    /// learned tokens: a new `docker pull`.
    pub fn fresh(&self) -> Registry {
        Registry::new(&self.base, &self.user, &self.password, 8)
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends a request built by `build` (called again after a challenge),
    /// authenticating for `scope` when challenged.
    pub async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, String> {
        let known = self.auth.lock().unwrap().get(scope).cloned();
        let mut req = build(&self.http);
        if let Some(v) = &known {
            req = req.header(header::AUTHORIZATION, v);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        if r.status() != StatusCode::UNAUTHORIZED {
            return Ok(r);
        }
        let challenge = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or("401 without a challenge this client understands")?;
        let value = self.answer(challenge).await?;
        self.auth
            .lock()
            .unwrap()
            .insert(scope.to_owned(), value.clone());
        build(&self.http)
            .header(header::AUTHORIZATION, value)
            .send()
            .await
            .map_err(|e| e.to_string())
    }

    async fn answer(&self, challenge: Challenge) -> Result<String, String> {
        match challenge {
            Challenge::Basic => {
                use base64::Engine as _;
                let raw = format!("{}:{}", self.user, self.password);
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            Challenge::Bearer { realm, params } => {
                let query = serde_urlencoded::to_string(&params).map_err(|e| e.to_string())?;
                let sep = if realm.contains('?') { '&' } else { '?' };
                let r = self
                    .http
                    .get(format!("{realm}{sep}{query}"))
                    .basic_auth(&self.user, Some(&self.password))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("token endpoint {realm}: {}", r.status()));
                }
                let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                let token = body["token"]
                    .as_str()
                    .or(body["access_token"].as_str())
                    .ok_or("token endpoint answered no token")?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// The Authorization value for `scope` (challenging with `probe`), for
    /// tools such as wrk that send one fixed header.
    pub async fn authorization(&self, scope: &str, probe: &str) -> Result<String, String> {
        let url = self.url(probe);
        let r = self
            .send(scope, |h| {
                h.head(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if !r.status().is_success() {
            return Err(format!("HEAD {probe}: {}", r.status()));
        }
        self.auth
            .lock()
            .unwrap()
            .get(scope)
            .cloned()
            .ok_or_else(|| "the registry asked for no credentials".to_owned())
    }

    /// The Authorization value a challenge for `scope` gave, if any.
    pub fn learned(&self, scope: &str) -> Option<String> {
        self.auth.lock().unwrap().get(scope).cloned()
    }

    pub async fn expect(
        &self,
        scope: &str,
        method: Method,
        path: &str,
        status: u16,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let url = self.url(path);
        let r = self
            .send(scope, |h| {
                let mut b = h.request(method.clone(), &url);
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                match &body {
                    Some(bytes) => b.body(bytes.clone()),
                    None => b,
                }
            })
            .await?;
        if r.status().as_u16() != status {
            let got = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(format!("{method} {path}: {got}, wanted {status}: {text}"));
        }
        Ok(r)
    }
}

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub fn location(r: &Response) -> Result<String, String> {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| "no Location".to_owned())
}

pub fn with_query(location: &str, query: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_challenges() {
        let Some(Challenge::Bearer { realm, params }) = parse_challenge(
            r#"Bearer realm="http://a/token",service="reg",scope="repository:x:pull,push""#,
        ) else {
            panic!()
        };
        assert_eq!(realm, "http://a/token");
        assert_eq!(
            params,
            [
                ("service".to_owned(), "reg".to_owned()),
                ("scope".to_owned(), "repository:x:pull,push".to_owned())
            ]
        );
        assert!(matches!(
            parse_challenge(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        ));
    }
}
