//! Wires config, storage and auth into a running HTTP(S) server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::credentials::{Created, Credentials};
use crate::auth::Authenticator;
use crate::config::{AuthMode, Config};
use crate::{api, storage, App};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] storage::backend::BackendError),
    #[error(transparent)]
    Auth(#[from] crate::auth::credentials::SetupError),
    #[error("http.addr {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http.tls: {0}")]
    Tls(std::io::Error),
}

/// A server running on its own tasks.
pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    /// Set when the htpasswd file was just created with a random admin
    /// password, so the caller can show it once.
    pub created_user: Option<Created>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish for up to `grace`.
    pub async fn shutdown(self, grace: Duration) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        match tokio::time::timeout(grace + Duration::from_secs(1), self.task).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        }
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.unwrap_or(Ok(()))
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

pub async fn start(config: &Config) -> Result<Running, StartError> {
    let addr = config.listen_addr()?;
    let storage = storage::backend::open(&config.storage)?;
    let (auth, created_user) = match config.auth.mode {
        AuthMode::None => {
            tracing::warn!("authentication is disabled: anyone can push and pull");
            (Authenticator::Open, None)
        }
        AuthMode::Htpasswd => {
            let (credentials, created) = Credentials::open(&config.auth.htpasswd)?;
            let credentials = Arc::new(credentials);
            credentials.spawn_reloader();
            let realm = config.auth.htpasswd.realm.clone();
            (Authenticator::Basic { realm, credentials }, created)
        }
    };
    for key in &config.ignored_env {
        tracing::warn!(variable = %key, "environment variable names no setting of this registry; ignored");
    }
    let app = Arc::new(App {
        storage,
        auth,
        delete_enabled: config.storage.delete_enabled,
    });
    let service = api::router(app).into_make_service_with_connect_info::<SocketAddr>();

    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let (shutdown, mut stop) = watch::channel(false);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };

    let tls = config.http.tls.clone();
    let task = match tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| StartError::Bind { addr, source })?;
            tokio::spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls = RustlsConfig::from_pem_file(&tls.certificate, &tls.key)
                .await
                .map_err(StartError::Tls)?;
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(listener, rustls)
                .map_err(StartError::Tls)?
                .handle(handle.clone());
            tokio::spawn(async move {
                stopped.await;
                handle.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            tokio::spawn(async move { server.serve(service).await })
        }
    };
    Ok(Running {
        addr,
        tls: config.http.tls.is_some(),
        created_user,
        shutdown,
        task,
    })
}
