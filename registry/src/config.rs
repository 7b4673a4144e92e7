//! Typed configuration: a TOML file (every key optional), then environment
//! overrides using registry:2's variable names, validated once at start so a
//! bad value fails with a message naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

pub mod connection_cap;
/// registry:2 / registry:3 YAML files (`version: 0.1`), mapped onto [`Config`].
pub mod distribution;
pub mod listen;
pub mod live;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: Http,
    pub storage: Storage,
    pub auth: Auth,
    /// Who may pull, push, delete where (`auth::acl`); absent: every
    /// authenticated user may do everything.
    pub acl: Option<AclConfig>,
    /// Immutable tags (`policy`); reloaded with the ACL.
    pub policies: Policies,
    pub log: Log,
    /// Garbage collection in the server process (`registry gc` reads it too).
    pub gc: Gc,
    /// Prometheus metrics on their own listener.
    pub metrics: Metrics,
    /// Events sent to webhooks (registry:2's `notifications`), queued in
    /// storage until delivered (`notify`).
    pub notifications: Notifications,
    /// The built-in web UI at `/ui/`.
    pub ui: Ui,
    /// Pull-through cache: registry:2's `proxy` section plus upstreams
    /// under repository prefixes (`proxy::`).
    pub proxy: Proxy,
    /// `REGISTRY_*` variables that name no setting we have, for a warning at
    /// start (registry:2 deployments carry many we do not need).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// Keys of a registry:2 YAML file that are read but not implemented,
    /// each saying what happens instead (`config::distribution`).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The file this configuration was read from, which the server watches
    /// to reload the ACL and policies (`reload`).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Where to listen, as registry:2 takes it: `host:port` (an IP or a
    /// host name, every address it resolves to), `:port` (all interfaces),
    /// `[v6]:port`; with `net = "unix"`, a socket path.
    pub addr: String,
    /// `tcp` (the default; also `tcp4`, `tcp6`) or `unix`.
    pub net: String,
    /// The registry's external URL (registry:2's `http.host`), e.g.
    /// `https://registry.example.com`: the token realm when
    /// `auth.token.realm` is unset, and the host of webhook target URLs and
    /// `request.host`. Unset, those come from this listener (webhooks) or
    /// from each request's `Host` (the realm, with a warning at start).
    pub host: Option<String>,
    /// Shared by replicas: web UI session cookies are signed under a key
    /// derived from it (a random key per process when unset). Upload
    /// state lives in storage and needs no secret.
    pub secret: Option<String>,
    pub tls: Option<Tls>,
    /// How long in-flight requests (uploads) may run after SIGTERM before
    /// the process exits anyway (registry:2's `http.draintimeout`).
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// Headers added to every response (registry:2's `http.headers`: name →
    /// values), e.g. `X-Content-Type-Options = ["nosniff"]`.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Proxies in front (CIDRs or addresses) whose `X-Forwarded-For` or
    /// `Forwarded` names the client: for the login throttles, the access
    /// and audit logs. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// How long a client may take to send a request's headers (from the
    /// connection's start, and from the end of the previous response on a
    /// kept-alive HTTP/1 connection) before the connection is closed.
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Connections open at once; 0: sized from the open-file limit
    /// (`conn_limits`). Past it, the longest-idle connection is closed to
    /// make room, or the new one when every connection has a request.
    pub max_connections: usize,
    pub http2: Http2,
}

/// `[http.http2]`: what an HTTP/2 connection may hold open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2 {
    /// Streams (requests) one HTTP/2 connection may have in flight.
    pub max_concurrent_streams: u32,
    /// How often an HTTP/2 connection is pinged; 0: never.
    #[serde(deserialize_with = "de_duration")]
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(deserialize_with = "de_duration")]
    pub keepalive_timeout: Duration,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            max_concurrent_streams: 100,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub backend: StorageBackend,
    pub filesystem: Filesystem,
    pub s3: S3,
    /// Whether manifests, tags and blobs may be deleted (registry:2's
    /// `storage.delete.enabled`, off by default there too).
    pub delete_enabled: bool,
    /// Upload purging and read-only mode (registry:2's `storage.maintenance`).
    pub maintenance: Maintenance,
    /// The in-process cache of tags, repository membership and blob sizes.
    pub cache: MetadataCache,
}

/// `[storage.cache]`: what the read path keeps in memory. Every replica
/// invalidates its own entries when it writes; `ttl` bounds how long a
/// replica may serve what another replica (or `registry gc`) has changed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataCache {
    /// How long an entry is trusted; 0 = always read storage.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// Entries kept at most (a tag, a link, a blob size or a tag list each).
    pub max_entries: usize,
    /// Memory the entries may take, estimated per entry.
    pub max_bytes: u64,
}

