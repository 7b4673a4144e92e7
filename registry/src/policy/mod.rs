//! Repository policies: immutable tags (`immutable`), checked before a
//! write as auth is checked before a handler, and retention (`retention`),
//! run on demand or on a schedule, and quotas (`quota`: which limits a
//! repository is under; `crate::quota` counts). Built from
//! `[policies]`; the server swaps in a new set when the config file changes
//! (`crate::reload`).

pub mod immutable;
pub mod retention;

use crate::config;

/// The policies in force.
#[derive(Debug, Default)]
pub struct Policies {
    pub immutable: immutable::Immutable,
    pub retention: Vec<config::RetentionRule>,
    pub quota: crate::quota::rules::Quotas,
    /// `policies.max_upload_sessions_per_repository` in effect (0: none).
    pub max_upload_sessions: u32,
}

impl Policies {
    /// From a configuration `config::Policies::validate` accepted.
    pub fn from_config(config: &config::Policies) -> Policies {
        Policies {
            immutable: immutable::Immutable::new(config.immutable.clone()),
            retention: config.retention.clone(),
            quota: crate::quota::rules::Quotas::new(config.quota.clone(), config.total_max_bytes),
            max_upload_sessions: config
                .max_upload_sessions_per_repository
                .unwrap_or(config::DEFAULT_MAX_UPLOAD_SESSIONS),
        }
    }
}
