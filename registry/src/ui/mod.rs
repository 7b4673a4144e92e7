//! The built-in web UI at `/ui/`: server-rendered pages (`pages`, maud),
//! form login with signed session cookies and CSRF tokens (`session`), one
//! embedded stylesheet and a little script (`assets/`). It reads through the
//! same storage, listing and ACL as the API: a page shows only what its user
//! may pull, delete buttons appear only with delete access, and the delete
//! itself is checked again here and goes through the API's own handler.
//! Passwords are checked by `auth::credentials`, with the same throttles and
//! verification slots as Basic auth. Operators' doc: `docs/ui.md`.

pub mod pages;
pub mod session;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use serde_json::Value;

use crate::auth::access::{Access, Actions, Resource};
use crate::auth::audit::Event;
use crate::auth::credentials::{Credentials, Failure};
use crate::auth::{Grant, Mode};
use crate::oci::{Digest, RepoName, Tag};
use crate::protocol::client_addr::ClientAddr;
use crate::service::events::{self, Origin};
use crate::service::listing as ext;
use crate::storage::listing::Sort;
use crate::{App, AppState};
use pages::Chrome;
use session::{cookie_value, Session, Sessions, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL};

/// Repositories per page of the list.
const REPOSITORIES_PER_PAGE: usize = 50;
/// Tags per page of a repository.
const TAGS_PER_PAGE: usize = 100;
/// Largest image config shown (configs are small; this bounds the read).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest form body read.
const MAX_FORM_BYTES: usize = 16 * 1024;

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/ui.js");

/// What the UI keeps: the session signer.
pub struct Ui {
    pub sessions: Sessions,
}

impl Ui {
    pub fn new(secret: Option<&str>, tls: bool) -> Ui {
        if secret.is_none() {
            tracing::info!(
                "ui: http.secret is not set; sessions are signed with a random key and end when the process does"
            );
        }
        Ui {
            sessions: Sessions::new(secret, tls),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(repositories))
        .route("/ui/open", get(open))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/delete", get(confirm_delete).post(delete))
        .route("/ui/r/{*rest}", get(repository_or_image))
        .route(
            "/ui/static/style.css",
            get(|| async { asset("text/css", STYLE) }),
        )
        .route(
            "/ui/static/ui.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .layer(middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
        .extensions_mut()
        .insert(crate::protocol::RouteKind("ui"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// Who is asking, from the session cookie.
struct Viewer {
    session: Option<Session>,
    grant: Grant,
    csrf: Option<String>,
    can_login: bool,
}

impl Viewer {
    fn chrome(&self) -> Chrome<'_> {
        Chrome {
            user: self.session.as_ref().map(|s| s.user.as_str()),
            csrf: self.csrf.as_deref(),
            can_login: self.can_login,
        }
    }

    fn may(&self, name: &RepoName, actions: Actions) -> bool {
        self.grant.allows(&Access {
            resource: Resource::Repository(name.clone()),
            actions,
        })
    }
}

/// The htpasswd users a login is checked against: Basic mode's, or in
/// token mode those of the built-in token endpoint (none when it is off).
fn login_credentials(state: &App) -> Option<&std::sync::Arc<Credentials>> {
    match &state.auth.mode {
        Mode::Open => None,
        Mode::Basic { credentials, .. } => Some(credentials),
        Mode::Token { credentials, .. } => credentials.as_ref(),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, name))
}

fn viewer(state: &App, headers: &HeaderMap) -> Viewer {
    let (Some(ui), Some(credentials)) = (state.ui.as_ref(), login_credentials(state)) else {
        // An open registry (auth none): everyone may do everything.
        let grant = match state.auth.mode {
            Mode::Open => Grant::All,
            _ => Grant::Acl {
                user: None,
                acl: state.auth.acl.get(),
            },
        };
        // Forms still need a token there: a page of another site must not
        // be able to post a delete.
        let csrf = matches!(grant, Grant::All)
            .then(|| state.ui.as_ref().map(|ui| ui.sessions.open_csrf()))
            .flatten();
        return Viewer {
            session: None,
            grant,
            csrf,
            can_login: false,
        };
    };
    let session = cookie(headers, SESSION_COOKIE)
        .and_then(|c| ui.sessions.verify(c, |u| credentials.fingerprint(u)));
    Viewer {
        csrf: session.as_ref().map(|s| ui.sessions.csrf(s)),
        grant: Grant::Acl {
            user: session.as_ref().map(|s| s.user.clone()),
            acl: state.auth.acl.get(),
        },
        session,
        can_login: true,
    }
}

/// The host clients pull from: the `Host` the browser used, if it is one.
fn pull_host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost")
        .to_owned()
}

/// A path inside the UI to return to after login (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') => n.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

fn not_found(v: &Viewer) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::message(
            "Not found",
            &v.chrome(),
            "No such repository or manifest, or you may not pull it.",
        ),
    )
}

