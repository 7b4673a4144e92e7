use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::Method;

use super::{ProxyError, Target};
use crate::oci::Digest;
use crate::storage::spool::{Abandoned, Spool, SpoolWriter};
use crate::storage::{Storage, UploadError};

const WRITER_STOPPED: &str = "the storage writer stopped";
/// Pieces queued between the upstream and the storage writer.
const STORE_QUEUE: usize = 4;

/// A fetch in progress: its clients read the spool as it grows; the last
/// byte waits for the digest check.
pub type Inflight = Spool<ProxyError>;

impl From<Abandoned> for ProxyError {
    fn from(_: Abandoned) -> ProxyError {
        ProxyError::Unreachable {
            upstream: "(this registry)".into(),
            reason: "the fetch was abandoned (shutting down)".into(),
        }
    }
}

/// The fetches in progress, by digest.
pub struct Fetches {
    inflight: Mutex<HashMap<Digest, Arc<Inflight>>>,
    spool_dir: PathBuf,
    storage: Storage,
    /// Told after each blob is cached (the size caps' sweeper).
    cached: Arc<tokio::sync::Notify>,
}

/// What a fetch reports to the metrics as it goes.
pub trait FetchObserver: Send + Sync + 'static {
    fn upstream_bytes(&self, n: u64);
    fn upstream_error(&self);
}

impl Fetches {
    pub fn new(storage: Storage, spool_dir: PathBuf, cached: Arc<tokio::sync::Notify>) -> Fetches {
        Fetches {
            inflight: Mutex::default(),
            spool_dir,
            storage,
            cached,
        }
    }

    /// The fetch of `digest` in progress, or a new one. The bool says
    /// whether the caller joined one (a coalesced request).
    pub fn join_or_start(
        self: &Arc<Self>,
        target: &Target,
        digest: &Digest,
        observer: Arc<dyn FetchObserver>,
    ) -> (Arc<Inflight>, bool) {
        let mut map = self.inflight.lock().unwrap();
        if let Some(f) = map.get(digest) {
            return (f.clone(), true);
        }
        let (inflight, mut writer) = Spool::create(&self.spool_dir, digest.hex(), true);
        map.insert(digest.clone(), inflight.clone());
        let fetches = self.clone();
        let target = target.clone();
        let digest = digest.clone();
        let task = tokio::spawn(async move {
            let result = fetches
                .fetch(&target, &digest, &mut writer, observer.as_ref())
                .await;
            match result {
                Ok(size) => {
                    writer.finish(size);
                    fetches.cached.notify_one();
                }
                Err(e) => {
                    if !matches!(e, ProxyError::NotFound { .. }) {
                        observer.upstream_error();
                    }
                    tracing::warn!(upstream = %target.upstream.client.url, repository = %target.remote, digest = %digest, error = %e, "proxy: blob fetch failed");
                    writer.fail(e);
                }
            }
            fetches.inflight.lock().unwrap().remove(&digest);
        });
        inflight.set_task(task.abort_handle());
        (inflight, false)
    }

    /// Stops every fetch (the server is stopping): their clients' responses
    /// fail, nothing becomes visible.
    pub fn abort_all(&self) {
        let map = std::mem::take(&mut *self.inflight.lock().unwrap());
        for f in map.values() {
            f.abort();
        }
    }

    async fn fetch(
        &self,
        target: &Target,
        digest: &Digest,
        spool: &mut SpoolWriter<ProxyError>,
        observer: &dyn FetchObserver,
    ) -> Result<u64, ProxyError> {
        let storage_err = |e: &dyn std::fmt::Display| ProxyError::Storage(e.to_string());
        let mut response = target
            .upstream
            .client
            .send(
                Method::GET,
                &target.remote,
                &format!("blobs/{digest}"),
                None,
            )
            .await?;
        let size = response.content_length();
        let local = target.local.clone();
        let id = self
            .storage
            .start_upload(&local)
            .await
            .map_err(|e| storage_err(&e))?;
        if let Err(e) = spool.start(size).await {
            let _ = self.storage.cancel_upload(&local, &id).await;
            return Err(storage_err(&e));
        }

        let (chunks, queue) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(STORE_QUEUE);
        let store = tokio::spawn({
            let storage = self.storage.clone();
            let local = local.clone();
            let id = id.clone();
            async move {
                let body = Box::pin(futures::stream::unfold(queue, |mut q| async move {
                    q.recv().await.map(|item| (item, q))
                }));
                storage
                    .append_upload(&local, &id, Some(0), None, body)
                    .await
            }
        });
        let received = self
            .receive(target, &mut response, spool, size, &chunks, observer)
            .await;
        if let Err(e) = &received {
            let _ = chunks.send(Err(e.to_string())).await;
        }
        drop(chunks);
        let stored = store.await;
        let outcome = match (received, stored) {
            (Err(ProxyError::Storage(m)), Ok(Err(e))) if m == WRITER_STOPPED => {
                Err(storage_err(&e))
            }
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(storage_err(&e)),
            (Ok(_), Ok(Err(e))) => Err(storage_err(&e)),
            (Ok(written), Ok(Ok(_))) => match self.storage.finish_upload(&local, &id, digest).await
            {
                Ok(_) => Ok(written),
                Err(UploadError::DigestMismatch { computed }) => Err(ProxyError::DigestMismatch {
                    upstream: target.upstream.client.url.clone(),
                    expected: digest.to_string(),
                    computed: computed.to_string(),
                }),
                Err(e) => Err(storage_err(&e)),
            },
        };
        if outcome.is_err() {
            let _ = self.storage.cancel_upload(&local, &id).await;
        }
        outcome
    }

    async fn receive(
        &self,
        target: &Target,
        response: &mut reqwest::Response,
        spool: &mut SpoolWriter<ProxyError>,
        size: Option<u64>,
        chunks: &tokio::sync::mpsc::Sender<Result<Bytes, String>>,
        observer: &dyn FetchObserver,
    ) -> Result<u64, ProxyError> {
        let upstream = || target.upstream.client.url.clone();
        let spool_err = |e: std::io::Error| ProxyError::Storage(format!("spool file: {e}"));
        let mut written = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(ProxyError::Unreachable {
                        upstream: upstream(),
                        reason: format!("blob body: {e}"),
                    })
                }
            };
            written += chunk.len() as u64;
            if size.is_some_and(|s| written > s) {
                return Err(ProxyError::Unreachable {
                    upstream: upstream(),
                    reason: "sent more bytes than its Content-Length".into(),
                });
            }
            observer.upstream_bytes(chunk.len() as u64);
            spool.append(&chunk).await.map_err(spool_err)?;
            if chunks.send(Ok(chunk)).await.is_err() {
                // The storage writer failed; its own error is reported.
                return Err(ProxyError::Storage(WRITER_STOPPED.into()));
            }
        }
        if size.is_some_and(|s| written != s) {
            return Err(ProxyError::Unreachable {
                upstream: upstream(),
                reason: format!("sent {written} of {} bytes", size.unwrap_or(0)),
            });
        }
        Ok(written)
    }
}
