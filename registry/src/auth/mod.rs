//! Who is asking, and may they. `check`, which the API's middleware runs
//! in front of every `/v2` route (`api::require_auth`), parses the route, derives the access it needs (`access`), authenticates
//! the request (htpasswd Basic, or a bearer token), checks the access
//! against the ACL or the token's claims, and otherwise answers itself:
//! 401 with the challenge, 403 `DENIED`, 429. Handlers never see a request
//! that is not allowed, and never build challenges.
//!
//! Codemap: `credentials` (htpasswd, cache, throttles), `token` (keys, JWT
//! issue and verify), `acl` (rules), `access` (scopes and actions), `audit`
//! (the audit log), `der` (PEM/DER for keys). The token endpoint's HTTP side
//! is `api::token_endpoint`.

pub mod access;
pub mod acl;
pub mod audit;
pub mod credentials;
pub mod der;
pub mod jwk;
pub mod token;
pub mod x5c;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{AuthMode, Config};
use crate::oci::RepoName;
use crate::protocol::client_addr::TrustedProxies;
use crate::protocol::error::{ApiError, Code};
use crate::protocol::route::Route;
use access::{Access, Actions, Needed, Resource};
use acl::Acl;
use audit::{Audit, Event};
use credentials::{Credentials, Failure};
use token::{TokenAuth, Verified};

/// The authenticated user (`anonymous` when none), in request and response
/// extensions (the access log reads it from the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

pub const ANONYMOUS: &str = "anonymous";

pub enum Mode {
    /// Every request allowed, as `anonymous`; no ACL.
    Open,
    Basic {
        realm: String,
        credentials: Arc<Credentials>,
    },
    Token {
        token: Arc<TokenAuth>,
        /// The htpasswd users the built-in endpoint issues tokens to
        /// (`None` when the endpoint is off).
        credentials: Option<Arc<Credentials>>,
    },
}

pub struct Authenticator {
    pub mode: Mode,
    /// Replaced when the config file changes (`crate::reload`).
    pub acl: crate::config::live::Live<Acl>,
    pub audit: Audit,
    /// Whether the listener is TLS (the scheme of a derived token realm).
    pub tls: bool,
    /// `http.host`, the registry's external URL (no trailing `/`): the
    /// base of the token realm when `auth.token.realm` is unset.
    pub external_url: Option<String>,
    /// Whose forwarding headers name the client (`http.trusted_proxies`).
    pub proxies: TrustedProxies,
}

impl Authenticator {
    pub fn open() -> Authenticator {
        Authenticator {
            mode: Mode::Open,
            acl: crate::config::live::Live::new(Acl::open_to_users()),
            audit: Audit::disabled(),
            tls: false,
            external_url: None,
            proxies: TrustedProxies::default(),
        }
    }

    /// The URL clients get tokens from: configured, or this registry's own
    /// endpoint at `http.host`, or (neither set: warned at start) on the
    /// host the client used.
    pub fn token_realm(&self, headers: &HeaderMap) -> String {
        if let Mode::Token { token, .. } = &self.mode {
            if let Some(realm) = &token.config.realm {
                return realm.clone();
            }
        }
        if let Some(base) = &self.external_url {
            return format!("{base}/auth/token");
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            })
            .unwrap_or("localhost");
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}/auth/token")
    }
}

/// What an allowed request may do, for the checks a handler makes beyond
/// the route's own access (the source of a cross-repository mount).
#[derive(Clone)]
pub enum Grant {
    All,
    Acl { user: Option<String>, acl: Arc<Acl> },
    Token(Arc<Verified>),
}

impl Grant {
    pub fn allows(&self, access: &Access) -> bool {
        match self {
            Grant::All => true,
            Grant::Acl { user, acl } => match &access.resource {
                Resource::Repository(name) => acl
                    .actions(user.as_deref(), name.as_str())
                    .contains(access.actions),
                Resource::Catalog => acl.catalog(user.as_deref()),
            },
            Grant::Token(v) => v.covers(access),
        }
    }

    pub fn can_pull(&self, repository: &RepoName) -> bool {
        self.allows(&Access {
            resource: Resource::Repository(repository.clone()),
            actions: Actions::PULL,
        })
    }

