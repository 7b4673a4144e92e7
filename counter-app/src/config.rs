//! Configuration from the environment, validated once at start-up.
//!
//! Every setting has a default that works in the seed's compose/Swarm layout
//! (Redis reachable as `redis:6379`, the app on port 8000), so a container
//! needs no variables at all there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000);
const DEFAULT_REDIS_HOST: &str = "redis";
const DEFAULT_REDIS_PORT: u16 = 6379;
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(1000);
// Below Docker's default 10 s stop grace period, so the process can log and
// exit on its own before the engine sends SIGKILL.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);
// The key the original Flask app increments, so an existing Redis keeps its count.
const DEFAULT_COUNTER_KEY: &str = "hits";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("set either {0} or {1}, not both")]
    Conflict(&'static str, &'static str),
    #[error("cannot read REDIS_PASSWORD_FILE {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    // The URL itself is never echoed: it may carry a password.
    #[error("REDIS_URL is invalid: {0}")]
    RedisUrl(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub shutdown_timeout: Duration,
    pub redis: RedisConfig,
}

#[derive(Clone)]
pub struct RedisConfig {
    pub connection: ConnectionInfo,
    /// Bounds every Redis round trip and connection attempt, so a dead Redis
    /// turns into a quick 503 instead of a hanging request.
    pub timeout: Duration,
    pub key: String,
}

impl std::fmt::Debug for RedisConfig {
    // Hand-written so that the password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.connection.addr().to_string())
            .field(
                "password",
                &self.connection.redis_settings().password().map(|_| "***"),
            )
            .field("timeout", &self.timeout)
            .field("key", &self.key)
            .finish()
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests can pass a map instead
    /// of mutating the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: listen_addr(&lookup)?,
            shutdown_timeout: parse_or(
                &lookup,
                "SHUTDOWN_TIMEOUT_SECS",
                DEFAULT_SHUTDOWN_TIMEOUT,
                |v| {
                    v.parse::<u64>()
                        .map(Duration::from_secs)
                        .map_err(|e| e.to_string())
                },
            )?,
            redis: RedisConfig::from_lookup(&lookup)?,
        })
    }
}

/// Only the listen address: the `healthcheck` command needs nothing else and
/// must not fail because, say, a password file is unreadable for it.
pub fn listen_addr(lookup: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, ConfigError> {
    parse_or(lookup, "LISTEN_ADDR", DEFAULT_LISTEN_ADDR, |v| {
        v.parse::<SocketAddr>().map_err(|e| e.to_string())
    })
}

/// Where a local probe should connect to reach a server listening on `listen`:
/// a wildcard address is reachable on loopback, a specific one only on itself.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl RedisConfig {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = non_empty(lookup, "REDIS_URL");
        let mut connection = match url {
            Some(url) => {
                for var in ["REDIS_HOST", "REDIS_PORT"] {
                    if non_empty(lookup, var).is_some() {
                        return Err(ConfigError::Conflict("REDIS_URL", var));
                    }
                }
                url.as_str()
                    .into_connection_info()
                    .map_err(|e| ConfigError::RedisUrl(e.to_string()))?
            }
            None => {
                let host = non_empty(lookup, "REDIS_HOST")
                    .unwrap_or_else(|| DEFAULT_REDIS_HOST.to_owned());
                let port = parse_or(lookup, "REDIS_PORT", DEFAULT_REDIS_PORT, |v| {
                    v.parse::<u16>().map_err(|e| e.to_string())
                })?;
                ConnectionAddr::Tcp(host, port)
                    .into_connection_info()
                    .map_err(|e| ConfigError::RedisUrl(e.to_string()))?
            }
        };

        if let Some(password) = password(lookup)? {
            if connection.redis_settings().password().is_some() {
                return Err(ConfigError::Conflict(
                    "a password in REDIS_URL",
                    "REDIS_PASSWORD/REDIS_PASSWORD_FILE",
                ));
            }
            let settings = connection.redis_settings().clone().set_password(password);
            connection = connection.set_redis_settings(settings);
        }

        // Requests are tiny and pipelined on one connection: Nagle's algorithm
        // would hold them back waiting for ACKs.
        let tcp = connection.tcp_settings().clone().set_nodelay(true);
        connection = connection.set_tcp_settings(tcp);

        Ok(Self {
            connection,
            timeout: parse_or(
                lookup,
                "REDIS_TIMEOUT_MS",
                DEFAULT_REDIS_TIMEOUT,
                |v| match v.parse::<u64>() {
                    Ok(0) => Err("must be at least 1".to_owned()),
                    Ok(ms) => Ok(Duration::from_millis(ms)),
                    Err(e) => Err(e.to_string()),
                },
            )?,
            key: non_empty(lookup, "COUNTER_KEY").unwrap_or_else(|| DEFAULT_COUNTER_KEY.to_owned()),
        })
    }

    /// `host:port` (or socket path) for messages; never includes credentials.
    pub fn target(&self) -> String {
        self.connection.addr().to_string()
    }
}

