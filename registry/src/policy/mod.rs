//! Repository policies checked before a write, as auth is checked before a
//! handler: immutable tags (`immutable`); quotas and retention are to join
//! it. Built from `[policies]`; the server swaps in a new set when the
//! config file changes (`crate::reload`).

pub mod immutable;

use crate::config;

/// The policies in force.
#[derive(Debug, Default)]
pub struct Policies {
    pub immutable: immutable::Immutable,
}

impl Policies {
    /// From a configuration `config::Policies::validate` accepted.
    pub fn from_config(config: &config::Policies) -> Policies {
        Policies {
            immutable: immutable::Immutable::new(config.immutable.clone()),
        }
    }
}