    /// Whether a listing (the catalog, `/v2/_ext/...`) shows `repository`
    /// to this request: its user may pull it. A catalog token names no
    /// repositories, so for a token the ACL decides for its subject.
    pub fn lists(&self, acl: &Acl, repository: &str) -> bool {
        let user = match self {
            Grant::All => return true,
            Grant::Acl { user, .. } => user.as_deref(),
            Grant::Token(v) => v.principal.as_deref(),
        };
        acl.actions(user, repository).contains(Actions::PULL)
    }

    /// Whether the ACL makes this request's user an admin: an htpasswd
    /// user by name, a token by its `principal` (an external issuer's
    /// subjects only issuer-qualified).
    pub fn is_admin(&self, acl: &Acl) -> bool {
        match self {
            Grant::All => false,
            Grant::Acl { user, .. } => user.is_some() && acl.is_admin(user.as_deref()),
            Grant::Token(v) => v.principal.is_some() && acl.is_admin(v.principal.as_deref()),
        }
    }

    /// Whether every repository is readable: the condition for mounting a
    /// blob without `from`. A token names repositories one by one, so in
    /// token mode this is never the case.
    pub fn pulls_everything(&self) -> bool {
        match self {
            Grant::All => true,
            Grant::Acl { user, acl } => acl.pulls_everything(user.as_deref()),
            Grant::Token(_) => false,
        }
    }
}

/// Why a request is answered by the middleware.
enum Refusal {
    /// 401 with the challenge.
    Challenge {
        message: &'static str,
        invalid_token: bool,
    },
    /// 403 `DENIED`: an authenticated user the ACL refuses (Basic mode).
    Denied,
    /// 401 with the challenge and `error="insufficient_scope"`: a valid
    /// token that lacks an action the request needs. registry:2 answers so,
    /// and clients that learn scopes from challenges (containerd, crane,
    /// oras, docker reusing a pull token for a push) fetch a wider token on
    /// it, where a 403 would make them stop. A token the issuer would not
    /// widen gets the same answer again, as from registry:2.
    InsufficientScope,
    /// 429 with `Retry-After`.
    Throttled { retry_after: u64, per_user: bool },
}

