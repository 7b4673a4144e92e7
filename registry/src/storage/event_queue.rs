//! (ours) Notification events waiting for delivery, one object each:
//! `docker/registry/v2/_notifications/<endpoint>/<sortable name>`. Written
//! before the request that caused them is answered, removed once the
//! endpoint acknowledged them, so a crash loses none. registry:2, GC and
//! scrub never look there.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use super::{is_not_found, Result, Storage};

fn dir(endpoint: &str) -> Path {
    // Endpoint names are validated (letters, digits, `-_.`).
    Path::from(format!("docker/registry/v2/_notifications/{endpoint}"))
}

impl Storage {
    /// Stores one event; `name` sorts in the order events happened.
    pub async fn queue_append(&self, endpoint: &str, name: &str, event: Bytes) -> Result<()> {
        let key = dir(endpoint).join(name);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&key, PutPayload::from_bytes(event), options)
            .await?;
        Ok(())
    }

    /// The names of the events waiting, oldest first.
    pub async fn queue_list(&self, endpoint: &str) -> Result<Vec<String>> {
        let prefix = dir(endpoint);
        let mut names: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_owned())
            .try_collect()
            .await
            .or_else(|e| {
                if is_not_found(&e) {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            })?;
        // Temporary files of a write in progress on local disk start with `.`.
        names.retain(|n| !n.is_empty() && !n.starts_with('.'));
        names.sort();
        Ok(names)
    }

    pub async fn queue_read(&self, endpoint: &str, name: &str) -> Result<Option<Bytes>> {
        match self.store.get(&dir(endpoint).join(name)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn queue_remove(&self, endpoint: &str, name: &str) -> Result<()> {
        match self.store.delete(&dir(endpoint).join(name)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
