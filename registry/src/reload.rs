//! Settings that change without a restart: the ACL and the policies. The
//! server keeps each in a `Live` cell (`config::live`); a watcher re-reads the config file
//! (the one `Config::load` read) when its content changes, validates it as
//! at start, and swaps both in at once. A file that fails keeps the rules
//! in force and logs why, as the htpasswd reloader does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::acl::Acl;
use crate::config::Config;
use crate::policy::Policies;

/// How often the config file is looked at (a small file, read whole).
const POLL: Duration = Duration::from_secs(1);

/// What a reload produced, or why the file was refused.
pub fn load_rules(path: &std::path::Path) -> Result<(Acl, Policies), String> {
    let config = Config::load(Some(path), std::env::vars()).map_err(|e| e.to_string())?;
    let acl = Acl::from_config(config.acl.as_ref()).map_err(|(k, m)| format!("{k}: {m}"))?;
    Ok((acl, Policies::from_config(&config.policies)))
}

/// Watches `path` while `app` lives.
pub fn spawn(app: &crate::AppState, path: PathBuf) {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut last = tokio::fs::read(&path).await.ok();
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            let now = match tokio::fs::read(&path).await {
                Ok(bytes) => Some(bytes),
                // Editors replace files by rename; a moment without one is
                // not a new configuration.
                Err(_) => continue,
            };
            if now == last {
                continue;
            }
            last = now;
            let p = path.clone();
            match tokio::task::spawn_blocking(move || load_rules(&p)).await {
                Ok(Ok((acl, policies))) => {
                    app.auth.acl.set(acl);
                    app.policies.set(policies);
                    app.metrics.config_reloaded(true);
                    tracing::info!(path = %path.display(), "config file changed: ACL and policies reloaded");
                }
                Ok(Err(e)) => {
                    app.metrics.config_reloaded(false);
                    tracing::error!(
                        path = %path.display(),
                        error = %e,
                        "config file changed but is not valid; keeping the ACL and policies in force"
                    )
                }
                Err(_) => {}
            }
        }
    });
}
