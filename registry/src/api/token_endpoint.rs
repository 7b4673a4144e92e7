//! The built-in token endpoint, `/auth/token`, per Docker's token spec:
//!
//! * `GET ?service=&scope=...&offline_token=true` with Basic credentials
//!   (or none, for an anonymous token), what `docker login/push/pull` use;
//! * `POST` form (Docker's OAuth2 spec, what containerd uses):
//!   `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), `scope` space-separated,
//!   `access_type=offline` for a refresh token.
//!
//! Granted actions are the requested ones the ACL allows (a partly allowed
//! scope is granted in part, not refused). Wrong passwords count against the
//! same per-address and per-user limits as Basic mode.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::access::{Actions, RequestedScope};
use crate::auth::acl::Acl;
use crate::auth::audit::Event;
use crate::auth::credentials::{self, Credentials, Failure};
use crate::auth::token::{ClaimAccess, TokenAuth};
use crate::auth::{Mode, User};
use crate::oci::RepoName;
use crate::protocol::client_addr::ClientAddr;
use crate::protocol::error::{ApiError, Code};
use crate::protocol::RouteKind;
use crate::AppState;

const MAX_FORM: usize = 64 * 1024;

/// The requested scopes the ACL allows `user` (`None`: anonymous), merged
/// per resource, in request order.
pub fn grant(acl: &Acl, user: Option<&str>, scopes: &[RequestedScope]) -> Vec<ClaimAccess> {
    let mut out: Vec<(String, String, Actions)> = Vec::new();
    let mut add = |kind: &str, name: &str, actions: Actions| {
        if actions.is_empty() {
            return;
        }
        match out.iter_mut().find(|(k, n, _)| k == kind && n == name) {
            Some(entry) => entry.2 = entry.2.union(actions),
            None => out.push((kind.to_owned(), name.to_owned(), actions)),
        }
    };
    for scope in scopes {
        match scope.kind.as_str() {
            "repository" => {
                let Ok(name) = scope.name.parse::<RepoName>() else {
                    continue;
                };
                let requested = scope
                    .actions
                    .iter()
                    .filter_map(|a| Actions::parse_one(a))
                    .fold(Actions::NONE, Actions::union);
                let allowed = acl.actions(user, name.as_str());
                add("repository", name.as_str(), requested.intersect(allowed));
            }
            "registry"
                if scope.name == "catalog"
                    && scope.actions.iter().any(|a| a == "*")
                    && acl.catalog(user) =>
            {
                add("registry", "catalog", Actions::ALL)
            }
            _ => {}
        }
    }
    out.into_iter()
        .map(|(kind, name, actions)| ClaimAccess {
            actions: if kind == "registry" {
                vec!["*".to_owned()]
            } else {
                actions.names().into_iter().map(str::to_owned).collect()
            },
            kind,
            name,
        })
        .collect()
}

