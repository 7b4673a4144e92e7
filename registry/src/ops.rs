//! The server's background work besides serving the API: the metrics
//! listener, online garbage collection and upload purging. All of it stops
//! when the server's shutdown signal is set.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::{gc, metrics};

pub struct Background {
    /// Where metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics.addr {addr}: cannot listen: {source}")]
pub struct MetricsBindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

pub fn start(
    config: &Config,
    storage: &Storage,
    metrics: &Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<Background, MetricsBindError> {
    let mut tasks = Vec::new();
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_addr().ok().flatten() {
        let bind_err = |source| MetricsBindError { addr, source };
        let listener = metrics::bind(addr).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        metrics_addr = Some(local);
        let served = metrics::serve(
            listener,
            config.metrics.path.clone(),
            metrics.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Ok(Err(e)) = served.await {
                tracing::error!("metrics listener failed: {e}");
            }
        }));
        tracing::info!(addr = %local, path = %config.metrics.path, "metrics listening");
    }
    let read_only = config.storage.maintenance.readonly.enabled;
    if !config.gc.interval.is_zero() {
        if read_only {
            tracing::warn!("gc.interval is set but the registry is read-only: online garbage collection is off");
        } else {
            let options = gc::Options {
                dry_run: false,
                delete_untagged: config.gc.delete_untagged,
                grace: config.gc.grace_period,
                upload_max_age: None,
            };
            tasks.push(gc::spawn_online(
                storage.clone(),
                options,
                config.gc.interval,
                metrics.clone(),
                stop.clone(),
            ));
        }
    }
    let purging = &config.storage.maintenance.uploadpurging;
    if purging.enabled && !read_only {
        tasks.push(gc::spawn_upload_purger(
            storage.clone(),
            purging.clone(),
            metrics.clone(),
            stop,
        ));
    }
    Ok(Background {
        metrics_addr,
        tasks,
    })
}