impl Default for MetadataCache {
    fn default() -> Self {
        MetadataCache {
            ttl: Duration::from_secs(1),
            max_entries: 200_000,
            max_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Filesystem,
    S3,
}

/// S3 or any S3-compatible service. Credentials left empty here come from
/// the usual AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, instance metadata).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3 {
    pub bucket: String,
    pub region: String,
    /// Endpoint URL for S3-compatible services (`http://127.0.0.1:9000`).
    pub regionendpoint: Option<String>,
    pub accesskey: Option<String>,
    pub secretkey: Option<String>,
    /// Key prefix inside the bucket (registry:2's `rootdirectory`).
    pub rootdirectory: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers need.
    pub forcepathstyle: bool,
    /// Size of the first multipart upload parts in bytes (S3 requires at
    /// least 5 MiB); parts grow after each quarter of S3's 10,000-part limit.
    pub chunksize: usize,
    /// Answer blob GETs with a redirect to a pre-signed URL instead of
    /// streaming through the registry (registry:2's `redirect.disable: false`).
    pub redirect: bool,
    /// Retries of throttled or failed S3 requests before a 503.
    pub max_retries: usize,
    /// Give up retrying a request after this many seconds.
    pub retry_timeout_secs: u64,
}

impl Default for S3 {
    fn default() -> Self {
        S3 {
            bucket: String::new(),
            region: "us-east-1".into(),
            regionendpoint: None,
            accesskey: None,
            secretkey: None,
            rootdirectory: String::new(),
            forcepathstyle: false,
            // S3's minimum: memory per upload is a few parts of this.
            chunksize: 5 * 1024 * 1024,
            redirect: false,
            max_retries: 5,
            retry_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystem {
    pub rootdirectory: PathBuf,
    /// fsync files and directories before acknowledging a write.
    pub fsync: bool,
    /// Move blob data with O_DIRECT (Linux), when the filesystem allows it.
    pub directio: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Htpasswd,
    /// No authentication at all: every request is allowed. Only for
    /// development; the registry warns at start.
    None,
    /// Docker registry token authentication (bearer JWTs).
    Token,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub mode: AuthMode,
    pub htpasswd: HtpasswdAuth,
    /// `[auth.token]`: token mode and the built-in token endpoint.
    pub token: TokenConfig,
    /// Also append audit events (JSON lines) to this file.
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtpasswdAuth {
    pub realm: String,
    pub path: PathBuf,
    /// How long a successful verification is remembered, in seconds.
    pub cache_ttl_secs: u64,
    /// Failed logins allowed per client address per minute before 429.
    pub max_failures_per_minute: u32,
    /// Failed logins allowed per user per minute (from all addresses)
    /// before 429; addresses that logged in as the user are exempt.
    pub max_failures_per_user_per_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: String,
    pub format: LogFormat,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            addr: "127.0.0.1:5000".into(),
            net: String::new(),
            host: None,
            secret: None,
            tls: None,
            drain_timeout: Duration::from_secs(30),
            headers: BTreeMap::new(),
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
            http2: Http2::default(),
        }
    }
}

impl Default for Filesystem {
    fn default() -> Self {
        Filesystem {
            rootdirectory: PathBuf::from("data/storage"),
            fsync: true,
            directio: true,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: AuthMode::Htpasswd,
            htpasswd: HtpasswdAuth::default(),
            token: Default::default(),
            audit_log: None,
        }
    }
}

impl Default for HtpasswdAuth {
    fn default() -> Self {
        HtpasswdAuth {
            realm: "Registry Realm".into(),
            path: PathBuf::from("data/auth/htpasswd"),
            cache_ttl_secs: 60,
            max_failures_per_minute: 10,
            max_failures_per_user_per_minute: 30,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(key, format!("{v:?} is not a boolean"))),
    }
}

impl Config {
    /// Reads the file (if any), applies the environment, validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                if distribution::is_distribution_file(path, &text) {
                    let mut config = distribution::load(path, &text, env)?.config;
                    config.source = Some(path.to_path_buf());
                    return Ok(config);
                }
                Config::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.into(),
                    message,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        config.source = file.map(Path::to_path_buf);
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// registry:2's environment variables, so existing deployments work
    /// unchanged.
    fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in env {
            if !key.starts_with("REGISTRY_") {
                continue;
            }
            let k = key.as_str();
            match k {
                "REGISTRY_HTTP_ADDR" => self.http.addr = value,
                "REGISTRY_HTTP_NET" => self.http.net = value,
                "REGISTRY_HTTP_SECRET" => self.http.secret = Some(value),
                "REGISTRY_HTTP_HOST" => self.http.host = Some(value).filter(|v| !v.is_empty()),
                // Ours (Distribution has no such setting): CIDRs separated
                // by commas.
                "REGISTRY_HTTP_TRUSTED_PROXIES" => {
                    self.http.trusted_proxies = value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "REGISTRY_HTTP_TLS_CERTIFICATE" | "REGISTRY_HTTP_TLS_KEY" => {
                    let tls = self.http.tls.get_or_insert_with(|| Tls {
                        certificate: PathBuf::new(),
                        key: PathBuf::new(),
                    });
                    if k.ends_with("CERTIFICATE") {
                        tls.certificate = value.into();
                    } else {
                        tls.key = value.into();
                    }
                }
                "REGISTRY_STORAGE" if value == "filesystem" => {
                    self.storage.backend = StorageBackend::Filesystem
                }
                "REGISTRY_STORAGE" if value == "s3" => self.storage.backend = StorageBackend::S3,
                "REGISTRY_STORAGE_S3_BUCKET" => self.storage.s3.bucket = value,
                "REGISTRY_STORAGE_S3_REGION" => self.storage.s3.region = value,
                "REGISTRY_STORAGE_S3_REGIONENDPOINT" => {
                    self.storage.s3.regionendpoint = Some(value)
                }
                "REGISTRY_STORAGE_S3_ACCESSKEY" => self.storage.s3.accesskey = Some(value),
                "REGISTRY_STORAGE_S3_SECRETKEY" => self.storage.s3.secretkey = Some(value),
                "REGISTRY_STORAGE_S3_ROOTDIRECTORY" => self.storage.s3.rootdirectory = value,
                "REGISTRY_STORAGE_S3_FORCEPATHSTYLE" => {
                    self.storage.s3.forcepathstyle = parse_bool(k, &value)?
                }
                "REGISTRY_STORAGE_S3_CHUNKSIZE" => {
                    self.storage.s3.chunksize = value
                        .parse()
                        .map_err(|_| invalid(k, format!("{value:?} is not a number of bytes")))?
                }
                "REGISTRY_STORAGE_REDIRECT_DISABLE" => {
                    self.storage.s3.redirect = !parse_bool(k, &value)?
                }
                "REGISTRY_STORAGE" => {
                    return Err(invalid(
                        k,
                        format!("storage driver {value:?} is not supported (use filesystem or s3)"),
                    ))
                }
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" => {
                    self.storage.filesystem.rootdirectory = value.into()
                }
                "REGISTRY_STORAGE_FILESYSTEM_FSYNC" => {
                    self.storage.filesystem.fsync = parse_bool(k, &value)?
                }
                "REGISTRY_STORAGE_FILESYSTEM_DIRECTIO" => {
                    self.storage.filesystem.directio = parse_bool(k, &value)?
                }
                "REGISTRY_STORAGE_DELETE_ENABLED" => {
                    self.storage.delete_enabled = parse_bool(k, &value)?
                }
                "REGISTRY_AUTH" => {
                    self.auth.mode = match value.as_str() {
                        "htpasswd" => AuthMode::Htpasswd,
                        "none" => AuthMode::None,
                        "token" => AuthMode::Token,
                        // An unset variable in a compose file (`${AUTH}`)
                        // expands to empty: that must not open the registry.
                        "" => {
                            return Err(invalid(
                                k,
                                "is empty: set htpasswd or token, or none to run without authentication",
                            ))
                        }
                        other => {
                            return Err(invalid(
                                k,
                                format!("auth {other:?} is not supported (htpasswd, token, none)"),
                            ))
                        }
                    }
                }
                "REGISTRY_AUTH_HTPASSWD_REALM" => self.auth.htpasswd.realm = value,
                "REGISTRY_AUTH_HTPASSWD_PATH" => self.auth.htpasswd.path = value.into(),
                "REGISTRY_AUTH_TOKEN_REALM" => self.auth.token.realm = Some(value),
                "REGISTRY_AUTH_TOKEN_SERVICE" => self.auth.token.service = value,
                "REGISTRY_AUTH_TOKEN_ISSUER" => self.auth.token.issuer = value,
                "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE" => {
                    self.auth.token.rootcertbundle = Some(value.into())
                }
                "REGISTRY_AUTH_TOKEN_JWKS" => {
                    self.auth.token.jwks = Some(value).filter(|v| !v.is_empty())
                }
                // A YAML list as registry:3 takes it (`[RS256, ES256]`), or
                // names separated by commas.
                "REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS" => {
                    self.auth.token.signingalgorithms = value
                        .trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .split(',')
                        .map(|a| a.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
                        .filter(|a| !a.is_empty())
                        .collect()
                }
                "REGISTRY_LOG_LEVEL" => self.log.level = value,
                "REGISTRY_LOG_FORMATTER" | "REGISTRY_LOG_FORMAT" => {
                    self.log.format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        other => return Err(invalid(k, format!("{other:?} is not text or json"))),
                    }
                }
                // Set by the Debian package's and the official image's own
                // scripts; harmless to accept.
                "REGISTRY_CONFIGURATION_PATH" | "REGISTRY_VERSION" => {}
                k if self.apply_ops_env(k, &value)? => {}
                k if self.proxy.apply_env(k, &value)? => {}
                _ => self.ignored_env.push(k.to_owned()),
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let listen = self.listen()?;
        if matches!(listen, listen::Listen::Unix(_)) && self.http.tls.is_some() {
            return Err(invalid(
                "http.net",
                "TLS over a unix socket is not supported; listen on tcp or terminate TLS in front",
            ));
        }
        self.external_url()?;
        for net in &self.http.trusted_proxies {
            let n = net.trim();
            let valid = n.parse::<ipnet::IpNet>().is_ok() || n.parse::<std::net::IpAddr>().is_ok();
            if !valid {
                return Err(invalid(
                    "http.trusted_proxies",
                    format!("{net:?} is not a CIDR or an address (e.g. 10.0.0.0/8)"),
                ));
            }
        }
        self.validate_ops()?;
        self.notifications.validate()?;
        if let Some(tls) = &self.http.tls {
            if tls.certificate.as_os_str().is_empty() || tls.key.as_os_str().is_empty() {
                return Err(invalid(
                    "http.tls",
                    "both certificate and key must be set (REGISTRY_HTTP_TLS_CERTIFICATE, REGISTRY_HTTP_TLS_KEY)",
                ));
            }
        }
        if self.storage.backend == StorageBackend::S3 {
            if self.storage.s3.bucket.is_empty() {
                return Err(invalid(
                    "storage.s3.bucket",
                    "must be set for the s3 backend (REGISTRY_STORAGE_S3_BUCKET)",
                ));
            }
            if self.storage.s3.chunksize < 5 * 1024 * 1024 {
                return Err(invalid(
                    "storage.s3.chunksize",
                    "must be at least 5 MiB (5242880), S3's smallest multipart part",
                ));
            }
        }
        if self.storage.filesystem.rootdirectory.as_os_str().is_empty() {
            return Err(invalid(
                "storage.filesystem.rootdirectory",
                "must not be empty",
            ));
        }
        if self.auth.mode == AuthMode::Htpasswd && self.auth.htpasswd.path.as_os_str().is_empty() {
            return Err(invalid("auth.htpasswd.path", "must not be empty"));
        }
        if let Some(acl) = &self.acl {
            acl.validate()
                .map_err(|(key, message)| invalid(&key, message))?;
        }
        self.policies
            .validate()
            .map_err(|(key, message)| invalid(&key, message))?;
        if self.auth.mode == AuthMode::Token {
            self.auth.token.validate()?;
        }
        self.proxy.validate()?;
        // tracing-subscriber 0.3 slices a filter by char index, so a
        // non-ASCII character before a `]` or `{` panics rather than failing
        // (found by fuzz/fuzz_targets/config.rs).
        if !self.log.level.is_ascii() {
            return Err(invalid("log.level", "must be ASCII"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        Ok(())
    }

    /// `http.addr` under `http.net`, as written (syntax checked, no name
    /// resolved).
    pub fn listen(&self) -> Result<listen::Listen, ConfigError> {
        listen::parse(&self.http.addr, &self.http.net).map_err(|m| invalid("http.addr", m))
    }

    /// Every TCP address to listen on, host names resolved (IPv4 first).
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.listen()?
            .resolve()
            .map_err(|m| invalid("http.addr", m))
    }

    /// The first of [`Config::listen_addrs`].
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        Ok(self.listen_addrs()?[0])
    }
}

/// `url` with the password of its userinfo masked (`https://user:********@host/`),
/// for logs and `check-config`: a URL with credentials is printed without
/// them.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at].split(':').next().unwrap_or_default();
    format!("{}{user}:********{}", &url[..scheme_end], &rest[at..])
}

// ----- operations: gc, upload purging, read-only mode, metrics -----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    pub uploadpurging: UploadPurging,
    pub readonly: ReadOnly,
}

/// Upload sessions older than `age` are removed every `interval`
/// (registry:2's `storage.maintenance.uploadpurging`, same defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadPurging {
    pub enabled: bool,
    #[serde(deserialize_with = "de_duration")]
    pub age: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Only log what would be purged.
    pub dryrun: bool,
}

impl Default for UploadPurging {
    fn default() -> Self {
        UploadPurging {
            enabled: true,
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    }
}

/// Pulls work; pushes and deletes are refused (405 UNSUPPORTED).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadOnly {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gc {
    /// Run garbage collection in the server every `interval`; 0 = never
    /// (run `registry gc` instead).
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Blobs, links and manifests written more recently than this are kept
    /// even when nothing references them (pushes in progress).
    #[serde(deserialize_with = "de_duration")]
    pub grace_period: Duration,
    /// Also remove manifests that no tag reaches (directly, as an index
    /// child, or as a referrer of a reachable manifest).
    pub delete_untagged: bool,
}

impl Default for Gc {
    fn default() -> Self {
        Gc {
            interval: Duration::ZERO,
            grace_period: Duration::from_secs(3600),
            delete_untagged: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// `host:port` of a separate plain-HTTP listener for `path`; unset = no
    /// metrics. It has no authentication: bind it to a private address.
    pub addr: Option<String>,
    pub path: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            addr: None,
            path: "/metrics".into(),
        }
    }
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); e.g. \"30s\", \"1h\", \"168h\""
        ))
    })
}

