//! Prometheus metrics (`prometheus-client`, text format 0.0.4), served on a
//! separate plain-HTTP listener (`[metrics] addr`), never on the API port:
//! the metrics listener has no authentication, so bind it to a private
//! address.
//!
//! * `registry_http_requests_total{method,route,status}`
//! * `registry_http_request_duration_seconds{method,route}`: until the
//!   response body was sent (a blob download counts whole)
//! * `registry_http_request_bytes_total{route}`, `registry_http_response_bytes_total{route}`:
//!   body bytes actually received and sent
//! * `registry_uploads_in_flight`: upload requests (POST/PATCH/PUT on
//!   `.../blobs/uploads/`) being received
//! * `registry_auth_failures_total{reason}`: `missing` / `invalid`
//!   credentials (401), `denied` (403), `throttled` (429)
//! * `registry_storage_errors_total{operation}`: backend failures
//! * `registry_storage_operations_total{operation}`: backend operations
//!   asked for (get, head, put, list, delete, copy, rename)
//! * `registry_gc_runs_total{result}`, `registry_gc_bytes_freed_total`,
//!   `registry_gc_blobs_deleted_total`, `registry_gc_manifests_deleted_total`,
//!   `registry_gc_duration_seconds`, `registry_gc_last_success_timestamp_seconds`,
//!   `registry_uploads_purged_total` (online GC and upload purging)
//! * `registry_retention_runs_total{result}`, `registry_retention_tags_removed_total`,
//!   `registry_retention_tags_to_remove` (the last scheduled run's dry-run
//!   rules: what they would remove)
//! * `registry_read_only`: 1 in read-only mode
//! * `registry_notifications_pending{endpoint}`, `registry_notifications_sent_total{endpoint}`,
//!   `registry_notifications_failed_total{endpoint}` (delivery attempts that failed),
//!   `registry_notifications_dropped_total{endpoint}` (oldest events dropped from a full queue)
//! * `registry_proxy_*{upstream}`: the pull-through cache's own registry
//!   (`proxy::metrics`), appended to the exposition
//! * `registry_config_reloads_total{result}`: `ok` / `error` reloads of the
//!   ACL and policies when the config file changed (`reload`)
//! * `registry_storage_cache_hits_total`, `..._misses_total`,
//!   `..._evictions_total`, `registry_storage_cache_entries`,
//!   `registry_storage_cache_bytes`: the metadata cache (`[storage.cache]`),
//!   read when scraped
//! * `registry_storage_reads_joined_total`: blob GETs that shared a backend
//!   read already in progress (S3; `storage::read_coalesce`)

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::storage::maintenance::gc::{GcError, Report};
use crate::storage::metered::{ErrorSink, Outcome};

const REQUEST_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];
const GC_BUCKETS: [f64; 10] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodRoute {
    method: &'static str,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: String,
}

/// Per notification endpoint (`notify`).
#[derive(Clone, Default)]
pub struct NotifyMetrics {
    pub pending: Family<EndpointLabel, Gauge>,
    pub sent: Family<EndpointLabel, Counter>,
    pub failed: Family<EndpointLabel, Counter>,
    pub dropped: Family<EndpointLabel, Counter>,
}

pub struct Metrics {
    registry: Registry,
    pub notify: NotifyMetrics,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<MethodRoute>,
    bytes_in: Family<RouteLabel, Counter>,
    bytes_out: Family<RouteLabel, Counter>,
    uploads_in_flight: Gauge,
    auth_failures: Family<ReasonLabel, Counter>,
    storage_errors: Family<OperationLabel, Counter>,
    storage_operations: Family<OperationLabel, Counter>,
    gc_runs: Family<ResultLabel, Counter>,
    gc_bytes_freed: Counter,
    gc_blobs_deleted: Counter,
    gc_manifests_deleted: Counter,
    gc_duration: Histogram,
    gc_last_success: Gauge<f64, AtomicU64>,
    uploads_purged: Counter,
    retention_runs: Family<ResultLabel, Counter>,
    retention_removed: Counter,
    retention_to_remove: Gauge,
    read_only: Gauge,
    /// Registries of other modules (the proxy's per-upstream counters),
    /// appended to the exposition.
    extra: std::sync::Mutex<Vec<Registry>>,
    config_reloads: Family<ResultLabel, Counter>,
    cache: CacheMetrics,
    /// The storage whose metadata cache is reported (set once by the server).
    cache_source: std::sync::OnceLock<crate::storage::Storage>,
}

