//! An OCI Distribution v1.1 registry. Codemap: `docs/architecture.md`.

pub mod api;
pub mod auth;
pub mod config;
pub mod conn_limits;
pub mod glob;
pub mod linger;
pub mod listeners;
pub mod metrics;
pub mod notify;
pub mod oci;
pub mod ops;
pub mod otel;
pub mod periodic;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod pull_log;
pub mod quota;
pub mod reload;
pub mod server;
pub mod service;
pub mod storage;
pub mod ui;

use std::sync::Arc;

/// What every handler shares.
pub struct App {
    pub storage: storage::Storage,
    /// Tags and repositories with sizes and push times (`/v2/_ext`, the UI).
    pub listing: storage::listing::Listing,
    pub auth: auth::Authenticator,
    pub delete_enabled: bool,
    /// Maintenance: pulls only (`storage.maintenance.readonly`).
    pub read_only: bool,
    pub metrics: Arc<metrics::Metrics>,
    /// The web UI's session signer, when `[ui] enabled`.
    pub ui: Option<ui::Ui>,
    /// The pull-through cache, when `[proxy]` configures one.
    pub proxy: Option<Arc<proxy::Proxy>>,
    /// Immutable tags and quotas in force (`[policies]`, reloaded).
    pub policies: config::live::Live<policy::Policies>,
    /// When tags were last pulled (the cache's expiry, retention).
    pub pulls: Arc<pull_log::PullLog>,
    /// What the quota scopes hold (`[[policies.quota]]`).
    pub quota: Arc<quota::Ledger>,
    /// Webhooks, when `notifications.endpoints` has an enabled one.
    pub notifier: Option<Arc<notify::Notifier>>,
    /// What the configuration asks that this registry does otherwise
    /// (`Config::warnings`): also told to clients of `/v2/` as `Warning`s.
    pub config_warnings: Vec<String>,
}

pub type AppState = Arc<App>;