fn parse_number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(key, format!("{v:?} is not a number")))
}

fn parse_duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.trim()).map_err(|e| {
        invalid(
            key,
            format!("{v:?} is not a duration ({e}); e.g. \"30s\", \"1h\", \"168h\""),
        )
    })
}

/// registry:2 takes `REGISTRY_STORAGE_MAINTENANCE_READONLY` as a YAML map
/// (`{"enabled": true}`); a plain boolean is accepted too.
fn parse_enabled_map(key: &str, v: &str) -> Result<bool, ConfigError> {
    let t = v.trim();
    if let Ok(b) = parse_bool(key, t) {
        return Ok(b);
    }
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| {
            invalid(
                key,
                format!("{v:?} is neither a boolean nor {{enabled: true|false}}"),
            )
        })?;
    for pair in inner.split(',') {
        if let Some((k, val)) = pair.split_once(':') {
            if k.trim().trim_matches(|c| c == '"' || c == '\'') == "enabled" {
                return parse_bool(key, val.trim().trim_matches(|c| c == '"' || c == '\''));
            }
        }
    }
    Err(invalid(key, format!("{v:?} has no \"enabled\" entry")))
}

impl Config {
    /// Environment variables of the operations settings; true when `k` was one.
    fn apply_ops_env(&mut self, k: &str, value: &str) -> Result<bool, ConfigError> {
        let m = &mut self.storage.maintenance;
        match k {
            "REGISTRY_HTTP_DRAINTIMEOUT" | "REGISTRY_HTTP_DRAIN_TIMEOUT" => {
                self.http.drain_timeout = parse_duration(k, value)?
            }
            "REGISTRY_HTTP_HEADER_READ_TIMEOUT" => {
                self.http.header_read_timeout = parse_duration(k, value)?
            }
            "REGISTRY_HTTP_IDLE_TIMEOUT" => self.http.idle_timeout = parse_duration(k, value)?,
            "REGISTRY_HTTP_MAX_CONNECTIONS" => self.http.max_connections = parse_number(k, value)?,
            "REGISTRY_HTTP_HTTP2_MAX_CONCURRENT_STREAMS" => {
                self.http.http2.max_concurrent_streams = parse_number(k, value)?
            }
            "REGISTRY_HTTP_HTTP2_KEEPALIVE_INTERVAL" => {
                self.http.http2.keepalive_interval = parse_duration(k, value)?
            }
            "REGISTRY_HTTP_HTTP2_KEEPALIVE_TIMEOUT" => {
                self.http.http2.keepalive_timeout = parse_duration(k, value)?
            }
            "REGISTRY_STORAGE_MAINTENANCE_READONLY" => {
                m.readonly.enabled = parse_enabled_map(k, value)?
            }
            "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED" => {
                m.readonly.enabled = parse_bool(k, value)?
            }
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED" => {
                m.uploadpurging.enabled = parse_bool(k, value)?
            }
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE" => {
                m.uploadpurging.age = parse_duration(k, value)?
            }
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL" => {
                m.uploadpurging.interval = parse_duration(k, value)?
            }
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN" => {
                m.uploadpurging.dryrun = parse_bool(k, value)?
            }
            "REGISTRY_UI_ENABLED" => self.ui.enabled = parse_bool(k, value)?,
            "REGISTRY_STORAGE_CACHE_TTL" => self.storage.cache.ttl = parse_duration(k, value)?,
            "REGISTRY_STORAGE_CACHE_MAX_ENTRIES" => {
                self.storage.cache.max_entries = parse_number(k, value)?
            }
            "REGISTRY_STORAGE_CACHE_MAX_BYTES" => {
                self.storage.cache.max_bytes = parse_number(k, value)?
            }
            "REGISTRY_GC_INTERVAL" => self.gc.interval = parse_duration(k, value)?,
            "REGISTRY_GC_GRACE_PERIOD" => self.gc.grace_period = parse_duration(k, value)?,
            "REGISTRY_GC_DELETE_UNTAGGED" => self.gc.delete_untagged = parse_bool(k, value)?,
            "REGISTRY_METRICS_ADDR" => {
                self.metrics.addr = Some(value.to_owned()).filter(|a| !a.trim().is_empty())
            }
            "REGISTRY_METRICS_PATH" => self.metrics.path = value.to_owned(),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `http.host` as `(scheme, host[:port])`, when set.
    pub fn external_url(&self) -> Result<Option<(&str, &str)>, ConfigError> {
        let Some(url) = &self.http.host else {
            return Ok(None);
        };
        let bad = || {
            invalid(
                "http.host",
                "must be the registry's external URL, http:// or https:// and a host (with an optional port), no path: e.g. https://registry.example.com",
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
        if !matches!(scheme, "http" | "https") || !host_ok {
            return Err(bad());
        }
        Ok(Some((scheme, host)))
    }

    fn validate_ops(&self) -> Result<(), ConfigError> {
        if self.http.header_read_timeout.is_zero() {
            return Err(invalid(
                "http.header_read_timeout",
                "must be more than 0 (0 would let a client hold a connection without a request)",
            ));
        }
        if self.http.idle_timeout.is_zero() {
            return Err(invalid("http.idle_timeout", "must be more than 0"));
        }
        if self.http.http2.max_concurrent_streams == 0 {
            return Err(invalid(
                "http.http2.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        self.metrics_listen()?;
        let cache = &self.storage.cache;
        if !cache.ttl.is_zero() && (cache.max_entries == 0 || cache.max_bytes < 64 << 10) {
            return Err(invalid(
                "storage.cache",
                "max_entries must be at least 1 and max_bytes at least 65536 (or set ttl = \"0s\" to turn the cache off)",
            ));
        }
        if !self.metrics.path.starts_with('/') || self.metrics.path.len() < 2 {
            return Err(invalid("metrics.path", "must be a path such as /metrics"));
        }
        let purging = &self.storage.maintenance.uploadpurging;
        if purging.enabled && purging.interval.is_zero() {
            return Err(invalid(
                "storage.maintenance.uploadpurging.interval",
                "must be more than 0 when purging is enabled",
            ));
        }
        if purging.enabled && purging.age.is_zero() {
            return Err(invalid(
                "storage.maintenance.uploadpurging.age",
                "must be more than 0 (0 would remove uploads in progress)",
            ));
        }
        Ok(())
    }

    /// The metrics listener's address as written, when metrics are enabled
    /// (syntax checked, no name resolved; always tcp).
    pub fn metrics_listen(&self) -> Result<Option<listen::Listen>, ConfigError> {
        let Some(addr) = &self.metrics.addr else {
            return Ok(None);
        };
        listen::parse(addr, "tcp")
            .map(Some)
            .map_err(|m| invalid("metrics.addr", m))
    }

    /// Every address of the metrics listener, host names resolved, when
    /// metrics are enabled.
    pub fn metrics_addrs(&self) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
        let Some(listen) = self.metrics_listen()? else {
            return Ok(None);
        };
        listen
            .resolve()
            .map(Some)
            .map_err(|m| invalid("metrics.addr", m))
    }

    /// The first of [`Config::metrics_addrs`].
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        Ok(self.metrics_addrs()?.map(|a| a[0]))
    }
}

#[cfg(test)]
mod ops_tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operations_defaults() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(!c.storage.maintenance.readonly.enabled);
        assert!(c.storage.maintenance.uploadpurging.enabled);
        assert_eq!(
            c.storage.maintenance.uploadpurging.age,
            Duration::from_secs(168 * 3600)
        );
        assert!(c.gc.interval.is_zero(), "online gc is off by default");
        assert_eq!(c.gc.grace_period, Duration::from_secs(3600));
        assert_eq!(c.metrics_addr().unwrap(), None);
        assert_eq!(c.http.drain_timeout, Duration::from_secs(30));
    }

    #[test]
    fn ui_is_on_unless_switched_off() {
        assert!(Config::load(None, env(&[])).unwrap().ui.enabled);
        let c = Config::from_toml("[ui]\nenabled = false").unwrap();
        assert!(!c.ui.enabled);
        let c = Config::load(None, env(&[("REGISTRY_UI_ENABLED", "false")])).unwrap();
        assert!(!c.ui.enabled);
        assert!(Config::load(None, env(&[("REGISTRY_UI_ENABLED", "maybe")])).is_err());
    }

    #[test]
    fn read_only_from_registry2_variables() {
        for (k, v) in [
            (
                "REGISTRY_STORAGE_MAINTENANCE_READONLY",
                "{\"enabled\": true}",
            ),
            ("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: true}"),
            ("REGISTRY_STORAGE_MAINTENANCE_READONLY", "true"),
            ("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "yes"),
        ] {
            let c = Config::load(None, env(&[(k, v)])).unwrap();
            assert!(c.storage.maintenance.readonly.enabled, "{k}={v}");
        }
        let c = Config::load(
            None,
            env(&[(
                "REGISTRY_STORAGE_MAINTENANCE_READONLY",
                "{\"enabled\": false}",
            )]),
        )
        .unwrap();
        assert!(!c.storage.maintenance.readonly.enabled);
        let e = Config::load(
            None,
            env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{\"on\": 1}")]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("REGISTRY_STORAGE_MAINTENANCE_READONLY"),
            "{e}"
        );
    }

    #[test]
    fn operations_keys_from_file_and_environment() {
        let c = Config::from_toml(
            r#"
[http]
drain_timeout = "5s"
[gc]
interval = "6h"
grace_period = "10m"
delete_untagged = true
[metrics]
addr = "127.0.0.1:5001"
[storage.maintenance.uploadpurging]
age = "48h"
interval = "1h"
dryrun = true
[storage.maintenance.readonly]
enabled = true
"#,
        )
        .unwrap();
        assert_eq!(c.http.drain_timeout, Duration::from_secs(5));
        assert_eq!(c.gc.interval, Duration::from_secs(6 * 3600));
        assert_eq!(c.gc.grace_period, Duration::from_secs(600));
        assert!(c.gc.delete_untagged);
        assert_eq!(
            c.metrics_addr().unwrap().unwrap().to_string(),
            "127.0.0.1:5001"
        );
        assert_eq!(
            c.storage.maintenance.uploadpurging.age,
            Duration::from_secs(48 * 3600)
        );
        assert!(c.storage.maintenance.uploadpurging.dryrun);
        assert!(c.storage.maintenance.readonly.enabled);

        let c = Config::load(
            None,
            env(&[
                ("REGISTRY_GC_INTERVAL", "30m"),
                ("REGISTRY_GC_GRACE_PERIOD", "0s"),
                ("REGISTRY_METRICS_ADDR", ":5001"),
                ("REGISTRY_HTTP_DRAINTIMEOUT", "2s"),
                ("REGISTRY_HTTP_HEADER_READ_TIMEOUT", "5s"),
                ("REGISTRY_HTTP_IDLE_TIMEOUT", "10s"),
                ("REGISTRY_HTTP_MAX_CONNECTIONS", "500"),
                ("REGISTRY_HTTP_HTTP2_MAX_CONCURRENT_STREAMS", "50"),
                ("REGISTRY_HTTP_HTTP2_KEEPALIVE_INTERVAL", "0s"),
                ("REGISTRY_HTTP_HTTP2_KEEPALIVE_TIMEOUT", "3s"),
                (
                    "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED",
                    "false",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.gc.interval, Duration::from_secs(1800));
        assert!(c.gc.grace_period.is_zero());
        assert_eq!(
            c.metrics_addr().unwrap().unwrap().to_string(),
            "0.0.0.0:5001"
        );
        assert_eq!(c.http.drain_timeout, Duration::from_secs(2));
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(10));
        assert_eq!(c.http.max_connections, 500);
        assert_eq!(c.http.http2.max_concurrent_streams, 50);
        assert!(c.http.http2.keepalive_interval.is_zero());
        assert_eq!(c.http.http2.keepalive_timeout, Duration::from_secs(3));
        assert!(!c.storage.maintenance.uploadpurging.enabled);
        assert!(c.ignored_env.is_empty(), "{:?}", c.ignored_env);
    }

    #[test]
    fn a_zero_header_timeout_is_refused() {
        let e =
            Config::load(None, env(&[("REGISTRY_HTTP_HEADER_READ_TIMEOUT", "0s")])).unwrap_err();
        assert!(e.to_string().contains("http.header_read_timeout"), "{e}");
    }

    #[test]
    fn bad_operations_values_name_their_key() {
        let e = Config::load(None, env(&[("REGISTRY_GC_INTERVAL", "often")])).unwrap_err();
        assert!(e.to_string().contains("REGISTRY_GC_INTERVAL"), "{e}");
        let e = Config::load(None, env(&[("REGISTRY_METRICS_ADDR", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("metrics.addr"), "{e}");
        let e = Config::from_toml("[gc]\ngrace_period = \"soon\"").unwrap_err();
        assert!(e.contains("grace_period"), "{e}");
        let e = Config::load(
            None,
            env(&[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "0s")]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("storage.maintenance.uploadpurging.age"),
            "{e}"
        );
    }
}

// ----- Types of other modules' sections: plain data, so that `config`
// depends on nothing and every module reads its settings from here. -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// An action an ACL rule grants (`pull`, `push`, `delete`).
pub enum AclAction {
    Pull,
    Push,
    Delete,
}

/// `[ui]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ui {
    /// Serve the web UI at `/ui/` (on by default; it shows only what the
    /// ACL lets each user pull).
    pub enabled: bool,
}

impl Default for Ui {
    fn default() -> Self {
        Ui { enabled: true }
    }
}

/// `[acl]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclConfig {
    /// Users (or `@group`s) allowed every action everywhere, and the catalog.
    pub admins: Vec<String>,
    /// What authenticated users may do on repositories no rule matches.
    pub default: Vec<AclAction>,
    /// What anonymous requests may do on repositories no rule matches.
    pub anonymous: Vec<AclAction>,
    /// Who may list `/v2/_catalog` besides admins: users, `@group`s, or `*`
    /// for every authenticated user.
    pub catalog: Vec<String>,
    /// Group name → member users.
    pub groups: BTreeMap<String, Vec<String>>,
    pub rules: Vec<RuleConfig>,
}

/// One `[[acl.rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Repository glob: `*` matches within one path component, `**` any
    /// number of components, `?` one character. `team-a/**` matches
    /// `team-a/app` and `team-a/x/y`, not `team-a`.
    pub repository: String,
    /// Who may pull / push / delete: users, `@group`s, `*` (every
    /// authenticated user).
    pub pull: Vec<String>,
    pub push: Vec<String>,
    pub delete: Vec<String>,
    /// What anonymous requests may do here.
    pub anonymous: Vec<AclAction>,
}

impl AclConfig {
    /// Every `@group` named must be defined, user names must not be empty,
    /// and every rule's repository must be a glob of path components; the
    /// error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let principals = |key: String, list: &[String]| -> Result<(), (String, String)> {
            for s in list {
                match s.strip_prefix('@') {
                    Some(g) if !self.groups.contains_key(g) => {
                        return Err((key, format!("group {g:?} is not defined in [acl.groups]")))
                    }
                    None if s.is_empty() => return Err((key, "empty user name".into())),
                    _ => {}
                }
            }
            Ok(())
        };
        principals("acl.admins".into(), &self.admins)?;
        principals("acl.catalog".into(), &self.catalog)?;
        for (i, r) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("acl.rules[{i}].{field}");
            check_repository_glob(key("repository"), &r.repository)?;
            principals(key("pull"), &r.pull)?;
            principals(key("push"), &r.push)?;
            principals(key("delete"), &r.delete)?;
        }
        Ok(())
    }
}