/// `REDIS_PASSWORD`, or the content of `REDIS_PASSWORD_FILE` (Swarm and
/// Kubernetes mount secrets as files) without its trailing newline.
fn password(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    match (
        non_empty(lookup, "REDIS_PASSWORD"),
        non_empty(lookup, "REDIS_PASSWORD_FILE"),
    ) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict(
            "REDIS_PASSWORD",
            "REDIS_PASSWORD_FILE",
        )),
        (Some(password), None) => Ok(Some(password)),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let content = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::PasswordFile { path, source })?;
            Ok(Some(content.trim_end_matches(['\r', '\n']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

// An empty variable counts as unset: compose files often write `VAR=` or
// `VAR: ""` for "use the default".
fn non_empty(lookup: &impl Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var).filter(|v| !v.trim().is_empty())
}

fn parse_or<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match non_empty(lookup, var) {
        None => Ok(default),
        Some(value) => {
            parse(value.trim()).map_err(|reason| ConfigError::Invalid { var, value, reason })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_seed_layout() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c.redis.target(), "redis:6379");
        assert_eq!(c.redis.connection.redis_settings().password(), None);
        assert_eq!(c.redis.key, "hits");
        assert_eq!(c.redis.timeout, Duration::from_secs(1));
        assert!(c.redis.connection.tcp_settings().nodelay());
    }

    #[test]
    fn host_port_and_password() {
        let c = config(&[
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "s3cret"),
            ("LISTEN_ADDR", "127.0.0.1:9000"),
        ])
        .unwrap();
        assert_eq!(c.redis.target(), "cache.internal:6380");
        assert_eq!(
            c.redis.connection.redis_settings().password(),
            Some("s3cret")
        );
        assert_eq!(c.listen_addr, "127.0.0.1:9000".parse().unwrap());
    }

    #[test]
    fn url_with_password_and_db() {
        let c = config(&[("REDIS_URL", "redis://:pw@10.1.2.3:7000/2")]).unwrap();
        assert_eq!(c.redis.target(), "10.1.2.3:7000");
        assert_eq!(c.redis.connection.redis_settings().password(), Some("pw"));
    }

    #[test]
    fn password_file_is_trimmed_of_its_newline() {
        let dir = std::env::temp_dir().join(format!("counter-app-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("redis_password");
        std::fs::write(&file, "from-a-secret\n").unwrap();
        let c = config(&[("REDIS_PASSWORD_FILE", file.to_str().unwrap())]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            c.redis.connection.redis_settings().password(),
            Some("from-a-secret")
        );
    }

    #[test]
    fn conflicting_and_invalid_settings_are_errors() {
        let cases: &[&[(&str, &str)]] = &[
            &[("REDIS_PASSWORD", "a"), ("REDIS_PASSWORD_FILE", "/x")],
            &[("REDIS_URL", "redis://h:1"), ("REDIS_HOST", "h")],
            &[("REDIS_URL", "redis://:pw@h:1"), ("REDIS_PASSWORD", "b")],
            &[("REDIS_PORT", "70000")],
            &[("LISTEN_ADDR", "8000")],
            &[("REDIS_TIMEOUT_MS", "0")],
            &[("REDIS_URL", "not a url")],
            &[("REDIS_PASSWORD_FILE", "/nonexistent/counter-app/secret")],
        ];
        for vars in cases {
            assert!(config(vars).is_err(), "{vars:?} should be rejected");
        }
    }

    #[test]
    fn errors_and_debug_output_never_show_the_password() {
        let err = config(&[("REDIS_URL", "redis://:hunter2@h:1"), ("REDIS_PORT", "1")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let c = config(&[("REDIS_PASSWORD", "hunter2")]).unwrap();
        let debug = format!("{:?}", c.redis);
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn empty_values_mean_default() {
        let c = config(&[("REDIS_HOST", ""), ("LISTEN_ADDR", " ")]).unwrap();
        assert_eq!(c.redis.target(), "redis:6379");
        assert_eq!(c.listen_addr, DEFAULT_LISTEN_ADDR);
    }

    #[test]
    fn probe_targets_loopback_for_wildcard_listeners() {
        let p = |s: &str| probe_addr(s.parse().unwrap()).to_string();
        assert_eq!(p("0.0.0.0:8000"), "127.0.0.1:8000");
        assert_eq!(p("[::]:8000"), "[::1]:8000");
        assert_eq!(p("127.0.0.2:9000"), "127.0.0.2:9000");
    }
}