fn error_page(v: &Viewer, e: crate::protocol::error::ApiError) -> Response {
    if e.status.is_server_error() {
        tracing::error!(code = e.code.as_str(), message = %e.message, "ui request failed");
    }
    html(e.status, pages::message("Error", &v.chrome(), &e.message))
}

/// Anonymous visitors are sent to log in where that may help.
fn login_or_not_found(v: &Viewer, path: &str) -> Response {
    if v.session.is_none() && v.can_login {
        let q = serde_urlencoded::to_string([("next", path)]).unwrap_or_default();
        redirect(&format!("/ui/login?{q}"))
    } else {
        not_found(v)
    }
}

async fn repositories(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&state, &headers);
    let sort = q
        .get("sort")
        .and_then(|s| Sort::parse(s))
        .unwrap_or_default();
    let filter = q.get("q").map(|f| f.trim()).unwrap_or_default();
    let listable = v.grant.allows(&Access {
        resource: Resource::Catalog,
        actions: Actions::ALL,
    });
    let (repositories, more) = if listable {
        let names = ext::visible_repositories(&state, Some(&v.grant), Some(filter)).await;
        let result = match names {
            Ok(names) => {
                ext::repository_page(
                    &state,
                    names,
                    sort,
                    q.get("last").map(String::as_str),
                    REPOSITORIES_PER_PAGE,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(page) => page,
            Err(e) => return error_page(&v, e),
        }
    } else {
        (Vec::new(), false)
    };
    let next = repositories.last().filter(|_| more).map(|last| {
        let q = serde_urlencoded::to_string([
            ("q", filter),
            ("sort", sort.as_str()),
            ("last", last.name.as_str()),
        ])
        .unwrap_or_default();
        format!("/ui/?{q}")
    });
    let list = pages::RepoList {
        repositories: &repositories,
        filter,
        sort,
        next,
        listable,
    };
    html(StatusCode::OK, pages::repositories(&v.chrome(), &list))
}

async fn open(Query(q): Query<HashMap<String, String>>) -> Response {
    match q
        .get("name")
        .map(|n| n.trim())
        .and_then(|n| n.parse::<RepoName>().ok())
    {
        Some(name) => redirect(&pages::repo_href(name.as_str())),
        None => redirect("/ui/"),
    }
}

/// What a `/ui/r/...` path names: `<name>`, `<name>:<tag>` or
/// `<name>@<digest>` (the reference syntax of `docker pull`; names contain
/// neither `:` nor `@`).
enum Target {
    Repository(RepoName),
    Tag(RepoName, Tag),
    Digest(RepoName, Digest),
}

fn parse_target(rest: &str) -> Option<Target> {
    if let Some((name, digest)) = rest.split_once('@') {
        return Some(Target::Digest(name.parse().ok()?, digest.parse().ok()?));
    }
    let last = rest.rsplit('/').next().unwrap_or(rest);
    match last.split_once(':') {
        Some((_, tag)) => {
            let name = &rest[..rest.len() - tag.len() - 1];
            Some(Target::Tag(name.parse().ok()?, tag.parse().ok()?))
        }
        None => Some(Target::Repository(rest.parse().ok()?)),
    }
}

async fn repository_or_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let v = viewer(&state, &headers);
    let path = request.uri().path().to_owned();
    let Some(target) = path.strip_prefix("/ui/r/").and_then(parse_target) else {
        return not_found(&v);
    };
    let name = match &target {
        Target::Repository(n) | Target::Tag(n, _) | Target::Digest(n, _) => n.clone(),
    };
    if !v.may(&name, Actions::PULL) {
        return login_or_not_found(&v, &path);
    }
    let result = match target {
        Target::Repository(name) => repository_page(&state, &v, &headers, &name, &q).await,
        Target::Tag(name, tag) => match state.storage.cached().resolve_tag(&name, &tag).await {
            Ok(Some(d)) => image_page(&state, &v, &headers, &name, Some(&tag), &d).await,
            Ok(None) => return not_found(&v),
            Err(e) => Err(e.into()),
        },
        Target::Digest(name, d) => image_page(&state, &v, &headers, &name, None, &d).await,
    };
    result.unwrap_or_else(|e| {
        if e.status == StatusCode::NOT_FOUND {
            not_found(&v)
        } else {
            error_page(&v, e)
        }
    })
}

