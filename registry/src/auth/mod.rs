//! Who is asking. A middleware in front of every `/v2` route authenticates
//! the request or answers the challenge itself, so handlers never see an
//! unauthenticated request and never build challenges.

pub mod credentials;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, Code};
use crate::AppState;
use credentials::{Credentials, Failure};

/// The authenticated user, in request and response extensions (the access
/// log reads it from the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

pub enum Authenticator {
    /// Every request allowed, as `anonymous`.
    Open,
    Basic {
        realm: String,
        credentials: Arc<Credentials>,
    },
}

impl Authenticator {
    fn challenge(&self) -> Option<String> {
        match self {
            Authenticator::Open => None,
            Authenticator::Basic { realm, .. } => {
                Some(format!("Basic realm=\"{}\"", realm.replace('"', "'")))
            }
        }
    }
}

pub async fn require_auth(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let user = match &state.auth {
        Authenticator::Open => User("anonymous".into()),
        Authenticator::Basic { credentials, .. } => {
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match credentials.authenticate(header, peer.ip()).await {
                Ok(name) => User(name),
                Err(failure) => {
                    let has_body = crate::api::body::has_body(request.headers());
                    return refuse(&state.auth, failure, has_body);
                }
            }
        }
    };
    request.extensions_mut().insert(user.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(user);
    response
}

fn refuse(auth: &Authenticator, failure: Failure, has_body: bool) -> Response {
    let error = match failure {
        Failure::Throttled { retry_after } => ApiError::new(
            Code::TooManyRequests,
            "too many failed logins from this address; try again later",
        )
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::RETRY_AFTER, retry_after.to_string()),
        Failure::Missing | Failure::Invalid => {
            let message = if failure == Failure::Missing {
                "authentication required"
            } else {
                "invalid username or password"
            };
            let mut e = ApiError::new(Code::Unauthorized, message);
            if let Some(challenge) = auth.challenge() {
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