#[derive(Default)]
struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    entries: Gauge,
    bytes: Gauge,
    /// Blob GETs that joined a backend read already running (S3).
    reads_joined: Counter,
}

impl CacheMetrics {
    fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "hits",
                "Metadata cache lookups answered from memory",
                &self.hits,
            ),
            (
                "misses",
                "Metadata cache lookups that read storage",
                &self.misses,
            ),
            (
                "evictions",
                "Metadata cache entries evicted to stay within its limits",
                &self.evictions,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(format!("registry_storage_cache_{name}"), help, c.clone());
        }
        registry.register(
            "registry_storage_cache_entries",
            "Metadata cache entries",
            self.entries.clone(),
        );
        registry.register(
            "registry_storage_cache_bytes",
            "Metadata cache memory, estimated",
            self.bytes.clone(),
        );
        registry.register(
            "registry_storage_reads_joined",
            "Blob GETs that shared a backend read already in progress (object stores)",
            self.reads_joined.clone(),
        );
    }

    fn update(&self, s: crate::storage::meta_cache::CacheStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.hits.inner().store(s.hits, Relaxed);
        self.misses.inner().store(s.misses, Relaxed);
        self.evictions.inner().store(s.evictions, Relaxed);
        self.entries.set(s.entries as i64);
        self.bytes.set(s.bytes as i64);
    }
}

impl Metrics {
    pub fn new(read_only: bool) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily<MethodRoute> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        let bytes_in = Family::<RouteLabel, Counter>::default();
        let bytes_out = Family::<RouteLabel, Counter>::default();
        let uploads_in_flight = Gauge::default();
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        let storage_errors = Family::<OperationLabel, Counter>::default();
        let storage_operations = Family::<OperationLabel, Counter>::default();
        let gc_runs = Family::<ResultLabel, Counter>::default();
        let retention_runs = Family::<ResultLabel, Counter>::default();
        let retention_removed = Counter::default();
        let retention_to_remove = Gauge::default();
        registry.register(
            "registry_retention_runs",
            "Scheduled retention runs, by result",
            retention_runs.clone(),
        );
        registry.register(
            "registry_retention_tags_removed",
            "Tags removed by scheduled retention runs",
            retention_removed.clone(),
        );
        registry.register(
            "registry_retention_tags_to_remove",
            "Tags the dry-run retention rules would remove, at the last scheduled run",
            retention_to_remove.clone(),
        );
        let gc_bytes_freed = Counter::default();
        let gc_blobs_deleted = Counter::default();
        let gc_manifests_deleted = Counter::default();
        let gc_duration = Histogram::new(GC_BUCKETS);
        let gc_last_success = Gauge::<f64, AtomicU64>::default();
        let uploads_purged = Counter::default();
        let read_only_gauge = Gauge::default();
        read_only_gauge.set(i64::from(read_only));
        let cache = CacheMetrics::default();
        cache.register(&mut registry);