fn can_delete(state: &App, v: &Viewer, name: &RepoName) -> bool {
    state.delete_enabled && !state.read_only && v.may(name, Actions::DELETE)
}

async fn repository_page(
    state: &App,
    v: &Viewer,
    headers: &HeaderMap,
    name: &RepoName,
    q: &HashMap<String, String>,
) -> Result<Response, crate::protocol::error::ApiError> {
    let sort = q
        .get("sort")
        .and_then(|s| Sort::parse(s))
        .unwrap_or(Sort::Pushed);
    let last = q.get("last").map(String::as_str);
    let (tags, more) = ext::tags_page(state, name, sort, last, TAGS_PER_PAGE).await?;
    let next = tags.last().filter(|_| more).map(|t| {
        let q = serde_urlencoded::to_string([("sort", sort.as_str()), ("last", t.tag.as_str())])
            .unwrap_or_default();
        format!("{}?{q}", pages::repo_href(name.as_str()))
    });
    let policies = state.policies.get();
    let immutable: Vec<bool> = tags
        .iter()
        .map(|t| {
            policies
                .immutable
                .protection(name.as_str(), &t.tag)
                .is_some()
        })
        .collect();
    let page = pages::RepoPage {
        name: name.as_str(),
        host: &pull_host(headers),
        tags: &tags,
        immutable: &immutable,
        sort,
        can_delete: can_delete(state, v, name),
        next,
    };
    Ok(html(StatusCode::OK, pages::repository(&v.chrome(), &page)))
}

async fn image_page(
    state: &App,
    v: &Viewer,
    headers: &HeaderMap,
    name: &RepoName,
    tag: Option<&Tag>,
    digest: &Digest,
) -> Result<Response, crate::protocol::error::ApiError> {
    let Some(raw) = state.storage.cached().read_manifest(name, digest).await? else {
        return Ok(not_found(v));
    };
    let manifest: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let media_type = match state.listing.facts(name, digest).await? {
        Some(f) => f.media_type.clone(),
        None => manifest
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let config = image_config(state, name, &manifest).await?;
    let mut referrers = Vec::new();
    for r in state.storage.referrers(name, digest).await? {
        if let Some(f) = state.listing.facts(name, &r).await? {
            referrers.push(pages::Referrer {
                digest: r.to_string(),
                artifact_type: f.artifact_type.clone().unwrap_or_default(),
            });
        }
    }
    referrers.sort_by(|a, b| (&a.artifact_type, &a.digest).cmp(&(&b.artifact_type, &b.digest)));
    let digest = digest.to_string();
    let page = pages::ImagePage {
        name: name.as_str(),
        host: &pull_host(headers),
        tag: tag.map(Tag::as_str),
        digest: &digest,
        media_type: &media_type,
        manifest: &manifest,
        raw_manifest: &pages::pretty(&raw),
        config: config.as_ref(),
        referrers: &referrers,
        can_delete: can_delete(state, v, name),
    };
    Ok(html(StatusCode::OK, pages::image(&v.chrome(), &page)))
}

/// The image config a manifest names, when it is a JSON config stored in
/// the repository and not larger than `MAX_CONFIG_BYTES`.
async fn image_config(
    state: &App,
    name: &RepoName,
    manifest: &Value,
) -> Result<Option<Value>, crate::protocol::error::ApiError> {
    let Some(config) = manifest.get("config") else {
        return Ok(None);
    };
    let media_type = config
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_image_config = media_type == "application/vnd.oci.image.config.v1+json"
        || media_type == "application/vnd.docker.container.image.v1+json";
    let Some(digest) = config
        .get("digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<Digest>().ok())
        .filter(|_| is_image_config)
    else {
        return Ok(None);
    };
    match state.storage.cached().repo_blob_size(name, &digest).await? {
        Some(size) if size <= MAX_CONFIG_BYTES => {}
        _ => return Ok(None),
    }
    let Some(body) = state.storage.blob_get(&digest, None).await? else {
        return Ok(None);
    };
    let bytes = body
        .bytes()
        .await
        .map_err(crate::storage::StorageError::from)?;
    Ok(serde_json::from_slice(&bytes).ok())
}

async fn read_form(body: Body) -> HashMap<String, String> {
    match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(bytes) => serde_urlencoded::from_bytes(&bytes).unwrap_or_default(),
        Err(_) => HashMap::new(),
    }
}

fn forbidden(v: &Viewer, text: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::message("Forbidden", &v.chrome(), text),
    )
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&state, &headers);
    let next = safe_next(q.get("next").map(String::as_str));
    if v.session.is_some() {
        return redirect(&next);
    }
    let Some(ui) = state.ui.as_ref().filter(|_| v.can_login) else {
        return html(
            StatusCode::NOT_FOUND,
            pages::message(
                "No login",
                &v.chrome(),
                "This registry has no users to log in as (authentication is off, or tokens come from an external issuer).",
            ),
        );
    };
    login_page(ui, &v, &headers, &next, None, StatusCode::OK)
}

