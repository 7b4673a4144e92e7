//! Notifications, compatible with registry:2's (`notifications.endpoints`,
//! the same envelope and fields), but durable: an event is written to
//! storage (`storage::event_queue`) before the request that caused it is
//! answered, and removed only once its endpoint answered 2xx. A delivery
//! task per endpoint sends the queue oldest first (so in order per
//! repository), retrying with the endpoint's threshold and backoff;
//! delivery is at least once (a crash between the send and the removal
//! sends again), receivers dedupe by event id. A queue is bounded
//! (`maxpending`): past it the oldest event is dropped, counted and logged,
//! so a dead endpoint never fills the disk nor blocks a push.
//!
//! Events are made in one place, `middleware`, from the request and its
//! successful response; handlers know nothing of them.

mod deliver;
pub mod event;
pub mod middleware;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{Config, NotifyEndpoint};
use crate::metrics::{EndpointLabel, Metrics, NotifyMetrics};
use crate::storage::Storage;
use event::{Actor, Event, RequestInfo, SourceInfo, Target};

struct Endpoint {
    config: NotifyEndpoint,
    label: EndpointLabel,
    wake: Notify,
    /// Serialises the bound check of concurrent appends.
    trim: tokio::sync::Mutex<()>,
}

pub struct Notifier {
    endpoints: Vec<Arc<Endpoint>>,
    storage: Storage,
    metrics: NotifyMetrics,
    pub instance_id: String,
    /// `source.addr`: this host and port, as registry:2 reports it.
    pub source_addr: String,
    /// Of the target URLs.
    pub scheme: &'static str,
    /// `request.host` and the host of target URLs: `http.host`'s, or this
    /// instance's `source_addr`, never the client's `Host` header (a
    /// pusher could otherwise point receivers' links anywhere).
    pub host: String,
    seq: AtomicU64,
}

impl Notifier {
    /// None when no endpoint is enabled.
    pub fn new(
        config: &Config,
        storage: &Storage,
        metrics: &Metrics,
        port: u16,
    ) -> Option<Arc<Notifier>> {
        let endpoints: Vec<Arc<Endpoint>> = config
            .notifications
            .endpoints
            .iter()
            .filter(|e| !e.disabled)
            .map(|e| {
                Arc::new(Endpoint {
                    label: EndpointLabel {
                        endpoint: e.name.clone(),
                    },
                    config: e.clone(),
                    wake: Notify::new(),
                    trim: tokio::sync::Mutex::new(()),
                })
            })
            .collect();
        if endpoints.is_empty() {
            return None;
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let source_addr = format!("{host}:{port}");
        let external = config.external_url().ok().flatten();
        Some(Arc::new(Notifier {
            host: external.map_or_else(|| source_addr.clone(), |(_, h)| h.to_owned()),
            endpoints,
            storage: storage.clone(),
            metrics: metrics.notify.clone(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            source_addr,
            scheme: match external {
                Some(("https", _)) => "https",
                Some(_) => "http",
                None if config.http.tls.is_some() => "https",
                None => "http",
            },
            seq: AtomicU64::new(0),
        }))
    }

    /// Starts one delivery task per endpoint; they stop on `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        self.endpoints
            .iter()
            .map(|e| tokio::spawn(deliver::run(self.clone(), e.clone(), shutdown.clone())))
            .collect()
    }

    /// Queues one `action` event per target, as `actor` through `request`
    /// (the `/v2` middleware, the UI and other entrances that change what
    /// is stored); returns once they are stored.
    pub async fn emit_action(
        &self,
        action: &str,
        targets: Vec<Target>,
        request: &RequestInfo,
        actor: &str,
    ) {
        for target in targets {
            self.emit(Event {
                id: uuid::Uuid::new_v4().to_string(),
                timestamp: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
                action: action.into(),
                target,
                request: request.clone(),
                actor: Actor {
                    name: actor.to_owned(),
                },
                source: SourceInfo {
                    addr: self.source_addr.clone(),
                    instance_id: self.instance_id.clone(),
                },
            })
            .await;
        }
    }

    /// The delete events of manifest `reference` of `repository`: the
    /// manifest (by digest, or the tag deleted), then each tag that a
    /// delete by digest removed with it, as registry:2 sends them.
    pub fn delete_targets(repository: &str, reference: &str, untagged: &[String]) -> Vec<Target> {
        let mut manifest = Target {
            repository: repository.to_owned(),
            ..Default::default()
        };
        if reference.parse::<crate::oci::Digest>().is_ok() {
            manifest.digest = reference.to_owned();
        } else {
            manifest.tag = reference.to_owned();
        }
        let tags = untagged.iter().map(|tag| Target {
            repository: repository.to_owned(),
            tag: tag.clone(),
            ..Default::default()
        });
        std::iter::once(manifest).chain(tags).collect()
    }

    /// Queues `event` for every endpoint whose filters let it through;
    /// returns once it is stored.
    pub async fn emit(&self, event: Event) {
        let json = serde_json::to_vec(&event).expect("JSON");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        // Sorts in emission order within this process (and by time across
        // replicas).
        let name = format!("{nanos:020}-{seq:012}-{}", event.id);
        for e in &self.endpoints {
            if !wanted(&e.config, &event) {
                continue;
            }
            if let Err(err) = self
                .storage
                .queue_append(&e.config.name, &name, Bytes::from(json.clone()))
                .await
            {
                self.metrics.dropped.get_or_create(&e.label).inc();
                tracing::error!(endpoint = %e.config.name, error = %err, id = %event.id, "notification could not be queued; dropped");
                continue;
            }
            self.metrics.pending.get_or_create(&e.label).inc();
            self.bound(e).await;
            e.wake.notify_one();
        }
    }

    /// Drops the oldest events past `maxpending`.
    async fn bound(&self, e: &Endpoint) {
        if (self.metrics.pending.get_or_create(&e.label).get() as usize) <= e.config.maxpending {
            return;
        }
        let _one = e.trim.lock().await;
        let Ok(names) = self.storage.queue_list(&e.config.name).await else {
            return;
        };
        let excess = names.len().saturating_sub(e.config.maxpending);
        for name in &names[..excess] {
            if self
                .storage
                .queue_remove(&e.config.name, name)
                .await
                .is_ok()
            {
                self.metrics.dropped.get_or_create(&e.label).inc();
                tracing::warn!(endpoint = %e.config.name, event = %name, max = e.config.maxpending, "notification queue full; oldest event dropped");
            }
        }
        self.metrics
            .pending
            .get_or_create(&e.label)
            .set((names.len() - excess) as i64);
    }
}

/// registry:2's `ignoredmediatypes` and `ignore`, then our repository
/// globs and actions.
fn wanted(c: &NotifyEndpoint, event: &Event) -> bool {
    let media = &event.target.media_type;
    if c.ignoredmediatypes
        .iter()
        .chain(&c.ignore.mediatypes)
        .any(|m| m == media)
    {
        return false;
    }
    if c.ignore.actions.contains(&event.action) {
        return false;
    }
    if !c.actions.is_empty() && !c.actions.contains(&event.action) {
        return false;
    }
    c.repositories.is_empty()
        || c.repositories
            .iter()
            .any(|g| crate::glob::glob_match(g.as_bytes(), event.target.repository.as_bytes()))
}
