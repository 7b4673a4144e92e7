//! The server's background work besides serving the API: the metrics
//! listener, online garbage collection, upload purging and the scheduled
//! retention runs (each a `periodic::every` loop). All of it stops when the
//! server's `CancellationToken` is cancelled, each job at a safe point.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::metrics::Metrics;
use crate::policy::retention;
use crate::storage::maintenance::gc;
use crate::storage::Storage;

pub struct Background {
    /// Where metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics.addr {addr}: cannot listen: {source}")]
pub struct MetricsBindError {
    /// The address, or `metrics.addr` as written when it did not resolve.
    pub addr: String,
    pub source: std::io::Error,
}

/// What runs after each online collection: the quota scopes it may have
/// emptied are reconciled.
#[derive(Clone)]
pub struct AfterGc {
    pub ledger: Arc<crate::quota::Ledger>,
    pub policies: Arc<dyn Fn() -> Arc<crate::policy::Policies> + Send + Sync>,
}

pub fn start(
    config: &Config,
    storage: &Storage,
    metrics: &Arc<Metrics>,
    after_gc: AfterGc,
    stop: CancellationToken,
) -> Result<Background, MetricsBindError> {
    let mut tasks = Vec::new();
    let mut metrics_addr = None;
    // Every address `metrics.addr` (`http.debug.addr`) names.
    let addrs = config
        .metrics_addrs()
        .map_err(|e| MetricsBindError {
            addr: config.metrics.addr.clone().unwrap_or_default(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        })?
        .unwrap_or_default();
    let listeners =
        crate::config::listen::bind_all(&addrs).map_err(|(addr, source)| MetricsBindError {
            addr: addr.to_string(),
            source,
        })?;
    for listener in listeners {
        let bind_err = |source| MetricsBindError {
            addr: config.metrics.addr.clone().unwrap_or_default(),
            source,
        };
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        metrics_addr.get_or_insert(local);
        let served = metrics::serve(
            listener,
            config.metrics.path.clone(),
            metrics.clone(),
            storage.clone(),
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
                untagged_after: Vec::new(),
            };
            tasks.push(spawn_online(
                storage.clone(),
                options,
                config.gc.interval,
                metrics.clone(),
                after_gc,
                stop.clone(),
            ));
        }
    }
    let purging = &config.storage.maintenance.uploadpurging;
    if purging.enabled && !read_only {
        tasks.push(spawn_upload_purger(
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

/// Runs a collection every `interval` until `stop` is set. Runs never
/// overlap (here, and across replicas through the storage lock).
fn spawn_online(
    storage: Storage,
    options: gc::Options,
    interval: Duration,
    metrics: Arc<Metrics>,
    after_gc: AfterGc,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(crate::periodic::every(
        interval,
        interval,
        stop.clone(),
        move || {
            let (storage, options, metrics, after_gc, stop) = (
                storage.clone(),
                options.clone(),
                metrics.clone(),
                after_gc.clone(),
                stop.clone(),
            );
            async move {
                let started = Instant::now();
                // The retention rules in force now (they reload) say how long
                // untagged manifests stay in the repositories they govern.
                let options = gc::Options {
                    untagged_after: crate::policy::retention::untagged_windows(
                        &(after_gc.policies)().retention,
                    ),
                    ..options.clone()
                };
                let result = gc::run(&storage, &options, Some(stop.clone())).await;
                metrics.gc_finished(&result, started.elapsed());
                match &result {
                    Ok(report) => {
                        tracing::info!(target: "gc", "{report}");
                        let quotas = (after_gc.policies)().quota.clone();
                        if let Err(e) = after_gc.ledger.after_gc(&quotas).await {
                            tracing::error!(target: "gc", "quota usage not reconciled after garbage collection: {e}");
                        }
                    }
                    Err(gc::GcError::Locked { .. }) => {
                        tracing::info!(target: "gc", "skipped: {}", result.as_ref().unwrap_err())
                    }
                    Err(gc::GcError::Stopped) => return false,
                    Err(e) => tracing::error!(target: "gc", "garbage collection failed: {e}"),
                }
                true
            }
        },
    ))
}

/// Purges old upload sessions every `interval` (first after a random part
/// of it, so replicas started together do not purge together).
fn spawn_upload_purger(
    storage: Storage,
    config: crate::config::UploadPurging,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let jitter = config.interval.mul_f64(rand::random::<f64>());
    let first = jitter.min(Duration::from_secs(3600));
    tokio::spawn(crate::periodic::every(
        first,
        config.interval,
        stop,
        move || {
            let (storage, config, metrics) = (storage.clone(), config.clone(), metrics.clone());
            async move {
                match gc::purge_uploads(&storage, config.age, config.dryrun).await {
                    Ok(purged) => {
                        if !config.dryrun {
                            metrics.uploads_purged(purged.len() as u64);
                        }
                        for (repo, id) in &purged {
                            tracing::info!(target: "gc", repository = %repo, upload = %id, dry_run = config.dryrun, "purged stale upload session");
                        }
                    }
                    Err(e) => tracing::error!(target: "gc", "upload purging failed: {e}"),
                }
                true
            }
        },
    ))
}

/// The server's scheduled runs (`policies.retention_interval`): every
/// `interval`, the rules in force then (they reload with the config file)
/// are applied; each removal is logged (target `audit`) and sent as a tag
/// delete event (`service::events`), and the summary;
/// `finished` hears (removed, to remove in dry-run rules), or None for a
/// failed run (the metrics).
pub fn spawn_scheduled(
    storage: Storage,
    interval: std::time::Duration,
    app: crate::AppState,
    finished: impl Fn(Option<(u64, u64)>) + Send + Sync + 'static,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let finished = Arc::new(finished);
    tokio::spawn(crate::periodic::every(
        interval,
        interval,
        stop,
        move || {
            let (storage, app, finished) = (storage.clone(), app.clone(), finished.clone());
            async move {
                let p = app.policies.get();
                if p.retention.is_empty() {
                    return true;
                }
                // This replica's latest pulls count too.
                if let Err(e) = app.pulls.record().await {
                    tracing::warn!(error = %e, "retention: recording pull times failed; using the records as they are");
                }
                match retention::run(&storage, &p.retention, &p.immutable, true).await {
                    Ok(report) => {
                        // Each removed tag: audited, and the tag delete event
                        // a client's delete of it would send.
                        let origin = crate::service::events::Origin::job(&app, "retention");
                        for t in &report.tags {
                            if t.outcome == (retention::Outcome::Removed { dry_run: false }) {
                                tracing::info!(target: "audit", action = "retention_remove", repository = %t.repository, tag = %t.tag, digest = %t.digest, rule = %t.rule, "retention removed a tag");
                                crate::service::events::manifest_deleted(
                                    &app,
                                    &origin,
                                    &t.repository,
                                    &t.tag,
                                    &[],
                                )
                                .await;
                            }
                        }
                        tracing::info!(summary = %report.summary(), "retention ran");
                        finished(Some((
                            report.removed() as u64,
                            report.would_remove() as u64,
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; trying again at the next interval");
                        finished(None);
                    }
                }
                true
            }
        },
    ))
}
