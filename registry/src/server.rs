//! Wires config, storage and auth into a running HTTP(S) server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::credentials::Created;
use crate::config::Config;
use crate::listeners::Bound;
use crate::{api, conn_limits, storage, App};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] storage::backend::BackendError),
    #[error(transparent)]
    Auth(#[from] crate::auth::SetupError),
    #[error("http.addr {addr}: cannot listen: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] crate::ops::MetricsBindError),
    #[error(transparent)]
    Headers(#[from] api::headers::HeaderError),
    #[error("http.tls: {0}")]
    Tls(std::io::Error),
    #[error(transparent)]
    Proxy(#[from] crate::proxy::SetupError),
}

/// A server running on its own tasks.
pub struct Running {
    /// The first address listened on (`listeners::UNIX_PEER` on a unix
    /// socket).
    pub addr: SocketAddr,
    /// The socket path, when `http.net` is `unix`.
    pub unix: Option<std::path::PathBuf>,
    pub tls: bool,
    /// Set when the htpasswd file was just created with a random admin
    /// password, so the caller can show it once.
    pub created_user: Option<Created>,
    /// Where `/metrics` is served (`[metrics] addr`), when enabled.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    /// Metrics listener, online GC, upload purging.
    background: Vec<JoinHandle<()>>,
    proxy: Option<Arc<crate::proxy::Proxy>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish for up to `grace`.
    pub async fn shutdown(self, grace: Duration) -> std::io::Result<()> {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(1);
        let served = match tokio::time::timeout_at(deadline, self.task).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        // Blob fetches run on their own tasks: a stopping server abandons
        // them (nothing partial becomes visible).
        if let Some(p) = &self.proxy {
            p.shutdown();
        }
        // Background work stops at its next safe point (a GC run never
        // stops half way through removing); past the deadline it is cut.
        for task in self.background {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        served
    }

    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

pub async fn start(config: &Config) -> Result<Running, StartError> {
    config.listen()?;
    let storage =
        storage::backend::open(&config.storage)?.with_metadata_cache(&config.storage.cache);
    let read_only = config.storage.maintenance.readonly.enabled;
    let metrics = crate::metrics::Metrics::new(read_only);
    let storage = storage.with_error_sink(metrics.storage_error_sink());
    metrics.observe_cache(storage.clone());
    if read_only {
        tracing::warn!("read-only mode: pushes and deletes are refused");
    }
    let (auth, created_user) = crate::auth::build(config)?;
    for key in &config.ignored_env {
        tracing::warn!(variable = %key, "environment variable names no setting of this registry; ignored");
    }
    for warning in &config.warnings {
        tracing::warn!(%warning, "configuration key not implemented");
    }
    let pulls = crate::pull_log::PullLog::new(storage.clone(), read_only);
    let proxy = crate::proxy::Proxy::new(config, storage.clone(), pulls.clone())?;
    if let Some(p) = &proxy {
        metrics.add_registry(p.metrics.registry());
    }
    let bind_err = |addr: String| move |source| StartError::Bind { addr, source };
    let bound = crate::listeners::bind(config).map_err(|(a, e)| bind_err(a)(e))?;
    let (addr, unix) = match &bound {
        Bound::Tcp(listeners) => (
            listeners[0]
                .local_addr()
                .map_err(bind_err(config.http.addr.clone()))?,
            None,
        ),
        Bound::Unix(_, path) => (crate::listeners::UNIX_PEER, Some(path.clone())),
    };
    // Every entrance that changes what is stored (the `/v2` API, the UI)
    // emits through this one notifier.
    let notifier = crate::notify::Notifier::new(config, &storage, &metrics, addr.port());
    let quota = Arc::new(crate::quota::Ledger::new(storage.clone()));
    metrics.add_registry(quota.registry());
    let app = Arc::new(App {
        listing: storage::listing::Listing::new(storage.clone()),
        storage,
        auth,
        delete_enabled: config.storage.delete_enabled,
        read_only,
        metrics: metrics.clone(),
        ui: config
            .ui
            .enabled
            .then(|| crate::ui::Ui::new(config.http.secret.as_deref(), config.http.tls.is_some())),
        proxy: proxy.clone(),
        policies: crate::config::live::Live::new(crate::policy::Policies::from_config(
            &config.policies,
        )),
        pulls: pulls.clone(),
        quota: quota.clone(),
        notifier: notifier.clone(),
        config_warnings: config.warnings.clone(),
    });
    if let Some(path) = &config.source {
        crate::reload::spawn(&app, path.clone());
    }
    let storage_for_ops = app.storage.clone();
    let headers = api::headers::parse(&config.http.headers)?;

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let after_gc = crate::ops::AfterGc {
        ledger: quota.clone(),
        policies: {
            let live = app.clone();
            Arc::new(move || live.policies.get())
        },
    };
    let mut background = crate::ops::start(
        config,
        &storage_for_ops,
        &metrics,
        after_gc,
        shutdown.clone(),
    )?;
    if let Some(p) = &proxy {
        background
            .tasks
            .extend(p.spawn_evictor(config.proxy.ttl, shutdown.clone()));
    }
    if !read_only {
        // Pulls are recorded every 30 s, or every quarter of the cache's
        // ttl when that is shorter (its expiry counts from them).
        let ttl = config.proxy.ttl;
        let every = if proxy.is_some() && !ttl.is_zero() {
            crate::pull_log::RECORD_EVERY.min((ttl / 4).max(Duration::from_millis(100)))
        } else {
            crate::pull_log::RECORD_EVERY
        };
        background.tasks.push(pulls.spawn(every, shutdown.clone()));
        background
            .tasks
            .push(quota.clone().spawn_heartbeat(shutdown.clone()));
    }
    if !config.policies.retention_interval.is_zero() {
        let live = app.clone();
        background.tasks.push(crate::ops::spawn_scheduled(
            storage_for_ops.clone(),
            config.policies.retention_interval,
            live,
            {
                let metrics = metrics.clone();
                move |counts| metrics.retention_finished(counts)
            },
            shutdown.clone(),
        ));
    }
    if let Some(n) = &notifier {
        background.tasks.extend(n.spawn(shutdown.clone()));
    }
    // The web UI's routes, when `[ui] enabled`, under the API's layers.
    let pages = if app.ui.is_some() {
        crate::ui::routes()
    } else {
        axum::Router::new()
    };
    let proxies = app.auth.proxies.clone();
    let router = crate::notify::middleware::add(api::router(app, pages), notifier, proxies);
    let router = api::headers::add(router, headers);
    let service = router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let unix_stop = shutdown.clone();
    let stopped = async move {
        stop.cancelled().await;
    };

    let drain_timeout = config.http.drain_timeout;
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            stopped.await;
            handle.graceful_shutdown(Some(drain_timeout));
        }
    });
    // Slow or idle clients cannot pin connections: timeouts, and a cap on
    // open connections (`conn_limits`), shared by every TCP listener.
    let connections = conn_limits::Connections::new(
        crate::config::connection_cap::max_connections(&config.http),
        config.http.idle_timeout,
    );
    tracing::debug!(max_connections = connections.cap(), "connection limit");
    let acceptor = conn_limits::LimitAcceptor::new(connections);
    let header_timeout = config.http.header_read_timeout;
    let task = match bound {
        Bound::Unix(listener, path) => tokio::spawn(crate::listeners::serve_unix(
            listener,
            path,
            router,
            MAX_READ_BUFFER,
            drain_timeout,
            unix_stop,
        )),
        Bound::Tcp(listeners) => {
            // One server per address, all under one handle (one shutdown).
            let mut servers = Vec::new();
            let rustls = match &config.http.tls {
                None => None,
                Some(tls) => {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    Some(
                        RustlsConfig::from_pem_file(&tls.certificate, &tls.key)
                            .await
                            .map_err(StartError::Tls)?,
                    )
                }
            };
            for listener in listeners {
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_err(addr.to_string()))?
                    .handle(handle.clone());
                let service = service.clone();
                let acceptor = acceptor.clone();
                servers.push(match &rustls {
                    None => {
                        let mut server = server
                            .acceptor(acceptor)
                            .first_request_timeout(header_timeout);
                        conn_limits::configure(
                            server.http_builder(),
                            &config.http,
                            MAX_READ_BUFFER,
                        );
                        tokio::spawn(async move { server.serve(service).await })
                    }
                    Some(rustls) => {
                        // Lingering under TLS: the raw bytes a client still
                        // sends are what must be read before the socket
                        // closes (`conn_limits`' acceptor lingers).
                        let mut server = server
                            .acceptor(
                                RustlsAcceptor::new(rustls.clone())
                                    .handshake_timeout(header_timeout)
                                    .acceptor(acceptor),
                            )
                            .first_request_timeout(header_timeout);
                        conn_limits::configure(
                            server.http_builder(),
                            &config.http,
                            MAX_READ_BUFFER,
                        );
                        tokio::spawn(async move { server.serve(service).await })
                    }
                });
            }
            tokio::spawn(async move {
                for served in futures::future::join_all(servers).await {
                    served.unwrap_or(Ok(()))?;
                }
                Ok(())
            })
        }
    };
    Ok(Running {
        addr,
        unix,
        tls: config.http.tls.is_some(),
        created_user,
        metrics_addr: background.metrics_addr,
        shutdown,
        task,
        background: background.tasks,
        proxy,
    })
}

/// Largest HTTP/1 read buffer of one connection (headers must fit in it).
/// hyper's default (~400 KiB, grown by doubling) let 16 clients streaming
/// uploads hold 14 MiB of buffers between them; body bytes are copied into
/// upload blocks at once, so a small buffer costs only more, cheap, reads.
const MAX_READ_BUFFER: usize = 64 * 1024;