        registry.register(
            "registry_http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "registry_http_request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "registry_http_request_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        registry.register(
            "registry_http_response_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        registry.register(
            "registry_uploads_in_flight",
            "Blob upload requests (POST, PATCH, PUT) being received",
            uploads_in_flight.clone(),
        );
        registry.register(
            "registry_auth_failures",
            "Requests refused by authentication or authorization, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "registry_storage_errors",
            "Storage backend failures, by operation",
            storage_errors.clone(),
        );
        registry.register(
            "registry_storage_operations",
            "Storage backend operations asked for, by operation",
            storage_operations.clone(),
        );
        registry.register(
            "registry_gc_runs",
            "Garbage collection runs in this process, by result",
            gc_runs.clone(),
        );
        registry.register(
            "registry_gc_bytes_freed",
            "Bytes of blob content removed by garbage collection",
            gc_bytes_freed.clone(),
        );
        registry.register(
            "registry_gc_blobs_deleted",
            "Blobs removed by garbage collection",
            gc_blobs_deleted.clone(),
        );
        registry.register(
            "registry_gc_manifests_deleted",
            "Untagged manifests removed by garbage collection",
            gc_manifests_deleted.clone(),
        );
        registry.register(
            "registry_gc_duration_seconds",
            "Duration of garbage collection runs",
            gc_duration.clone(),
        );
        registry.register(
            "registry_gc_last_success_timestamp_seconds",
            "Unix time the last successful garbage collection finished",
            gc_last_success.clone(),
        );
        registry.register(
            "registry_uploads_purged",
            "Stale upload sessions removed",
            uploads_purged.clone(),
        );
        registry.register(
            "registry_read_only",
            "1 while the registry refuses pushes and deletes (maintenance)",
            read_only_gauge.clone(),
        );
        let notify = NotifyMetrics::default();
        registry.register(
            "registry_notifications_pending",
            "Events queued in storage for an endpoint",
            notify.pending.clone(),
        );
        registry.register(
            "registry_notifications_sent",
            "Events an endpoint acknowledged",
            notify.sent.clone(),
        );
        registry.register(
            "registry_notifications_failed",
            "Delivery attempts that failed",
            notify.failed.clone(),
        );
        registry.register(
            "registry_notifications_dropped",
            "Oldest events dropped because an endpoint's queue was full",
            notify.dropped.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "registry_config_reloads",
            "Reloads of the ACL and policies after the config file changed, by result",
            config_reloads.clone(),
        );
        Arc::new(Metrics {
            config_reloads,
            registry,
            notify,
            requests,
            duration,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            auth_failures,
            storage_errors,
            storage_operations,
            gc_runs,
            gc_bytes_freed,
            gc_blobs_deleted,
            gc_manifests_deleted,
            gc_duration,
            gc_last_success,
            uploads_purged,
            retention_runs,
            retention_removed,
            retention_to_remove,
            read_only: read_only_gauge,
            extra: Default::default(),
            cache,
            cache_source: std::sync::OnceLock::new(),
        })
    }

    /// The exposition, Prometheus text format.
    pub fn encode(&self) -> String {
        if let Some(storage) = self.cache_source.get() {
            self.cache.update(storage.cache_stats());
            self.cache.reads_joined.inner().store(
                storage.coalesced_reads(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        for r in self.extra.lock().unwrap().iter() {
            prometheus_client::encoding::prometheus_text::encode(&mut out, r)
                .expect("writing to a String cannot fail");
        }
        out
    }

    pub fn add_registry(&self, registry: Registry) {
        self.extra.lock().unwrap().push(registry);
    }

    /// Reports `storage`'s metadata cache from now on.
    pub fn observe_cache(&self, storage: crate::storage::Storage) {
        let _ = self.cache_source.set(storage);
    }

    /// For `Storage::with_error_sink`.
    pub fn storage_error_sink(self: &Arc<Self>) -> ErrorSink {
        let errors = self.storage_errors.clone();
        let operations = self.storage_operations.clone();
        Arc::new(move |operation, outcome| {
            let family = match outcome {
                Outcome::Started => &operations,
                Outcome::Failed => &errors,
            };
            family.get_or_create(&OperationLabel { operation }).inc();
        })
    }

    pub fn gc_finished(&self, result: &Result<Report, GcError>, took: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(GcError::Locked { .. }) => "skipped",
            Err(GcError::Stopped) => "stopped",
            Err(_) => "error",
        };
        self.gc_runs
            .get_or_create(&ResultLabel { result: outcome })
            .inc();
        if let Ok(report) = result {
            self.gc_duration.observe(took.as_secs_f64());
            if !report.dry_run {
                self.gc_bytes_freed.inc_by(report.bytes_freed());
                self.gc_blobs_deleted
                    .inc_by(report.deleted_blobs.len() as u64);
                self.gc_manifests_deleted
                    .inc_by(report.deleted_manifests.len() as u64);
                self.uploads_purged
                    .inc_by(report.purged_uploads.len() as u64);
            }
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            self.gc_last_success.set(now.as_secs_f64());
        }
    }

    /// A scheduled retention run: (tags removed, tags dry-run rules would
    /// remove), or None when it failed.
    pub fn retention_finished(&self, counts: Option<(u64, u64)>) {
        let result = if counts.is_some() { "ok" } else { "error" };
        self.retention_runs
            .get_or_create(&ResultLabel { result })
            .inc();
        if let Some((removed, to_remove)) = counts {
            self.retention_removed.inc_by(removed);
            self.retention_to_remove.set(to_remove as i64);
        }
    }

    pub fn uploads_purged(&self, n: u64) {
        self.uploads_purged.inc_by(n);
    }

    pub fn config_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.get() == 1
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A bounded set of route labels, from the path alone (so requests refused
/// before routing, by authentication, are labelled too).
fn route_label(path: &str) -> &'static str {
    match path {
        "/v2" | "/v2/" => "base",
        "/livez" => "livez",
        "/readyz" => "readyz",
        _ => match path.strip_prefix("/v2/") {
            Some(rest) => crate::protocol::route::parse(rest).map_or("invalid", |r| r.kind()),
            None => "other",
        },
    }
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Observes the duration when the response body is finished (or dropped).
struct ObserveOnDrop {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ObserveOnDrop {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// The middleware: outermost, so it sees every request and every answer.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let metrics = &*metrics;
    let started = Instant::now();
    let method = method_label(request.method());
    let route = route_label(request.uri().path());
    let had_credentials = request.headers().contains_key(header::AUTHORIZATION);
    let in_flight = (matches!(route, "upload" | "upload_start")
        && matches!(method, "POST" | "PATCH" | "PUT"))
    .then(|| {
        metrics.uploads_in_flight.inc();
        InFlight(metrics.uploads_in_flight.clone())
    });

    let received = metrics.bytes_in.get_or_create_owned(&RouteLabel { route });
    let request = request.map(|body| {
        // inspect_frame keeps the body's size hint (Content-Length).
        Body::new(body.inspect_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                received.inc_by(data.len() as u64);
            }
        }))
    });
    let response = next.run(request).await;
    drop(in_flight);

    let status = response.status();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: status.as_u16(),
        })
        .inc();
    let reason = match status {
        StatusCode::UNAUTHORIZED if had_credentials => Some("invalid"),
        StatusCode::UNAUTHORIZED => Some("missing"),
        StatusCode::FORBIDDEN => Some("denied"),
        StatusCode::TOO_MANY_REQUESTS => Some("throttled"),
        _ => None,
    };
    if let Some(reason) = reason {
        metrics
            .auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
    let sent = metrics.bytes_out.get_or_create_owned(&RouteLabel { route });
    let done = ObserveOnDrop {
        histogram: metrics
            .duration
            .get_or_create_owned(&MethodRoute { method, route }),
        started,
    };
    response.map(|body| {
        Body::new(body.inspect_frame(move |frame| {
            let _ = &done;
            if let Some(data) = frame.data_ref() {
                sent.inc_by(data.len() as u64);
            }
        }))
    })
}

