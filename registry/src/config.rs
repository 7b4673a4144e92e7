//! Typed configuration: a TOML file (every key optional), then environment
//! overrides using registry:2's variable names, validated once at start so a
//! bad value fails with a message naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: Http,
    pub storage: Storage,
    pub auth: Auth,
    pub log: Log,
    /// `REGISTRY_*` variables that name no setting we have, for a warning at
    /// start (registry:2 deployments carry many we do not need).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// `host:port`; registry:2's `:5000` form means all interfaces.
    pub addr: String,
    /// Shared by replicas; accepted for registry:2 compatibility. Upload
    /// state lives in storage, so nothing needs signing with it yet.
    pub secret: Option<String>,
    pub tls: Option<Tls>,
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
    pub filesystem: Filesystem,
    /// Whether manifests, tags and blobs may be deleted (registry:2's
    /// `storage.delete.enabled`, off by default there too).
    pub delete_enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filesystem {
    pub rootdirectory: PathBuf,
    /// fsync files and directories before acknowledging a write.
    pub fsync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Htpasswd,
    /// No authentication at all: every request is allowed. Only for
    /// development; the registry warns at start.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub mode: AuthMode,
    pub htpasswd: HtpasswdAuth,
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
            secret: None,
            tls: None,
        }
    }
}

impl Default for Filesystem {
    fn default() -> Self {
        Filesystem {
            rootdirectory: PathBuf::from("data/storage"),
            fsync: true,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: AuthMode::Htpasswd,
            htpasswd: HtpasswdAuth::default(),
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
                Config::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.into(),
                    message,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
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
                "REGISTRY_HTTP_SECRET" => self.http.secret = Some(value),
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
                "REGISTRY_STORAGE" if value == "filesystem" => {}
                "REGISTRY_STORAGE" => {
                    return Err(invalid(
                        k,
                        format!("storage driver {value:?} is not supported (use filesystem)"),
                    ))
                }
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" => {
                    self.storage.filesystem.rootdirectory = value.into()
                }
                "REGISTRY_STORAGE_FILESYSTEM_FSYNC" => {
                    self.storage.filesystem.fsync = parse_bool(k, &value)?
                }
                "REGISTRY_STORAGE_DELETE_ENABLED" => {
                    self.storage.delete_enabled = parse_bool(k, &value)?
                }
                "REGISTRY_AUTH" => {
                    self.auth.mode = match value.as_str() {
                        "htpasswd" => AuthMode::Htpasswd,
                        "none" | "" => AuthMode::None,
                        other => {
                            return Err(invalid(
                                k,
                                format!("auth {other:?} is not supported (use htpasswd or none)"),
                            ))
                        }
                    }
                }
                "REGISTRY_AUTH_HTPASSWD_REALM" => self.auth.htpasswd.realm = value,
                "REGISTRY_AUTH_HTPASSWD_PATH" => self.auth.htpasswd.path = value.into(),
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
                _ => self.ignored_env.push(k.to_owned()),
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if let Some(tls) = &self.http.tls {
            if tls.certificate.as_os_str().is_empty() || tls.key.as_os_str().is_empty() {
                return Err(invalid(
                    "http.tls",
                    "both certificate and key must be set (REGISTRY_HTTP_TLS_CERTIFICATE, REGISTRY_HTTP_TLS_KEY)",
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
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let addr = &self.http.addr;
        let full = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr.clone()
        };
        full.parse().map_err(|_| {
            invalid(
                "http.addr",
                format!("{addr:?} is not host:port (e.g. 127.0.0.1:5000 or :5000)"),
            )
        })
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
        let c = Config::load(None, env(&[("REGISTRY_AUTH_SILLY", "x")])).unwrap();
        assert_eq!(c.ignored_env, ["REGISTRY_AUTH_SILLY"]);
        let e = Config::from_toml("[http]\nadress = \"x\"").unwrap_err();
        assert!(e.contains("adress"), "{e}");
        let e = Config::from_toml("[storage]\ndelete_enabled = \"yes\"").unwrap_err();
        assert!(e.contains("delete_enabled"), "{e}");
    }
}