/// A repository glob is path components of lowercase name characters and
/// `*`, `**`, `?`; the error names `key`.
fn check_repository_glob(key: String, p: &str) -> Result<(), (String, String)> {
    if p.is_empty()
        || p.starts_with('/')
        || p.ends_with('/')
        || p.contains("//")
        || p.bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
    {
        return Err((
            key,
            format!("{p:?} is not a repository glob (e.g. \"team-a/**\")"),
        ));
    }
    Ok(())
}

/// `[auth.token]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// URL of the token endpoint, sent in challenges. Unset: this registry's
    /// own `/auth/token`, on the host and scheme the client used.
    pub realm: Option<String>,
    /// The `service` in challenges, and the `aud` tokens must carry.
    pub service: String,
    /// The `iss` tokens must carry (and ours do).
    pub issuer: String,
    /// PEM certificates (registry:2's `rootcertbundle`) whose keys tokens
    /// are accepted from: an external issuer's signing certificates.
    pub rootcertbundle: Option<PathBuf>,
    /// More PEM files whose keys (certificates, public or private keys) are
    /// trusted: the previous signing key during a rotation.
    pub trusted_keys: Vec<PathBuf>,
    /// The built-in issuer's signing key (PEM: P-256 → ES256, RSA → RS256,
    /// Ed25519 → EdDSA). Generated (P-256) and persisted if missing.
    pub signing_key: PathBuf,
    /// Lifetime of access tokens.
    pub expiry_secs: u64,
    /// Lifetime of refresh tokens (`offline_token=true`, `access_type=offline`).
    pub refresh_expiry_secs: u64,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Serve the built-in token endpoint at `/auth/token`. Unset: on, unless
    /// a `rootcertbundle` names an external issuer.
    pub endpoint: Option<bool>,
    /// A JWKS (registry:3's `jwks`): a file path, or an `http(s)://` URL
    /// fetched at start, cached, and fetched again when a token names a key
    /// ID it does not hold (at most once per 10 s).
    pub jwks: Option<String>,
    /// JWS algorithms tokens may be signed with (registry:3's
    /// `signingalgorithms`, e.g. `["RS256", "ES256"]`); empty: any that
    /// fits the key.
    pub signingalgorithms: Vec<String>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: "registry".into(),
            issuer: "registry-token-issuer".into(),
            rootcertbundle: None,
            trusted_keys: Vec::new(),
            signing_key: PathBuf::from("data/auth/token-signing-key.pem"),
            expiry_secs: 300,
            refresh_expiry_secs: 7 * 24 * 3600,
            leeway_secs: 60,
            endpoint: None,
            jwks: None,
            signingalgorithms: Vec::new(),
        }
    }
}