/// Serves `path` on its own listener until `stop` is set.
pub fn serve(
    listener: tokio::net::TcpListener,
    path: String,
    metrics: Arc<Metrics>,
    storage: crate::storage::Storage,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    // registry:2's debug server answers health here: `{}` when every check
    // passes, else 503 with the failing checks.
    let health = axum::routing::get(move || {
        let storage = storage.clone();
        async move {
            match storage.ready().await {
                Ok(()) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    "{}".to_owned(),
                ),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::json!({ "storagedriver": e.to_string() }).to_string(),
                ),
            }
        }
    });
    let app = axum::Router::new()
        .route("/debug/health", health)
        .route(
            &path,
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") });
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(async move {
                let _ = stop.cancelled().await;
            })
            .await
    })
}

/// Binds the metrics listener (at start, so a bad address fails the start).
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(route_label("/v2/"), "base");
        assert_eq!(route_label("/v2/a/b/manifests/latest"), "manifest");
        assert_eq!(route_label("/v2/a/blobs/uploads/"), "upload_start");
        assert_eq!(route_label("/v2/a/blobs/uploads/123"), "upload");
        assert_eq!(route_label("/v2/A/tags/list"), "invalid");
        assert_eq!(route_label("/v2/nothing"), "invalid");
        assert_eq!(route_label("/favicon.ico"), "other");
        assert_eq!(route_label("/livez"), "livez");
    }

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new(true);
        (m.storage_error_sink())("put", Outcome::Failed);
        let text = m.encode();
        // Families without samples yet (e.g. requests) are not listed.
        for name in [
            "registry_uploads_in_flight 0",
            "registry_storage_errors_total{operation=\"put\"} 1",
            "registry_gc_bytes_freed_total 0",
            "registry_read_only 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
