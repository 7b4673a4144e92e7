//! Wires config, store, metrics and routes together and runs the HTTP server
//! until a shutdown signal has been handled.

use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::hostname::hostname;
use crate::metrics::Metrics;
use crate::redis_client::Store;
use crate::routes::{router, AppState};
use crate::shutdown::ShutdownSignal;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid Redis settings: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

pub async fn run(config: Config) -> Result<(), ServeError> {
    let shutdown = ShutdownSignal::install().map_err(ServeError::Signals)?;
    let store = Arc::new(Store::new(&config.redis)?);
    let state = AppState {
        store: store.clone(),
        metrics: Arc::new(Metrics::default()),
        hostname: hostname().into(),
    };

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(ServeError::Serve)?;
    // Responses are single small writes; don't let Nagle delay them.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });

    // Report Redis' state in the log right away instead of at the first request.
    tokio::spawn(async move {
        if let Err(err) = store.ping().await {
            tracing::warn!(%err, "Redis not reachable yet; requests get 503 until it is");
        }
    });

    // The tests and operators read this line; keep its wording stable.
    tracing::info!(hostname = %state.hostname, redis = %config.redis.target(), "listening on http://{local_addr}");

    let (signalled_tx, signalled_rx) = oneshot::channel::<()>();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.recv().await;
        let _ = signalled_tx.send(());
    });
    // Draining is bounded: a client that never finishes its request must not
    // hold the process past the orchestrator's grace period.
    let drain_deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(config.shutdown_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };

    tokio::select! {
        result = async { server.await } => {
            result.map_err(ServeError::Serve)?;
            tracing::info!("all requests finished; exiting");
        }
        () = drain_deadline => {
            tracing::warn!(
                timeout_secs = config.shutdown_timeout.as_secs(),
                "shutdown timeout reached with requests still open; exiting anyway"
            );
        }
    }
    Ok(())
}