impl TokenConfig {
    pub fn endpoint_enabled(&self) -> bool {
        self.endpoint
            .unwrap_or(self.rootcertbundle.is_none() && self.jwks.is_none())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, m: &str| Err(invalid(&format!("auth.token.{key}"), m));
        if self.service.is_empty() {
            return bad("service", "must not be empty");
        }
        if self.issuer.is_empty() {
            return bad("issuer", "must not be empty");
        }
        if let Some(realm) = &self.realm {
            if !(realm.starts_with("http://") || realm.starts_with("https://"))
                || realm.contains('"')
            {
                return bad("realm", "must be an http:// or https:// URL");
            }
        }
        if self.expiry_secs == 0 {
            return bad("expiry_secs", "must be more than 0");
        }
        const ALGORITHMS: [&str; 8] = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA",
        ];
        if let Some(a) = self
            .signingalgorithms
            .iter()
            .find(|a| !ALGORITHMS.contains(&a.as_str()))
        {
            return Err(invalid(
                "auth.token.signingalgorithms",
                format!("{a:?} is not one of {}", ALGORITHMS.join(", ")),
            ));
        }
        if !self.endpoint_enabled()
            && self.rootcertbundle.is_none()
            && self.trusted_keys.is_empty()
            && self.jwks.is_none()
        {
            return bad(
                "rootcertbundle",
                "with the built-in endpoint off, the external issuer's certificates are needed (REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn registry3_token_variables_apply() {
        let c = Config::load(
            None,
            env(&[
                ("REGISTRY_AUTH", "token"),
                (
                    "REGISTRY_AUTH_TOKEN_REALM",
                    "https://auth.example.com/token",
                ),
                ("REGISTRY_AUTH_TOKEN_JWKS", "https://auth.example.com/jwks"),
                (
                    "REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS",
                    "[RS256, \"ES256\"]",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.token.signingalgorithms, ["RS256", "ES256"]);
        assert!(
            !c.auth.token.endpoint_enabled(),
            "a JWKS names an external issuer"
        );
        let e = Config::load(
            None,
            env(&[
                ("REGISTRY_AUTH", "token"),
                ("REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS", "HS256"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("signingalgorithms"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen_addr().unwrap().to_string(), "127.0.0.1:5000");
        assert_eq!(c.auth.mode, AuthMode::Htpasswd);
    }

    #[test]
    fn registry2_variables_apply() {
        let c = Config::load(
            None,
            env(&[
                ("REGISTRY_HTTP_ADDR", ":5001"),
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "R"),
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
                (
                    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                    "/var/lib/registry",
                ),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen_addr().unwrap().to_string(), "0.0.0.0:5001");
        assert_eq!(c.auth.htpasswd.realm, "R");
        assert!(c.storage.delete_enabled);
        assert_eq!(
            c.storage.filesystem.rootdirectory,
            PathBuf::from("/var/lib/registry")
        );
    }

    #[test]
    fn trusted_proxies_from_toml_and_env() {
        let c: Config =
            toml::from_str("[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]").unwrap();
        assert_eq!(c.http.trusted_proxies, ["10.0.0.0/8", "::1"]);
        let c = Config::load(
            None,
            env(&[("REGISTRY_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32,")]),
        )
        .unwrap();
        assert_eq!(c.http.trusted_proxies, ["10.0.0.0/8", "127.0.0.1/32"]);
        assert!(Config::load(None, env(&[]))
            .unwrap()
            .http
            .trusted_proxies
            .is_empty());
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.0/8;1.2.3.4"] {
            let e = Config::load(None, env(&[("REGISTRY_HTTP_TRUSTED_PROXIES", bad)])).unwrap_err();
            assert!(e.to_string().contains("http.trusted_proxies"), "{e}");
        }
    }

    #[test]
    fn urls_are_printed_without_their_password() {
        for (url, shown) in [
            ("https://hooks.example.com/x", "https://hooks.example.com/x"),
            (
                "https://bot:hunter2@hooks.example.com/x?a=b@c",
                "https://bot:********@hooks.example.com/x?a=b@c",
            ),
            ("http://:hunter2@h:8080", "http://:********@h:8080"),
            ("http://bot@h/", "http://bot:********@h/"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    /// fuzz/fuzz_targets/config.rs: tracing-subscriber panicked on these.
    #[test]
    fn non_ascii_log_level_is_refused_not_a_panic() {
        for level in ["x[a\u{1ca}]", "x[\u{e9}{f=1}]=info", "\u{e9}"] {
            let e = Config::load(None, env(&[("REGISTRY_LOG_LEVEL", level)])).unwrap_err();
            assert!(e.to_string().contains("log.level"), "{e}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let e =
            Config::load(None, env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")])).unwrap_err();
        assert!(
            e.to_string().contains("REGISTRY_STORAGE_DELETE_ENABLED"),
            "{e}"
        );
        let e = Config::load(None, env(&[("REGISTRY_HTTP_ADDR", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("http.addr"), "{e}");
        let e = Config::load(None, env(&[("REGISTRY_HTTP_TLS_KEY", "k.pem")])).unwrap_err();
        assert!(e.to_string().contains("http.tls"), "{e}");
        let e = Config::load(None, env(&[("REGISTRY_AUTH", "")])).unwrap_err();
        assert!(e.to_string().contains("REGISTRY_AUTH"), "{e}");
        assert!(e.to_string().contains("none"), "{e}");
        let c = Config::load(None, env(&[("REGISTRY_AUTH", "none")])).unwrap();
        assert_eq!(c.auth.mode, AuthMode::None);
        let c = Config::load(None, env(&[("REGISTRY_AUTH_SILLY", "x")])).unwrap();
        assert_eq!(c.ignored_env, ["REGISTRY_AUTH_SILLY"]);
        let e = Config::from_toml("[http]\nadress = \"x\"").unwrap_err();
        assert!(e.contains("adress"), "{e}");
        let e = Config::from_toml("[storage]\ndelete_enabled = \"yes\"").unwrap_err();
        assert!(e.contains("delete_enabled"), "{e}");
    }
}

// ----- notifications -----

/// `[notifications]` (registry:2's `notifications` section).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub endpoints: Vec<NotifyEndpoint>,
}

/// `ignore` of an endpoint: events not sent there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyIgnore {
    pub mediatypes: Vec<String>,
    pub actions: Vec<String>,
}

/// One `[[notifications.endpoints]]`: registry:2's keys, then ours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyEndpoint {
    pub name: String,
    pub url: String,
    /// Sent with every request (name → values), e.g. `Authorization`.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Per delivery attempt.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Failures in a row after which attempts wait `backoff` between them.
    pub threshold: u32,
    #[serde(deserialize_with = "de_duration")]
    pub backoff: Duration,
    pub ignoredmediatypes: Vec<String>,
    pub ignore: NotifyIgnore,
    pub disabled: bool,
    /// (ours) `distribution` (registry:2's envelope) or `cloudevents`
    /// (CloudEvents 1.0, structured JSON, one event per request).
    pub format: String,
    /// (ours) HMAC-SHA256 key: each request carries
    /// `X-Registry-Signature-256: sha256=<hex of the body's HMAC>`.
    pub secret: Option<String>,
    /// (ours) Only events of repositories matching one of these globs
    /// (the ACL's syntax); empty: all.
    pub repositories: Vec<String>,
    /// (ours) Only these actions (push, pull, delete, mount); empty: all.
    pub actions: Vec<String>,
    /// (ours) Events kept for this endpoint at most; past it the oldest is
    /// dropped, with a log line and `registry_notifications_dropped_total`.
    pub maxpending: usize,
}

impl Default for NotifyEndpoint {
    fn default() -> Self {
        NotifyEndpoint {
            name: String::new(),
            url: String::new(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(1),
            threshold: 10,
            backoff: Duration::from_secs(1),
            ignoredmediatypes: Vec::new(),
            ignore: NotifyIgnore::default(),
            disabled: false,
            format: "distribution".into(),
            secret: None,
            repositories: Vec::new(),
            actions: Vec::new(),
            maxpending: 10_000,
        }
    }
}

impl Notifications {
    /// Names unique and usable as a storage key, URLs http(s), known
    /// formats and actions.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = |k: &str| format!("notifications.endpoints[{i}].{k}");
            if e.name.is_empty()
                || !e
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                || !names.insert(e.name.as_str())
            {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "{:?} must be unique, of letters, digits, -, _ and .",
                        e.name
                    ),
                ));
            }
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(invalid(&key("url"), "must be an http:// or https:// URL"));
            }
            if !matches!(e.format.as_str(), "distribution" | "cloudevents") {
                return Err(invalid(
                    &key("format"),
                    "must be distribution or cloudevents",
                ));
            }
            for a in e.actions.iter().chain(&e.ignore.actions) {
                if !matches!(a.as_str(), "push" | "pull" | "delete" | "mount") {
                    return Err(invalid(
                        &key("actions"),
                        format!("{a:?} is not push, pull, delete or mount"),
                    ));
                }
            }
            if e.maxpending == 0 {
                return Err(invalid(&key("maxpending"), "must be more than 0"));
            }
        }
        Ok(())
    }
}

// ----- policies: immutable tags, retention (`policy`) -----

/// `[policies]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policies {
    /// `[[policies.immutable]]`: tags that, once pushed, keep their digest.
    pub immutable: Vec<ImmutableRule>,
    /// `[[policies.quota]]`: storage bytes and repository counts per
    /// namespace or repository, checked before an upload is accepted.
    pub quota: Vec<QuotaRule>,
    /// A limit on the bytes of every repository together (each blob
    /// counted once), checked like a quota rule's.
    pub total_max_bytes: Option<u64>,
    /// `[[policies.retention]]`: which tags stay; the others are removed by
    /// `registry retention --apply` or the server's scheduled run.
    pub retention: Vec<RetentionRule>,
    /// How often the server applies the retention rules (`0s`: never; then
    /// only `registry retention --apply` does).
    #[serde(deserialize_with = "de_duration")]
    pub retention_interval: Duration,
    /// How many upload sessions one repository may have open at once
    /// (unset: [`DEFAULT_MAX_UPLOAD_SESSIONS`]; 0: no limit). A new one
    /// past it is answered 429.
    pub max_upload_sessions_per_repository: Option<u32>,
}

/// `policies.max_upload_sessions_per_repository` when unset: more than
/// any client opens at once (docker pushes three layers at a time), far
/// fewer than parked sessions could otherwise pile up.
pub const DEFAULT_MAX_UPLOAD_SESSIONS: u32 = 100;

/// One `[[policies.retention]]` entry: a tag of a matching repository
/// stays when any of the `keep_*` conditions holds for it (or an immutable
/// rule protects it); the rest go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionRule {
    /// Repository glob, as in `[[acl.rules]]`; the first matching rule (in
    /// file order) governs a repository.
    pub repository: String,
    /// Keep the N most recently pushed tags.
    pub keep_last: Option<usize>,
    /// Keep the tags matching these patterns (`*`, `?`): `latest`, `v*`.
    pub keep_tags: Vec<String>,
    /// Keep the tags pushed within this long.
    #[serde(deserialize_with = "de_opt_duration")]
    pub keep_pushed_within: Option<Duration>,
    /// Keep the tags pulled (manifest GET or HEAD by tag) within this long,
    /// as the pull records say (`crate::pull_log`).
    #[serde(deserialize_with = "de_opt_duration")]
    pub keep_pulled_within: Option<Duration>,
    /// Manifests no kept tag reaches go this long after their last push
    /// (by garbage collection, which applies the window of every rule that
    /// is no dry run; unset: as `gc.delete_untagged` says).
    #[serde(deserialize_with = "de_opt_duration")]
    pub delete_untagged_after: Option<Duration>,
    /// Only report what would go (the default: a new rule removes nothing
    /// until someone read its report and set this to false).
    pub dry_run: bool,
}

impl Default for RetentionRule {
    fn default() -> Self {
        RetentionRule {
            repository: String::new(),
            keep_last: None,
            keep_tags: Vec::new(),
            keep_pushed_within: None,
            keep_pulled_within: None,
            delete_untagged_after: None,
            dry_run: true,
        }
    }
}

/// Tag patterns: tag characters, `*` and `?`.
fn check_tag_patterns(key: String, list: &[String]) -> Result<(), (String, String)> {
    for t in list {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?')
            });
        if !ok {
            return Err((
                key,
                format!("{t:?} is not a tag pattern (tag characters, * and ?)"),
            ));
        }
    }
    Ok(())
}

/// One `[[policies.quota]]` entry: either `namespace` (every repository
/// under it together, a blob counted once however many of them link it) or
/// `repository` (a glob; each matching repository on its own).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaRule {
    /// `team-a`: the repositories `team-a/...` (and `team-a` itself).
    pub namespace: Option<String>,
    /// Repository glob, as in `[[acl.rules]]`.
    pub repository: Option<String>,
    /// Bytes of the distinct blobs (layers, configs, manifests) linked.
    pub max_bytes: Option<u64>,
    /// How many repositories the namespace may hold (`namespace` only).
    pub max_repositories: Option<u64>,
}

/// One `[[policies.immutable]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImmutableRule {
    /// Repository glob, as in `[[acl.rules]]`.
    pub repository: String,
    /// Tag patterns (`*` any run of characters, `?` one): `v*`, `release-*`.
    pub tags: Vec<String>,
    /// Tags matching these stay mutable: `latest`, `*-rc*`.
    pub exceptions: Vec<String>,
    /// Whether `[acl] admins` may still overwrite and delete these tags.
    pub admin_override: bool,
}

impl Policies {
    /// Globs and patterns are well formed and every rule says something;
    /// the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, r) in self.immutable.iter().enumerate() {
            let key = |field: &str| format!("policies.immutable[{i}].{field}");
            check_repository_glob(key("repository"), &r.repository)?;
            if r.tags.is_empty() {
                return Err((key("tags"), "must name at least one tag pattern".into()));
            }
            for (field, list) in [("tags", &r.tags), ("exceptions", &r.exceptions)] {
                check_tag_patterns(key(field), list)?;
            }
        }
        for (i, r) in self.quota.iter().enumerate() {
            let key = |field: &str| format!("policies.quota[{i}].{field}");
            match (&r.namespace, &r.repository) {
                (Some(ns), None) => {
                    // A repository name (no pattern characters) passes the
                    // glob check as it is.
                    check_repository_glob(key("namespace"), ns)?;
                    if ns.contains(['*', '?']) {
                        return Err((
                            key("namespace"),
                            format!("{ns:?} is a pattern; a namespace is a repository name prefix (use repository = for a glob)"),
                        ));
                    }
                }
                (None, Some(glob)) => {
                    check_repository_glob(key("repository"), glob)?;
                    if r.max_repositories.is_some() {
                        return Err((
                            key("max_repositories"),
                            "counts the repositories of a namespace: use namespace = \"...\" instead of repository".into(),
                        ));
                    }
                }
                _ => {
                    return Err((
                        format!("policies.quota[{i}]"),
                        "needs exactly one of namespace or repository".into(),
                    ))
                }
            }
            if r.max_bytes.is_none() && r.max_repositories.is_none() {
                return Err((
                    format!("policies.quota[{i}]"),
                    "limits nothing: set max_bytes or max_repositories".into(),
                ));
            }
        }
        for (i, r) in self.retention.iter().enumerate() {
            let key = |field: &str| format!("policies.retention[{i}].{field}");
            check_repository_glob(key("repository"), &r.repository)?;
            check_tag_patterns(key("keep_tags"), &r.keep_tags)?;
            if r.keep_last.is_none()
                && r.keep_tags.is_empty()
                && r.keep_pushed_within.is_none()
                && r.keep_pulled_within.is_none()
            {
                return Err((
                    format!("policies.retention[{i}]"),
                    "keeps nothing: set keep_last, keep_tags, keep_pushed_within or keep_pulled_within (a rule that would remove every tag is refused)".into(),
                ));
            }
            if r.keep_last == Some(0) {
                return Err((key("keep_last"), "must be at least 1 (or unset)".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod policies_tests {
    use super::*;

    #[test]
    fn policies_from_toml() {
        let c = Config::from_toml(
            r#"
[[policies.immutable]]
repository = "team-a/**"
tags = ["v*", "release-*"]
exceptions = ["latest", "*-rc*"]
admin_override = true
"#,
        )
        .unwrap();
        c.validate().unwrap();
        let p = &c.policies;
        assert_eq!(p.immutable[0].tags, ["v*", "release-*"]);
        assert_eq!(p.immutable[0].exceptions, ["latest", "*-rc*"]);
        assert!(p.immutable[0].admin_override);
        let c = Config::from_toml(
            r#"
[policies]
retention_interval = "24h"
[[policies.retention]]
repository = "ci/**"
keep_last = 10
keep_tags = ["latest"]
keep_pushed_within = "7d"
delete_untagged_after = "2d"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        let r = &c.policies.retention[0];
        assert_eq!(
            r.delete_untagged_after,
            Some(Duration::from_secs(2 * 86400))
        );
        assert_eq!(r.keep_last, Some(10));
        assert_eq!(r.keep_pushed_within, Some(Duration::from_secs(7 * 86400)));
        assert!(r.dry_run, "a new rule is a dry run");
        assert_eq!(c.policies.retention_interval, Duration::from_secs(86400));
        let c = Config::from_toml(
            r#"
[policies]
total_max_bytes = 1000000
[[policies.quota]]
namespace = "team-a"
max_bytes = 5000
max_repositories = 3
[[policies.quota]]
repository = "ci/*"
max_bytes = 100
"#,
        )
        .unwrap();
        c.validate().unwrap();
        let q = &c.policies.quota;
        assert_eq!(q[0].namespace.as_deref(), Some("team-a"));
        assert_eq!(
            (q[0].max_bytes, q[0].max_repositories),
            (Some(5000), Some(3))
        );
        assert_eq!(q[1].repository.as_deref(), Some("ci/*"));
        assert_eq!(c.policies.total_max_bytes, Some(1_000_000));
    }

    #[test]
    fn bad_policies_name_their_key() {
        for (text, key) in [
            (
                "[[policies.immutable]]\nrepository = \"A\"\ntags = [\"v*\"]",
                "policies.immutable[0].repository",
            ),
            (
                "[[policies.immutable]]\nrepository = \"a\"",
                "policies.immutable[0].tags",
            ),
            (
                "[[policies.immutable]]\nrepository = \"a\"\ntags = [\"v*\"]\nexceptions = [\"a/b\"]",
                "policies.immutable[0].exceptions",
            ),
            (
                "[[policies.retention]]\nrepository = \"ci/**\"",
                "policies.retention[0]: keeps nothing",
            ),
            (
                "[[policies.retention]]\nrepository = \"ci/**\"\nkeep_last = 0",
                "policies.retention[0].keep_last",
            ),
            (
                "[[policies.retention]]\nrepository = \"ci/**\"\nkeep_tags = [\"a b\"]",
                "policies.retention[0].keep_tags",
            ),
        ] {
            let c = Config::from_toml(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
        for (text, key) in [
            (
                "[[policies.quota]]\nmax_bytes = 1",
                "policies.quota[0]: needs exactly one",
            ),
            (
                "[[policies.quota]]\nnamespace = \"a\"\nrepository = \"a/*\"\nmax_bytes = 1",
                "policies.quota[0]: needs exactly one",
            ),
            (
                "[[policies.quota]]\nnamespace = \"A\"\nmax_bytes = 1",
                "policies.quota[0].namespace",
            ),
            (
                "[[policies.quota]]\nrepository = \"ci/*\"\nmax_repositories = 1",
                "policies.quota[0].max_repositories",
            ),
            (
                "[[policies.quota]]\nnamespace = \"a\"",
                "policies.quota[0]: limits nothing",
            ),
        ] {
            let c = Config::from_toml(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }
}

// ----- pull-through cache -----

/// `[proxy]`: registry:2's keys (`remoteurl`, `username`, `password`,
/// `ttl`) make the whole registry a mirror of one upstream, as registry:2
/// does; `[[proxy.upstreams]]` add upstreams under repository prefixes,
/// side by side with hosted repositories.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    /// Every repository mirrors this registry (`REGISTRY_PROXY_REMOTEURL`).
    pub remoteurl: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long cached content is kept after its last pull (registry:2's
    /// `proxy.ttl`, 168h by default there); 0: kept until `gc`.
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// How long a cached tag is served before one upstream HEAD checks it.
    #[serde(deserialize_with = "de_duration")]
    pub tag_ttl: Duration,
    /// Local directory for blobs while they arrive (what concurrent clients
    /// read from); unset: `<temp dir>/registry-proxy-spool`. Emptied at start.
    pub spool_dir: Option<PathBuf>,
    /// Size cap of the `remoteurl` mirror's cache in bytes (what its tags
    /// reach); past it the least recently pulled tags are removed. 0: none.
    pub max_bytes: u64,
    pub upstreams: Vec<ProxyUpstream>,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            remoteurl: None,
            username: None,
            password: None,
            ttl: Duration::from_secs(168 * 3600),
            tag_ttl: Duration::from_secs(300),
            spool_dir: None,
            max_bytes: 0,
            upstreams: Vec::new(),
        }
    }
}

/// One `[[proxy.upstreams]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyUpstream {
    /// Repository prefix served from this upstream (`docker.io`: local
    /// `docker.io/library/redis` is upstream `library/redis`). Also the
    /// host containerd names in `?ns=`.
    pub prefix: String,
    /// `https://registry-1.docker.io`
    pub url: String,
    /// Credentials: sent as Basic, or to the token realm the upstream's
    /// challenge names. Unset: anonymous (Docker Hub's anonymous token flow).
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of CA certificates trusted for this upstream, besides the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// Names of one component get Docker Hub's `library/` (`redis` →
    /// `library/redis`).
    pub library: bool,
    /// Serves Docker Engine's `registry-mirrors` requests: names under no
    /// prefix that are not hosted here (Docker Hub's upstream).
    pub docker_mirror: bool,
    /// Overrides `proxy.tag_ttl` for this upstream.
    #[serde(deserialize_with = "de_opt_duration")]
    pub tag_ttl: Option<Duration>,
    /// Size cap of this upstream's cache in bytes (what its cached tags
    /// reach, each blob once); past it the least recently pulled tags are
    /// removed. 0: none.
    pub max_bytes: u64,
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

impl Proxy {
    pub fn enabled(&self) -> bool {
        self.remoteurl.is_some() || !self.upstreams.is_empty()
    }

    /// `REGISTRY_PROXY_*`; true when `k` was one of them.
    fn apply_env(&mut self, k: &str, value: &str) -> Result<bool, ConfigError> {
        match k {
            "REGISTRY_PROXY_REMOTEURL" => {
                self.remoteurl = Some(value.to_owned()).filter(|v| !v.trim().is_empty())
            }
            "REGISTRY_PROXY_USERNAME" => self.username = Some(value.to_owned()),
            "REGISTRY_PROXY_PASSWORD" => self.password = Some(value.to_owned()),
            "REGISTRY_PROXY_TTL" => self.ttl = parse_duration(k, value)?,
            "REGISTRY_PROXY_TAG_TTL" => self.tag_ttl = parse_duration(k, value)?,
            "REGISTRY_PROXY_SPOOL_DIR" => self.spool_dir = Some(value.into()),
            "REGISTRY_PROXY_MAX_BYTES" => self.max_bytes = parse_number(k, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Every upstream, `remoteurl` as the one with the empty prefix (it
    /// serves every name no other prefix takes).
    pub fn all_upstreams(&self) -> Vec<ProxyUpstream> {
        let mut all = self.upstreams.clone();
        if let Some(url) = &self.remoteurl {
            all.push(ProxyUpstream {
                prefix: String::new(),
                url: url.clone(),
                username: self.username.clone(),
                password: self.password.clone(),
                max_bytes: self.max_bytes,
                ..Default::default()
            });
        }
        all
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url_ok = |u: &str| {
            (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() > "https://".len()
                && !u.contains(char::is_whitespace)
        };
        if let Some(url) = &self.remoteurl {
            if !url_ok(url) {
                return Err(invalid(
                    "proxy.remoteurl",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = |f: &str| format!("proxy.upstreams[{i}].{f}");
            let p = u.prefix.as_str();
            let component_ok = |c: &str| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            };
            if p.is_empty() || !p.split('/').all(component_ok) {
                return Err(invalid(
                    &key("prefix"),
                    format!("{p:?} is not a repository prefix (e.g. \"docker.io\")"),
                ));
            }
            if !seen.insert(p) {
                return Err(invalid(&key("prefix"), format!("{p:?} is given twice")));
            }
            if !url_ok(&u.url) {
                return Err(invalid(
                    &key("url"),
                    format!("{:?} is not an http:// or https:// URL", u.url),
                ));
            }
            if u.password.is_some() && u.username.is_none() {
                return Err(invalid(&key("username"), "a password needs a username"));
            }
        }
        let mirrors = self.upstreams.iter().filter(|u| u.docker_mirror).count();
        if mirrors > 1 {
            return Err(invalid(
                "proxy.upstreams.docker_mirror",
                "at most one upstream can serve unprefixed names",
            ));
        }
        if mirrors == 1 && self.remoteurl.is_some() {
            return Err(invalid(
                "proxy.remoteurl",
                "already serves every unprefixed name; docker_mirror cannot be set too",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn registry2_proxy_variables() {
        let env = [
            ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io"),
            ("REGISTRY_PROXY_USERNAME", "u"),
            ("REGISTRY_PROXY_PASSWORD", "p"),
            ("REGISTRY_PROXY_TTL", "24h"),
            ("REGISTRY_PROXY_MAX_BYTES", "1000000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::load(None, env).unwrap();
        assert!(c.proxy.enabled());
        assert_eq!(c.proxy.ttl, Duration::from_secs(24 * 3600));
        let all = c.proxy.all_upstreams();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].prefix, "");
        assert_eq!(all[0].username.as_deref(), Some("u"));
        assert_eq!(all[0].max_bytes, 1_000_000);
        assert!(c.ignored_env.is_empty(), "{:?}", c.ignored_env);
    }

    #[test]
    fn upstreams_from_toml_and_their_errors() {
        let c = Config::from_toml(
            r#"
[proxy]
tag_ttl = "1m"
[[proxy.upstreams]]
prefix = "docker.io"
url = "https://registry-1.docker.io"
library = true
docker_mirror = true
[[proxy.upstreams]]
prefix = "ghcr.io"
url = "https://ghcr.io"
username = "me"
password = "token"
tag_ttl = "10s"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.proxy.upstreams[1].tag_ttl, Some(Duration::from_secs(10)));
        for (toml, key) in [
            (
                "[[proxy.upstreams]]\nprefix = \"Bad\"\nurl = \"https://x\"",
                "prefix",
            ),
            (
                "[[proxy.upstreams]]\nprefix = \"x\"\nurl = \"ftp://x\"",
                "url",
            ),
            ("[proxy]\nremoteurl = \"nope\"", "proxy.remoteurl"),
        ] {
            let e = Config::from_toml(toml).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
