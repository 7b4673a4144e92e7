//! One upstream registry over HTTP: follows its `WWW-Authenticate`
//! challenge (Basic, or a Bearer token realm as Docker Hub, GHCR and Quay
//! run them, anonymous when no credentials are configured), keeps tokens
//! per scope until they expire, and remembers a 429's `Retry-After` so that
//! no request reaches a rate-limiting upstream before it allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response, StatusCode};

use super::ProxyError;
use crate::config::ProxyUpstream;

/// Without a `Retry-After`, a 429 keeps requests away this long.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);
/// Tokens are dropped this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

pub struct UpstreamClient {
    /// For messages and metrics: the upstream's URL.
    pub url: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic: send it at once from now on.
    basic: AtomicBool,
    backoff_until: Mutex<Option<Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("ca_file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("client: {0}")]
    Build(String),
}

impl UpstreamClient {
    pub fn new(config: &ProxyUpstream) -> Result<UpstreamClient, ClientSetupError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read, not per response: a large blob may take long.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("registry-proxy/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let ca_err = |reason: String| ClientSetupError::Ca {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientSetupError::Build(e.to_string()))?;
        Ok(UpstreamClient {
            url: config.url.trim_end_matches('/').to_owned(),
            http,
            credentials: config
                .username
                .clone()
                .map(|u| (u, config.password.clone().unwrap_or_default())),
            tokens: Mutex::default(),
            basic: AtomicBool::new(config.username.is_some()),
            backoff_until: Mutex::default(),
        })
    }

    fn err_unreachable(&self, e: impl std::fmt::Display) -> ProxyError {
        ProxyError::Unreachable {
            upstream: self.url.clone(),
            reason: e.to_string(),
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let (u, p) = self.credentials.as_ref()?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).ok()
    }

    fn cached_token(&self, scope: &str) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().unwrap();
        let (token, expires) = tokens.get(scope)?;
        if Instant::now() >= *expires {
            return None;
        }
        HeaderValue::from_str(&format!("Bearer {token}")).ok()
    }

    fn authorization(&self, scope: &str) -> Option<HeaderValue> {
        self.cached_token(scope).or_else(|| {
            if self.basic.load(Ordering::Relaxed) {
                self.basic_header()
            } else {
                None
            }
        })
    }

    /// Refuses at once while a 429's Retry-After runs.
    fn check_backoff(&self) -> Result<(), ProxyError> {
        let until = *self.backoff_until.lock().unwrap();
        match until {
            Some(t) if Instant::now() < t => Err(ProxyError::RateLimited {
                upstream: self.url.clone(),
                retry_after: Some((t - Instant::now()).as_secs().max(1)),
            }),
            _ => Ok(()),
        }
    }

    /// `METHOD <url>/v2/<repo>/<path>`, authenticated as the upstream asks.
    /// Success statuses come back; everything else is a `ProxyError`.
    pub async fn send(
        &self,
        method: Method,
        repo: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response, ProxyError> {
        self.check_backoff()?;
        let url = format!("{}/v2/{repo}/{path}", self.url);
        let scope = format!("repository:{repo}:pull");
        let mut response = self
            .request(&method, &url, accept, self.authorization(&scope))
            .await?;
        let mut with_token = self.cached_token(&scope).is_some();
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(Challenge::parse);
            let auth = match challenge {
                Some(Challenge::Bearer { realm, service }) => {
                    with_token = true;
                    Some(self.fetch_token(&realm, service.as_deref(), &scope).await?)
                }
                Some(Challenge::Basic) if self.credentials.is_some() => {
                    self.basic.store(true, Ordering::Relaxed);
                    self.basic_header()
                }
                _ => None,
            };
            if auth.is_some() {
                response = self.request(&method, &url, accept, auth).await?;
            }
        }
        match self.check_status(response) {
            Err(ProxyError::Denied { upstream, status }) if with_token => {
                Err(ProxyError::NoAccess { upstream, status })
            }
            other => other,
        }
    }

