//! The audit log: logins (token issued, failed, throttled), denials, pushes
//! and deletes. Each event is one tracing event under the `audit` target
//! (one JSON line with `log.format = "json"`), and, when `auth.audit_log`
//! names a file, one JSON object per line appended there by a writer
//! thread. Never a password, a token or an `Authorization` value.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::mpsc;

use serde::Serialize;

/// One audit event. Empty fields are left out of the JSON line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event<'a> {
    /// `login`, `login_failed`, `throttled`, `token`, `denied`, `push`,
    /// `delete`.
    pub event: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub repository: &'a str,
    /// Tag or digest pushed or deleted.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reference: &'a str,
    /// Scopes asked for (`token`) or needed (`denied`).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub requested: &'a str,
    /// Scopes granted (`token`).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub granted: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub method: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
}

pub struct Audit {
    file: Option<mpsc::SyncSender<String>>,
}

impl Audit {
    pub fn disabled() -> Audit {
        Audit { file: None }
    }

    /// Appends to `path` (created if missing) from a writer thread.
    pub fn to_file(path: &Path) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Only the registry's user reads who logged in from where.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let (tx, rx) = mpsc::sync_channel::<String>(4096);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                for line in rx {
                    if let Err(e) = file.write_all(line.as_bytes()) {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                }
            })?;
        Ok(Audit { file: Some(tx) })
    }

    pub fn record(&self, event: &Event<'_>) {
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        tracing::info!(
            target: "audit",
            event = event.event,
            user = event.user,
            client = %event.client.map(|c| c.to_string()).unwrap_or_default(),
            repository = event.repository,
            reference = event.reference,
            requested = event.requested,
            granted = event.granted,
            method = event.method,
            reason = event.reason,
        );
        if let Some(tx) = &self.file {
            #[derive(Serialize)]
            struct Line<'a> {
                time: String,
                #[serde(flatten)]
                event: &'a Event<'a>,
            }
            let mut line = serde_json::to_string(&Line { time, event }).expect("serialisable");
            line.push('\n');
            if tx.try_send(line).is_err() {
                tracing::error!("audit log writer is behind; an audit event was only logged");
            }
        }
    }
}