/// The login form, bound to the login cookie (set when missing).
fn login_page(
    ui: &Ui,
    v: &Viewer,
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let existing = cookie(headers, LOGIN_COOKIE).filter(|n| n.len() == 32);
    let nonce = existing.map_or_else(|| ui.sessions.login_nonce(), str::to_owned);
    let csrf = ui.sessions.login_csrf(&nonce);
    let mut response = html(status, pages::login(&v.chrome(), &csrf, next, error));
    if existing.is_none() {
        if let Ok(c) = ui.sessions.cookie(LOGIN_COOKIE, &nonce, None).parse() {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    response
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = viewer(&state, &headers);
    let form = read_form(body).await;
    let (Some(ui), Some(credentials)) = (state.ui.as_ref(), login_credentials(&state)) else {
        return not_found(&v);
    };
    let next = safe_next(form.get("next").map(String::as_str));
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let csrf_ok = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|n| Sessions::csrf_ok(&ui.sessions.login_csrf(n), field("csrf")));
    if !csrf_ok {
        return forbidden(
            &v,
            "The form expired or did not come from this page; reload it and try again.",
        );
    }
    let user = field("username");
    let audit = |event: &str, reason: &str| {
        state.auth.audit.record(&Event {
            event,
            user,
            client: Some(client),
            method: "ui",
            reason,
            ..Default::default()
        })
    };
    match credentials
        .authenticate_password(user, field("password"), client)
        .await
    {
        Ok(user) => {
            let Some(fingerprint) = credentials.fingerprint(&user) else {
                return login_page(
                    ui,
                    &v,
                    &headers,
                    &next,
                    Some("Invalid user or password."),
                    StatusCode::UNAUTHORIZED,
                );
            };
            audit("login", "");
            let value = ui.sessions.issue(&user, &fingerprint);
            let mut response = redirect(&next);
            let cookies = [
                ui.sessions
                    .cookie(SESSION_COOKIE, &value, Some(SESSION_TTL.as_secs())),
                ui.sessions.cookie(LOGIN_COOKIE, "", Some(0)),
            ];
            for c in cookies {
                if let Ok(c) = c.parse() {
                    response.headers_mut().append(header::SET_COOKIE, c);
                }
            }
            response
        }
        Err(Failure::Throttled {
            retry_after,
            per_user,
        }) => {
            audit("throttled", if per_user { "user" } else { "address" });
            let mut response = login_page(
                ui,
                &v,
                &headers,
                &next,
                Some("Too many failed logins; try again later."),
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(value) = retry_after.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(_) => {
            audit("login_failed", "");
            login_page(
                ui,
                &v,
                &headers,
                &next,
                Some("Invalid user or password."),
                StatusCode::UNAUTHORIZED,
            )
        }
    }
}

/// Whether a form post carries the viewer's CSRF token.
fn csrf_checked(v: &Viewer, form: &HashMap<String, String>) -> bool {
    let given = form.get("csrf").map(String::as_str).unwrap_or_default();
    v.csrf
        .as_deref()
        .is_some_and(|expected| Sessions::csrf_ok(expected, given))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let v = viewer(&state, &headers);
    let form = read_form(body).await;
    let (Some(ui), Some(session), true) = (state.ui.as_ref(), &v.session, csrf_checked(&v, &form))
    else {
        return forbidden(&v, "Not logged in, or the form expired; reload the page.");
    };
    ui.sessions.revoke(session);
    let mut response = redirect("/ui/");
    if let Ok(c) = ui.sessions.cookie(SESSION_COOKIE, "", Some(0)).parse() {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// The repository and reference of a delete, if the viewer may delete
/// there; else the page that says why.
fn delete_target(
    state: &App,
    v: &Viewer,
    fields: &HashMap<String, String>,
) -> Result<(RepoName, String), Box<Response>> {
    let name = fields.get("name").and_then(|n| n.parse::<RepoName>().ok());
    let reference = fields.get("reference").cloned().unwrap_or_default();
    let Some(name) = name.filter(|_| !reference.is_empty()) else {
        return Err(Box::new(not_found(v)));
    };
    let refusal = if v.session.is_none() && !matches!(v.grant, Grant::All) {
        Some("Log in to delete.")
    } else if !v.may(&name, Actions::DELETE) {
        Some("You may not delete in this repository.")
    } else if !state.delete_enabled || state.read_only {
        Some("Deletes are disabled on this registry (storage.delete.enabled, or read-only mode).")
    } else {
        None
    };
    match refusal {
        Some(text) => Err(Box::new(forbidden(v, text))),
        None => Ok((name, reference)),
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&state, &headers);
    match delete_target(&state, &v, &q) {
        Ok((name, reference)) => {
            let is_digest = reference.contains(':');
            html(
                StatusCode::OK,
                pages::confirm_delete(&v.chrome(), name.as_str(), &reference, is_digest),
            )
        }
        Err(response) => *response,
    }
}

async fn delete(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let v = viewer(&state, &parts.headers);
    let form = read_form(body).await;
    if !csrf_checked(&v, &form) {
        return forbidden(&v, "Not logged in, or the form expired; reload the page.");
    }
    let (name, reference) = match delete_target(&state, &v, &form) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    let user = v
        .session
        .as_ref()
        .map_or(crate::auth::ANONYMOUS, |s| s.user.as_str());
    // An admin may override an immutable-tag rule that allows it.
    let admin = user != crate::auth::ANONYMOUS && state.auth.acl.get().is_admin(Some(user));
    // The checks every delete passes, whatever its entrance: a proxied
    // repository is the upstream's, not ours to delete from.
    if let Some(e) = crate::service::proxied::refuse_write(&state, &name) {
        return error_page(&v, e);
    }
    let parsed: crate::oci::Reference = match reference.parse() {
        Ok(r) => r,
        Err(_) => {
            return error_page(
                &v,
                crate::protocol::error::ApiError::new(
                    crate::protocol::error::Code::ManifestUnknown,
                    "manifest unknown to registry",
                ),
            )
        }
    };
    match crate::service::manifests::delete(&state, &name, &parsed, admin).await {
        Ok(untagged) => {
            let untagged: Vec<String> = untagged.iter().map(ToString::to_string).collect();
            let origin = Origin::request(
                &state,
                user,
                client.to_string(),
                &Method::DELETE,
                &parts.headers,
            );
            events::manifest_deleted(&state, &origin, name.as_str(), &reference, &untagged).await;
            state.auth.audit.record(&Event {
                event: "delete",
                user,
                client: Some(client),
                repository: name.as_str(),
                reference: &reference,
                method: "ui",
                ..Default::default()
            });
            redirect(&pages::repo_href(name.as_str()))
        }
        Err(e) => error_page(&v, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_references() {
        let d = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(
            matches!(parse_target("team/app"), Some(Target::Repository(n)) if n.as_str() == "team/app")
        );
        assert!(
            matches!(parse_target("team/app:v1"), Some(Target::Tag(n, t)) if n.as_str() == "team/app" && t.as_str() == "v1")
        );
        assert!(
            matches!(parse_target(&format!("a/b@{d}")), Some(Target::Digest(n, _)) if n.as_str() == "a/b")
        );
        assert!(parse_target("Bad/Name").is_none());
        assert!(parse_target("a/b@sha256:short").is_none());
        assert!(parse_target("../x").is_none());
    }

    #[test]
    fn next_stays_inside_the_ui() {
        assert_eq!(safe_next(Some("/ui/r/a")), "/ui/r/a");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }
}