    async fn request(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        auth: Option<HeaderValue>,
    ) -> Result<Response, ProxyError> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(a) = accept {
            request = request.header(header::ACCEPT, a);
        }
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request.send().await.map_err(|e| self.err_unreachable(e))
    }

    fn check_status(&self, response: Response) -> Result<Response, ProxyError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let upstream = self.url.clone();
        Err(match status {
            StatusCode::NOT_FOUND => ProxyError::NotFound { upstream },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProxyError::Denied {
                upstream,
                status: status.as_u16(),
            },
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let wait = retry_after.map_or(DEFAULT_BACKOFF, Duration::from_secs);
                *self.backoff_until.lock().unwrap() = Some(Instant::now() + wait);
                tracing::warn!(upstream = %upstream, retry_after_secs = wait.as_secs(), "upstream rate-limits us; not asking it again before then");
                ProxyError::RateLimited {
                    upstream,
                    retry_after: Some(wait.as_secs().max(1)),
                }
            }
            _ => ProxyError::Status {
                upstream,
                status: status.as_u16(),
            },
        })
    }

    /// The Docker token flow: `GET realm?service=..&scope=..`, with Basic
    /// credentials when configured (anonymous otherwise, as Docker Hub
    /// allows for public images).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<HeaderValue, ProxyError> {
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        let sep = if realm.contains('?') { '&' } else { '?' };
        let mut request = self.http.get(format!("{realm}{sep}{query}"));
        if let Some((u, p)) = &self.credentials {
            if !credentials_may_go_to(&self.url, realm) {
                return Err(self.err_unreachable(format!(
                    "token endpoint {realm}: credentials are sent only to an https:// realm (or plain http:// on the upstream's own http:// host)"
                )));
            }
            request = request.basic_auth(u, Some(p));
        }
        let response = request.send().await.map_err(|e| self.err_unreachable(e))?;
        let response = self.check_status(response)?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.err_unreachable(format!("token endpoint {realm}: {e}")))?;
        let body: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.err_unreachable(format!("token endpoint {realm}: {e}")))?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.err_unreachable(format!("token endpoint {realm}: no token")))?;
        // The spec's default lifetime is 60 s.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60));
        let expires = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        let header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| self.err_unreachable(format!("token endpoint {realm}: bad token")))?;
        self.tokens
            .lock()
            .unwrap()
            .insert(scope.to_owned(), (token, expires));
        Ok(header)
    }
}

#[derive(Debug, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Other,
}

impl Challenge {
    fn parse(value: &str) -> Challenge {
        let value = value.trim();
        let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::Other;
        }
        let mut realm = None;
        let mut service = None;
        for (k, v) in auth_params(params) {
            match k.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                _ => {}
            }
        }
        match realm {
            Some(realm) => Challenge::Bearer { realm, service },
            None => Challenge::Other,
        }
    }
}

/// Whether the upstream's credentials may be sent to the token `realm` its
/// challenge named: over https (any host: Docker Hub's realm is
/// auth.docker.io), or over plain http only when the upstream itself is
/// plain http on that same host and port. Never from an https upstream to
/// an http realm.
fn credentials_may_go_to(upstream: &str, realm: &str) -> bool {
    let (Ok(up), Ok(realm)) = (reqwest::Url::parse(upstream), reqwest::Url::parse(realm)) else {
        return false;
    };
    match realm.scheme() {
        "https" => true,
        "http" => {
            up.scheme() == "http"
                && up.host_str() == realm.host_str()
                && up.port_or_known_default() == realm.port_or_known_default()
        }
        _ => false,
    }
}

/// `k="v",k2=v2` (RFC 9110 auth-params; quoted values may hold commas).
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, after)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_owned(), &q[end + 1..]),
                None => (q.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((k, v));
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An upstream's challenge names a plain-http token realm on another
    /// host: the configured credentials must not be sent there.
    #[tokio::test]
    async fn upstream_credentials_never_go_to_a_plain_http_realm() {
        let seen = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push(
                        headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned()),
                    );
                    r#"{"token":"t"}"#
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let evil_realm = format!("http://{addr}/token");

        let config = |url: &str| ProxyUpstream {
            url: url.into(),
            username: Some("mirror-bot".into()),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        // An https upstream (another host) naming an http realm: refused.
        let https_up = UpstreamClient::new(&config("https://registry.example.com")).unwrap();
        assert!(https_up
            .fetch_token(&evil_realm, None, "repository:x:pull")
            .await
            .is_err());
        // An http upstream on another host: refused too.
        let other = UpstreamClient::new(&config("http://upstream.example.com")).unwrap();
        assert!(other
            .fetch_token(&evil_realm, None, "repository:x:pull")
            .await
            .is_err());
        assert!(
            seen.lock().unwrap().iter().all(|a| a.is_none()),
            "credentials reached the realm: {:?}",
            seen.lock().unwrap()
        );
        // The upstream's own http host: allowed (a registry on a LAN).
        let own = UpstreamClient::new(&config(&format!("http://{addr}"))).unwrap();
        own.fetch_token(&evil_realm, None, "repository:x:pull")
            .await
            .unwrap();
        assert!(seen.lock().unwrap().last().unwrap().is_some());
        assert!(credentials_may_go_to(
            "https://registry-1.docker.io",
            "https://auth.docker.io/token"
        ));
        assert!(!credentials_may_go_to(
            "https://127.0.0.1:5000",
            "http://127.0.0.1:5000/token"
        ));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://x/token"),
            Challenge::Bearer {
                realm: "http://x/token".into(),
                service: None
            }
        );
        assert_eq!(Challenge::parse("Negotiate"), Challenge::Other);
    }
}
