//! Who the client is, for handlers: `ClientAddr` from the connection and
//! the trusted proxies of `http.trusted_proxies`
//! (`protocol::client_addr` holds the rules; this binds them to the app).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::protocol::client_addr::ClientAddr;
use crate::AppState;

impl ClientAddr {
    /// From a request's parts; `None` when the server was not started with
    /// connection info (never, in `server::start`).
    pub fn of(
        state: &AppState,
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(state.auth.proxies.client(peer, headers))
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = <ConnectInfo<SocketAddr> as FromRequestParts<AppState>>::Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await?;
        Ok(ClientAddr(
            state.auth.proxies.client(peer.ip(), &parts.headers),
        ))
    }
}