fn scope_list(needed: &Needed) -> String {
    needed
        .accesses
        .iter()
        .map(Access::scope)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A bearer token with at most this many seconds left gets a `Warning`.
pub const EXPIRY_WARNING_SECS: i64 = 30;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Authenticates and authorizes a `/v2` request from `client` (the
/// middleware in `api/` calls it before any handler): on success the
/// handler runs with the `User` and `Grant` in the request's extensions;
/// otherwise the refusal (challenge, 403, 429) is the answer.
pub async fn check(
    auth: &Authenticator,
    client: IpAddr,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let needed = access::needed(&method, request.uri().path());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let outcome = match &auth.mode {
        Mode::Open => Ok((ANONYMOUS.to_owned(), Grant::All)),
        Mode::Basic { credentials, .. } => {
            basic(auth, credentials, authorization.as_deref(), client, &needed).await
        }
        Mode::Token { token, .. } => {
            token
                .refresh_for(authorization.as_deref().and_then(bearer_token))
                .await;
            bearer(auth, token, authorization.as_deref(), &needed)
        }
    };
    let (user, grant) = match outcome {
        Ok(ok) => ok,
        Err((refusal, user)) => {
            if matches!(refusal, Refusal::Denied | Refusal::InsufficientScope) {
                auth.audit.record(&Event {
                    event: "denied",
                    user: &user,
                    client: Some(client),
                    repository: &repository_of(&needed),
                    requested: &scope_list(&needed),
                    method: method.as_str(),
                    ..Default::default()
                });
            }
            let has_body = crate::protocol::body::has_body(request.headers());
            let mut response = refuse(auth, refusal, &needed, request.headers(), has_body);
            if !user.is_empty() {
                response.extensions_mut().insert(User(user));
            }
            return response;
        }
    };
    let user = User(user);
    let expires = match &grant {
        Grant::Token(v) => Some(v.expires),
        _ => None,
    };
    request.extensions_mut().insert(user.clone());
    request.extensions_mut().insert(grant);
    let mut response = next.run(request).await;
    // A bearer token about to expire: a Warning the client can show
    // (distribution-spec main, "Warnings") before its next request is 401.
    if let Some(left) = expires.map(|e| e - unix_now()) {
        if (0..=EXPIRY_WARNING_SECS).contains(&left) {
            crate::protocol::add_warning(
                response.headers_mut(),
                &format!("the bearer token of this request expires in {left} s; request a new one"),
            );
        }
    }
    audit_change(auth, &method, &needed, &user.0, client, &response);
    response.extensions_mut().insert(user);
    response
}

/// The refusal for an allowed request that the pull-through cache reroutes
/// to another repository (`?ns=`, `remoteurl`'s `library/` or the Docker
/// mirror rewrite) which the caller may not pull: the ACL decided on the
/// name in the path, and the caller needs the same access on the name the
/// content is served from, or `?ns=` would read around a rule on a proxy
/// prefix with the registry's own upstream credentials. `None` when the
/// request's grant covers `rerouted` too.
pub fn refuse_rerouted(
    auth: &Authenticator,
    parts: &axum::http::request::Parts,
    rerouted: &RepoName,
) -> Option<Response> {
    let grant = parts.extensions.get::<Grant>()?;
    let access = Access {
        resource: Resource::Repository(rerouted.clone()),
        actions: Actions::PULL,
    };
    let allowed = match grant {
        // A token of the built-in endpoint holds what the client asked for
        // (Docker's mirror client asks for `library/redis` only, and does
        // not come back for a wider token): the `[acl]` it was issued
        // under decides the rerouted name, as the endpoint would have.
        Grant::Token(v) if v.local => auth
            .acl
            .get()
            .actions(v.principal.as_deref(), rerouted.as_str())
            .contains(Actions::PULL),
        grant => grant.allows(&access),
    };
    if allowed {
        return None;
    }
    let mut needed = access::needed(&parts.method, parts.uri.path());
    needed.accesses.push(access);
    let user = parts
        .extensions
        .get::<User>()
        .map(|u| u.0.clone())
        .unwrap_or_default();
    let refusal = match grant {
        Grant::Token(_) => Refusal::InsufficientScope,
        Grant::Acl { user: Some(_), .. } => Refusal::Denied,
        Grant::Acl { user: None, .. } | Grant::All => Refusal::Challenge {
            message: "authentication required",
            invalid_token: false,
        },
    };
    auth.audit.record(&Event {
        event: "denied",
        user: &user,
        repository: rerouted.as_str(),
        requested: &scope_list(&needed),
        method: parts.method.as_str(),
        ..Default::default()
    });
    let mut response = refuse(auth, refusal, &needed, &parts.headers, false);
    response.extensions_mut().insert(User(user));
    Some(response)
}

fn repository_of(needed: &Needed) -> String {
    needed
        .accesses
        .iter()
        .find_map(|a| match &a.resource {
            Resource::Repository(name) => Some(name.to_string()),
            Resource::Catalog => None,
        })
        .unwrap_or_default()
}

type Outcome = Result<(String, Grant), (Refusal, String)>;

async fn basic(
    auth: &Authenticator,
    credentials: &Credentials,
    authorization: Option<&str>,
    client: IpAddr,
    needed: &Needed,
) -> Outcome {
    let user = match credentials.authenticate_fresh(authorization, client).await {
        Ok((user, fresh)) => {
            if fresh {
                auth.audit.record(&Event {
                    event: "login",
                    user: &user,
                    client: Some(client),
                    ..Default::default()
                });
            }
            Some(user)
        }
        // No Basic credentials: anonymous, allowed only what the ACL gives
        // anonymous requests (and never `/v2/` itself, which is how `docker
        // login` checks credentials).
        Err(Failure::Missing) => None,
        Err(failure) => {
            return Err((
                login_failure(auth, failure, authorization, client),
                String::new(),
            ))
        }
    };
    let grant = Grant::Acl {
        user: user.clone(),
        acl: auth.acl.get(),
    };
    let allowed = needed.accesses.iter().all(|a| grant.allows(a));
    match user {
        Some(user) if allowed => Ok((user, grant)),
        Some(user) => Err((Refusal::Denied, user)),
        None if allowed && !needed.accesses.is_empty() => Ok((ANONYMOUS.to_owned(), grant)),
        None => Err((
            Refusal::Challenge {
                message: "authentication required",
                invalid_token: false,
            },
            String::new(),
        )),
    }
}

/// Audits a failed or throttled login and says how to answer it.
fn login_failure(
    auth: &Authenticator,
    failure: Failure,
    authorization: Option<&str>,
    client: IpAddr,
) -> Refusal {
    let user = authorization
        .and_then(credentials::basic_user)
        .unwrap_or_default();
    match failure {
        Failure::Throttled {
            retry_after,
            per_user,
        } => {
            auth.audit.record(&Event {
                event: "throttled",
                user: &user,
                client: Some(client),
                reason: if per_user { "user" } else { "address" },
                ..Default::default()
            });
            Refusal::Throttled {
                retry_after,
                per_user,
            }
        }
        _ => {
            auth.audit.record(&Event {
                event: "login_failed",
                user: &user,
                client: Some(client),
                ..Default::default()
            });
            Refusal::Challenge {
                message: "invalid username or password",
                invalid_token: false,
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn bearer(
    auth: &Authenticator,
    token: &TokenAuth,
    authorization: Option<&str>,
    needed: &Needed,
) -> Outcome {
    let Some(jwt) = authorization.and_then(bearer_token) else {
        return Err((
            Refusal::Challenge {
                message: "authentication required",
                invalid_token: false,
            },
            String::new(),
        ));
    };
    let verified = match token.verify(jwt) {
        Ok(v) => v,
        Err(e) => {
            auth.audit.record(&Event {
                event: "token_refused",
                reason: &e.to_string(),
                ..Default::default()
            });
            return Err((
                Refusal::Challenge {
                    message: "invalid or expired token",
                    invalid_token: true,
                },
                String::new(),
            ));
        }
    };
    let user = if verified.subject.is_empty() {
        ANONYMOUS.to_owned()
    } else {
        verified.subject.clone()
    };
    if needed.accesses.iter().all(|a| verified.covers(a)) {
        Ok((user, Grant::Token(verified)))
    } else {
        Err((Refusal::InsufficientScope, user))
    }
}

fn refuse(
    auth: &Authenticator,
    refusal: Refusal,
    needed: &Needed,
    headers: &HeaderMap,
    has_body: bool,
) -> Response {
    let bearer_challenge = |error: Option<&str>| {
        let Mode::Token { token, .. } = &auth.mode else {
            return None;
        };
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            auth.token_realm(headers),
            token.config.service.replace('"', "'")
        );
        let scope = scope_list(needed);
        if !scope.is_empty() {
            c.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        Some(c)
    };
    let error = match refusal {
        Refusal::Throttled {
            retry_after,
            per_user,
        } => ApiError::new(
            Code::TooManyRequests,
            if per_user {
                "too many failed logins for this user; try again later"
            } else {
                "too many failed logins from this address; try again later"
            },
        )
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::RETRY_AFTER, retry_after.to_string()),
        Refusal::Challenge {
            message,
            invalid_token,
        } => {
            let mut e = ApiError::new(Code::Unauthorized, message);
            let challenge = match &auth.mode {
                Mode::Basic { realm, .. } => {
                    Some(format!("Basic realm=\"{}\"", realm.replace('"', "'")))
                }
                Mode::Token { .. } => bearer_challenge(invalid_token.then_some("invalid_token")),
                Mode::Open => None,
            };
            if let Some(challenge) = challenge {
                e = e.header(header::WWW_AUTHENTICATE, challenge);
            }
            if !needed.accesses.is_empty() {
                e = e.detail(access_details(needed));
            }
            e
        }
        Refusal::Denied => {
            ApiError::new(Code::Denied, "requested access to the resource is denied")
                .detail(access_details(needed))
        }
        Refusal::InsufficientScope => {
            let mut e = ApiError::new(Code::Unauthorized, "authentication required")
                .detail(access_details(needed));
            if let Some(challenge) = bearer_challenge(Some("insufficient_scope")) {
                e = e.header(header::WWW_AUTHENTICATE, challenge);
            }
            e
        }
    };
    // The body of a refused request is never read; say so, rather than
    // leave the client writing into a connection that is about to drop.
    if has_body {
        error.close_connection().into_response()
    } else {
        error.into_response()
    }
}

fn access_details(needed: &Needed) -> serde_json::Value {
    serde_json::json!(needed
        .accesses
        .iter()
        .map(access_detail)
        .collect::<Vec<_>>())
}

/// registry:2's error detail for auth errors: `{Type, Name, Action}`.
fn access_detail(a: &Access) -> serde_json::Value {
    let (kind, name) = match &a.resource {
        Resource::Repository(n) => ("repository", n.to_string()),
        Resource::Catalog => ("registry", "catalog".to_owned()),
    };
    serde_json::json!({"Type": kind, "Name": name, "Action": a.actions.to_string()})
}

/// Audits what a successful request changed: pushes and deletes.
fn audit_change(
    auth: &Authenticator,
    method: &Method,
    needed: &Needed,
    user: &str,
    client: IpAddr,
    response: &Response,
) {
    let status = response.status();
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (event, repository, reference) = match (&needed.route, method) {
        (Some(Route::Manifest(name, r)), &Method::PUT) if status == StatusCode::CREATED => {
            let reference = if r.as_str() == digest || digest.is_empty() {
                r.clone()
            } else {
                format!("{r}@{digest}")
            };
            ("push", name, reference)
        }
        (Some(Route::UploadStart(name)), &Method::POST)
        | (Some(Route::Upload(name, _)), &Method::PUT)
            if status == StatusCode::CREATED =>
        {
            ("push", name, digest.to_owned())
        }
        (Some(Route::Manifest(name, r)), &Method::DELETE)
        | (Some(Route::Blob(name, r)), &Method::DELETE)
            if status == StatusCode::ACCEPTED =>
        {
            ("delete", name, r.clone())
        }
        (Some(Route::Repository(name)), &Method::DELETE) if status == StatusCode::ACCEPTED => {
            ("delete", name, "*".to_owned())
        }
        _ => return,
    };
    auth.audit.record(&Event {
        event,
        user,
        client: Some(client),
        repository: repository.as_str(),
        reference: &reference,
        method: method.as_str(),
        ..Default::default()
    });
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Credentials(#[from] credentials::SetupError),
    #[error(transparent)]
    Keys(#[from] token::KeyError),
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error("auth.audit_log {path}: {source}")]
    AuditLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Builds the authenticator the config asks for; also returns the user
/// created with a random password when the htpasswd file was missing.
pub fn build(config: &Config) -> Result<(Authenticator, Option<credentials::Created>), SetupError> {
    let acl = Acl::from_config(config.acl.as_ref())
        .map_err(|(key, message)| SetupError::Config { key, message })?;
    let proxies = TrustedProxies::parse(&config.http.trusted_proxies).map_err(|message| {
        SetupError::Config {
            key: "http.trusted_proxies".into(),
            message,
        }
    })?;
    let audit = match &config.auth.audit_log {
        Some(path) => Audit::to_file(path).map_err(|source| SetupError::AuditLog {
            path: path.clone(),
            source,
        })?,
        None => Audit::disabled(),
    };
    let htpasswd = || -> Result<_, SetupError> {
        let (credentials, created) = Credentials::open(&config.auth.htpasswd)?;
        let credentials = Arc::new(credentials);
        credentials.spawn_reloader();
        Ok((credentials, created))
    };
    let (mode, created) = match config.auth.mode {
        AuthMode::None => {
            tracing::warn!("authentication is disabled: anyone can push and pull");
            (Mode::Open, None)
        }
        AuthMode::Htpasswd => {
            let (credentials, created) = htpasswd()?;
            let realm = config.auth.htpasswd.realm.clone();
            (Mode::Basic { realm, credentials }, created)
        }
        AuthMode::Token => {
            let (token, generated) = TokenAuth::open(&config.auth.token)?;
            if let Some(key) = token.signing_key() {
                tracing::info!(
                    path = %config.auth.token.signing_key.display(),
                    kid = key.kid(),
                    algorithm = ?key.algorithm(),
                    generated,
                    "token signing key"
                );
            }
            tracing::info!(kids = ?token.trusted_kids(), "tokens are accepted from these keys");
            let (credentials, created) = if config.auth.token.endpoint_enabled() {
                let (c, created) = htpasswd()?;
                (Some(c), created)
            } else {
                (None, None)
            };
            if config.auth.token.realm.is_none() && config.http.host.is_none() {
                tracing::warn!("auth.token.realm and http.host are unset: each challenge names the token endpoint on the Host the client sent; set http.host (REGISTRY_HTTP_HOST) to the registry's external URL");
            }
            let token = Arc::new(token);
            (Mode::Token { token, credentials }, created)
        }
    };
    Ok((
        Authenticator {
            mode,
            acl: crate::config::live::Live::new(acl),
            audit,
            tls: config.http.tls.is_some(),
            external_url: external_base(config),
            proxies,
        },
        created,
    ))
}

/// `http.host` as a base URL (`scheme://host[:port]`), when set.
pub fn external_base(config: &Config) -> Option<String> {
    config
        .external_url()
        .ok()
        .flatten()
        .map(|(scheme, host)| format!("{scheme}://{host}"))
}