fn scope_string(access: &[ClaimAccess]) -> String {
    access
        .iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn requested_string(scopes: &[RequestedScope]) -> String {
    scopes
        .iter()
        .map(|s| format!("{}:{}:{}", s.kind, s.name, s.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The endpoint's state, when it is on.
fn endpoint(state: &AppState) -> Option<(&Arc<TokenAuth>, &Arc<Credentials>)> {
    match &state.auth.mode {
        Mode::Token {
            token,
            credentials: Some(credentials),
        } if token.signing_key().is_some() => Some((token, credentials)),
        _ => None,
    }
}

fn labelled(mut response: Response, user: &str) -> Response {
    response.extensions_mut().insert(RouteKind("token"));
    if !user.is_empty() {
        response.extensions_mut().insert(User(user.to_owned()));
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
    response
}

fn not_found() -> Response {
    labelled(
        ApiError::new(Code::Unsupported, "no token endpoint on this registry")
            .status(StatusCode::NOT_FOUND)
            .into_response(),
        "",
    )
}

fn throttled(retry_after: u64) -> Response {
    ApiError::new(
        Code::TooManyRequests,
        "too many failed logins; try again later",
    )
    .status(StatusCode::TOO_MANY_REQUESTS)
    .header(header::RETRY_AFTER, retry_after.to_string())
    .into_response()
}

/// OAuth2 error body (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

struct Issue<'a> {
    user: Option<&'a str>,
    scopes: Vec<RequestedScope>,
    refresh: bool,
    oauth: bool,
    client: std::net::IpAddr,
}

/// Grants, signs, audits, answers.
fn issue(state: &AppState, token: &TokenAuth, credentials: &Credentials, req: Issue) -> Response {
    let access = grant(&state.auth.acl.get(), req.user, &req.scopes);
    let granted = scope_string(&access);
    let subject = req.user.unwrap_or_default();
    let issued = match token.issue(subject, access) {
        Ok(i) => i,
        Err(e) => {
            return ApiError::internal(Code::Unknown, "cannot sign a token", e).into_response()
        }
    };
    let refresh = match (req.refresh, req.user) {
        (true, Some(user)) => credentials
            .fingerprint(user)
            .and_then(|fp| token.issue_refresh(user, &fp).ok()),
        _ => None,
    };
    state.auth.audit.record(&Event {
        event: "token",
        user: subject,
        client: Some(req.client),
        requested: &requested_string(&req.scopes),
        granted: &granted,
        method: if req.oauth { "POST" } else { "GET" },
        ..Default::default()
    });
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": humantime::format_rfc3339_seconds(issued.issued_at).to_string(),
    });
    if req.oauth {
        body["scope"] = json!(granted);
        body["token_type"] = json!("Bearer");
    }
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    axum::Json(body).into_response()
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn wrong_service(token: &TokenAuth, pairs: &[(String, String)]) -> bool {
    first(pairs, "service").is_some_and(|s| s != token.config.service)
}

/// `GET /auth/token`.
pub async fn get(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some((token, credentials)) = endpoint(&state) else {
        return not_found();
    };
    let pairs = query_pairs(&uri);
    if wrong_service(token, &pairs) {
        return labelled(
            ApiError::new(Code::Unsupported, "unknown service")
                .status(StatusCode::BAD_REQUEST)
                .into_response(),
            "",
        );
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match authorization {
        None => None,
        Some(value) => match credentials.authenticate_fresh(Some(value), client).await {
            Ok((user, _)) => Some(user),
            Err(failure) => {
                let user = credentials::basic_user(value).unwrap_or_default();
                let response = login_refused(&state, failure, &user, client, token);
                return labelled(response, "");
            }
        },
    };
    let scopes = RequestedScope::parse_all(
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let refresh = first(&pairs, "offline_token") == Some("true");
    let response = issue(
        &state,
        token,
        credentials,
        Issue {
            user: user.as_deref(),
            scopes,
            refresh,
            oauth: false,
            client,
        },
    );
    labelled(response, user.as_deref().unwrap_or(crate::auth::ANONYMOUS))
}

fn login_refused(
    state: &AppState,
    failure: Failure,
    user: &str,
    client: std::net::IpAddr,
    token: &TokenAuth,
) -> Response {
    match failure {
        Failure::Throttled {
            retry_after,
            per_user,
        } => {
            state.auth.audit.record(&Event {
                event: "throttled",
                user,
                client: Some(client),
                reason: if per_user { "user" } else { "address" },
                ..Default::default()
            });
            throttled(retry_after)
        }
        Failure::Missing | Failure::Invalid => {
            state.auth.audit.record(&Event {
                event: "login_failed",
                user,
                client: Some(client),
                ..Default::default()
            });
            ApiError::new(Code::Unauthorized, "invalid username or password")
                .header(
                    header::WWW_AUTHENTICATE,
                    format!("Basic realm=\"{}\"", token.config.service.replace('"', "'")),
                )
                .into_response()
        }
    }
}

/// `POST /auth/token` (OAuth2 form).
pub async fn post(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    body: Body,
) -> Response {
    let Some((token, credentials)) = endpoint(&state) else {
        return not_found();
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return labelled(
            oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "form too large",
            )
            .into_response(),
            "",
        );
    };
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let field = |k: &str| first(&form, k).filter(|v| !v.is_empty());
    if wrong_service(token, &form) {
        return labelled(
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "unknown service",
            ),
            "",
        );
    }
    let user = match field("grant_type") {
        Some("password") => {
            let (Some(username), Some(password)) = (field("username"), first(&form, "password"))
            else {
                return labelled(
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "username and password are required",
                    ),
                    "",
                );
            };
            match credentials
                .authenticate_password(username, password, client)
                .await
            {
                Ok(user) => user,
                Err(Failure::Throttled {
                    retry_after,
                    per_user,
                }) => {
                    state.auth.audit.record(&Event {
                        event: "throttled",
                        user: username,
                        client: Some(client),
                        reason: if per_user { "user" } else { "address" },
                        ..Default::default()
                    });
                    return labelled(throttled(retry_after), "");
                }
                Err(_) => {
                    state.auth.audit.record(&Event {
                        event: "login_failed",
                        user: username,
                        client: Some(client),
                        ..Default::default()
                    });
                    return labelled(
                        oauth_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_grant",
                            "invalid username or password",
                        ),
                        "",
                    );
                }
            }
        }
        Some("refresh_token") => {
            let Some(refresh) = field("refresh_token") else {
                return labelled(
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "refresh_token is required",
                    ),
                    "",
                );
            };
            if let Err(Failure::Throttled { retry_after, .. }) = credentials.check_client(client) {
                return labelled(throttled(retry_after), "");
            }
            let checked = token.verify_refresh(refresh).ok().and_then(|(user, fp)| {
                let current = credentials.fingerprint(&user)?;
                credentials::constant_time_eq(current.as_bytes(), fp.as_bytes()).then_some(user)
            });
            match checked {
                Some(user) => user,
                None => {
                    credentials.record_failure(client, "");
                    state.auth.audit.record(&Event {
                        event: "login_failed",
                        client: Some(client),
                        reason: "invalid refresh token",
                        ..Default::default()
                    });
                    return labelled(
                        oauth_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_grant",
                            "refresh token is invalid, expired or revoked",
                        ),
                        "",
                    );
                }
            }
        }
        Some(other) => {
            return labelled(
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    &format!(
                        "grant_type {other:?} is not supported (use password or refresh_token)"
                    ),
                ),
                "",
            )
        }
        None => {
            return labelled(
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "grant_type is required",
                ),
                "",
            )
        }
    };
    let scopes = RequestedScope::parse_all(
        form.iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let refresh = field("access_type") == Some("offline");
    let response = issue(
        &state,
        token,
        credentials,
        Issue {
            user: Some(&user),
            scopes,
            refresh,
            oauth: true,
            client,
        },
    );
    labelled(response, &user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_the_intersection_per_resource() {
        let config: crate::auth::acl::AclConfig = toml::from_str(
            r#"
            catalog = ["ops"]
            [[rules]]
            repository = "team-a/**"
            pull = ["*"]
            push = ["alice"]
        "#,
        )
        .unwrap();
        let acl = Acl::from_config(Some(&config)).unwrap();
        let scopes = RequestedScope::parse_all([
            "repository:team-a/app:pull,push,delete",
            "repository:team-b/app:pull",
            "repository:team-a/app:pull",
            "registry:catalog:*",
            "repository:BAD:pull",
        ]);
        let alice = grant(&acl, Some("alice"), &scopes);
        assert_eq!(scope_string(&alice), "repository:team-a/app:pull,push");
        let bob = grant(&acl, Some("bob"), &scopes);
        assert_eq!(scope_string(&bob), "repository:team-a/app:pull");
        let ops = grant(&acl, Some("ops"), &scopes);
        assert_eq!(
            scope_string(&ops),
            "repository:team-a/app:pull registry:catalog:*"
        );
        assert!(grant(&acl, None, &scopes).is_empty());
    }
}
