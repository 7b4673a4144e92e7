//! The counter's storage: one multiplexed, self-reconnecting Redis connection
//! shared by every request.
//!
//! Invariants the HTTP layer relies on:
//! * the process starts whether or not Redis is up (the connection is lazy);
//! * every call returns within `RedisConfig::timeout`, so an outage becomes a
//!   quick 503 rather than piled-up requests;
//! * it recovers without a restart: `ConnectionManager` reconnects after I/O
//!   errors, and we replace the manager ourselves after repeated failures it
//!   does not treat as fatal (a hung socket, a wrong password at connect).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError};

use crate::config::RedisConfig;

/// Consecutive connection-level failures after which the manager is rebuilt.
const RESET_AFTER_FAILURES: u32 = 3;
/// At most one rebuild per this interval, so an outage under load does not
/// turn into a reconnect storm.
const MIN_RESET_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or does not answer in time: the caller should
    /// retry later (HTTP 503).
    #[error("Redis at {target} is unavailable: {reason}")]
    Unavailable { target: String, reason: String },
    /// Redis answered with an error for this command (e.g. the key holds a
    /// non-integer): retrying will not help (HTTP 500).
    #[error("Redis rejected the command: {0}")]
    Command(String),
}

pub struct Store {
    client: Client,
    manager_config: ConnectionManagerConfig,
    manager: RwLock<ConnectionManager>,
    timeout: Duration,
    key: String,
    target: String,
    consecutive_failures: AtomicU32,
    last_reset: Mutex<Instant>,
    up: AtomicBool,
    errors: AtomicU64,
}

impl Store {
    /// Creates the store without connecting; the first command connects.
    /// Must be called inside a Tokio runtime.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let client = Client::open(config.connection.clone())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // One quick retry inside the manager; the outer timeout and our
            // own rebuild logic handle longer outages.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())?;
        Ok(Self {
            client,
            manager_config,
            manager: RwLock::new(manager),
            timeout: config.timeout,
            key: config.key.clone(),
            target: config.target(),
            consecutive_failures: AtomicU32::new(0),
            last_reset: Mutex::new(Instant::now()),
            up: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        })
    }

    /// Increments the counter and returns the new value.
    pub async fn incr(&self) -> Result<u64, StoreError> {
        self.query(redis::cmd("INCR").arg(&self.key)).await
    }

    /// The current value, without incrementing (0 when the key is absent).
    pub async fn get(&self) -> Result<u64, StoreError> {
        let value: Option<u64> = self.query(redis::cmd("GET").arg(&self.key)).await?;
        Ok(value.unwrap_or(0))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Whether the last command reached Redis (for metrics).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Failed commands since start (for metrics).
    pub fn error_count(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        // Cloning the manager is an Arc clone; the lock is held only for that.
        let mut conn = self
            .manager
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let result = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await;
        match result {
            Ok(Ok(value)) => {
                self.record_success();
                Ok(value)
            }
            Ok(Err(err)) if is_command_error(&err) => {
                // Redis answered, so the connection is fine.
                self.record_success();
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Command(err.to_string()))
            }
            Ok(Err(err)) => Err(self.record_failure(describe(&err))),
            Err(_elapsed) => {
                Err(self
                    .record_failure(format!("no answer within {} ms", self.timeout.as_millis())))
            }
        }
    }

    fn record_success(&self) {
        // Read before writing: this runs on every request, and unconditional
        // writes would bounce these cache lines between the worker threads.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if !self.up.load(Ordering::Relaxed) && !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.target, "Redis is reachable");
        }
    }

    fn record_failure(&self, reason: String) -> StoreError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // Logged once per outage, not once per request.
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(redis = %self.target, %reason, "Redis became unavailable");
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= RESET_AFTER_FAILURES {
            self.maybe_reset(&reason);
        }
        StoreError::Unavailable {
            target: self.target.clone(),
            reason,
        }
    }

    fn maybe_reset(&self, reason: &str) {
        let mut last = self.last_reset.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < MIN_RESET_INTERVAL {
            return;
        }
        *last = Instant::now();
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(fresh) => {
                tracing::debug!(redis = %self.target, %reason, "rebuilding the Redis connection");
                *self.manager.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Err(err) => tracing::warn!(%err, "cannot rebuild the Redis connection"),
        }
    }
}

/// A server-side error reply to a well-formed command on a healthy connection,
/// or a reply we cannot use (a non-integer counter). Replies that mean "this
/// server cannot serve us right now" (loading, read-only replica, wrong or
/// missing password, ACL) are about availability instead.
fn is_command_error(err: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    match err.kind() {
        ErrorKind::Server(kind) => !matches!(
            kind,
            S::BusyLoading | S::ReadOnly | S::MasterDown | S::ClusterDown | S::TryAgain | S::NoPerm
        ),
        // Error codes the client library has no name for, e.g. WRONGTYPE.
        ErrorKind::Extension => !matches!(err.code(), Some("NOAUTH" | "WRONGPASS")),
        ErrorKind::UnexpectedReturnType => true,
        _ => false,
    }
}

fn describe(err: &RedisError) -> String {
    if err.is_connection_refusal() {
        "connection refused".to_owned()
    } else if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    }
}
