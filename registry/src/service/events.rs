//! Events of what changed, for the entrances that are not `/v2` traffic
//! (`notify::middleware` makes those from the response): the UI's deletes,
//! repository deletes, retention's removals. Each sends the event registry:2
//! sends for the same change, so a receiver cannot tell the entrances apart
//! but by the `request` block.

use axum::http::{HeaderMap, Method};

use crate::notify::event::{RequestInfo, Target};
use crate::notify::Notifier;
use crate::App;

/// Who caused a change and through what: an event's `actor` and `request`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The user (empty for anonymous and for background jobs).
    pub actor: String,
    pub request: RequestInfo,
}

impl Origin {
    /// A client's request: its address, method and user agent.
    pub fn request(
        app: &App,
        user: &str,
        client: String,
        method: &Method,
        headers: &HeaderMap,
    ) -> Origin {
        let host = app.notifier.as_ref().map_or("", |n| n.host.as_str());
        Origin {
            actor: if user == crate::auth::ANONYMOUS {
                String::new()
            } else {
                user.to_owned()
            },
            request: crate::notify::middleware::request_info(host, headers, client, method),
        }
    }

    /// A background job of this registry (`job` names it, as the user
    /// agent): no client and no user.
    pub fn job(app: &App, job: &str) -> Origin {
        let host = app.notifier.as_ref().map_or("", |n| n.host.as_str());
        Origin {
            actor: String::new(),
            request: RequestInfo {
                id: uuid::Uuid::new_v4().to_string(),
                host: host.to_owned(),
                useragent: format!("registry/{job}"),
                ..Default::default()
            },
        }
    }
}

/// The delete events of manifest `reference` of `repository` and of the
/// tags a delete by digest removed with it.
pub async fn manifest_deleted(
    app: &App,
    origin: &Origin,
    repository: &str,
    reference: &str,
    untagged: &[String],
) {
    emit_delete(
        app,
        origin,
        Notifier::delete_targets(repository, reference, untagged),
    )
    .await;
}

/// registry:2's event for a deleted repository: `delete` with the
/// repository as the only target field.
pub async fn repository_deleted(app: &App, origin: &Origin, repository: &str) {
    let target = Target {
        repository: repository.to_owned(),
        ..Default::default()
    };
    emit_delete(app, origin, vec![target]).await;
}

async fn emit_delete(app: &App, origin: &Origin, targets: Vec<Target>) {
    if let Some(n) = &app.notifier {
        n.emit_action("delete", targets, &origin.request, &origin.actor)
            .await;
    }
}
