//! One upstream fetch per blob, however many clients ask: the first request
//! for a cold blob starts a fetch on its own task; it writes what arrives to
//! a spool file (and, at the same time, into an upload session in storage)
//! and publishes the length written on a watch channel. Every client, the
//! first one included, streams from the spool file as it grows, so memory
//! stays bounded whatever the number of clients, and the first byte reaches
//! all of them while the blob is still arriving.
//!
//! The digest is verified (by the upload's own hash, `finish_upload`) before
//! the blob becomes visible in storage, and the last byte of every response
//! is held back until then: a blob with the wrong digest is never cached and
//! every client's response is aborted, never cleanly truncated. A process
//! that stops mid-fetch leaves an upload session (purged as any other) and
//! no blob.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{ProxyError, Target};
use crate::oci::Digest;
use crate::storage::{Storage, UploadError};

/// Pieces each client reads from the spool file.
const READ_PIECE: u64 = 256 * 1024;
const WRITER_STOPPED: &str = "the storage writer stopped";
/// Pieces queued between the upstream and the storage writer.
const STORE_QUEUE: usize = 4;

#[derive(Clone, Debug)]
pub enum FetchState {
    /// Waiting for the upstream's response headers.
    Starting,
    Streaming {
        size: Option<u64>,
        written: u64,
    },
    /// Verified and cached.
    Done {
        size: u64,
    },
    Failed(ProxyError),
}

pub struct Inflight {
    state: watch::Receiver<FetchState>,
    spool: PathBuf,
    abort: OnceLock<AbortHandle>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        // The last reader is gone: the content is in storage (or was bad).
        let _ = std::fs::remove_file(&self.spool);
    }
}

impl Inflight {
    /// The blob's size once the upstream answered (None: it sent no
    /// Content-Length), or the upstream's refusal.
    pub async fn started(&self) -> Result<Option<u64>, ProxyError> {
        let mut rx = self.state.clone();
        let state = match rx.wait_for(|s| !matches!(s, FetchState::Starting)).await {
            Ok(s) => s.clone(),
            Err(_) => return Err(abandoned()),
        };
        match state {
            FetchState::Streaming { size, .. } => Ok(size),
            FetchState::Done { size } => Ok(Some(size)),
            FetchState::Failed(e) => Err(e),
            FetchState::Starting => unreachable!("waited for another state"),
        }
    }

    /// Bytes `start..end` (end exclusive; None: to the end) as they arrive.
    pub fn reader(
        self: Arc<Self>,
        start: u64,
        end: Option<u64>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let reader = Reader {
            rx: self.state.clone(),
            inflight: self,
            pos: start,
            end,
            file: None,
        };
        futures::stream::unfold(Some(reader), |r| async move {
            let mut r = r?;
            loop {
                let state = r.rx.borrow_and_update().clone();
                let (available, finished) = match state {
                    FetchState::Starting => (0, false),
                    // The response's last byte waits for the verdict.
                    FetchState::Streaming { size, written } => match r.end.or(size) {
                        Some(last) => (written.min(last.saturating_sub(1)), false),
                        None => (written.saturating_sub(1), false),
                    },
                    FetchState::Done { size } => (r.end.map_or(size, |e| e.min(size)), true),
                    FetchState::Failed(e) => {
                        return Some((Err(std::io::Error::other(e.to_string())), None))
                    }
                };
                if r.pos < available {
                    return match r.read(available).await {
                        Ok(bytes) => Some((Ok(bytes), Some(r))),
                        Err(e) => Some((Err(e), None)),
                    };
                }
                if finished {
                    return None;
                }
                if r.rx.changed().await.is_err()
                    && !matches!(*r.rx.borrow(), FetchState::Done { .. })
                {
                    return Some((Err(std::io::Error::other(abandoned().to_string())), None));
                }
            }
        })
    }
}

struct Reader {
    inflight: Arc<Inflight>,
    rx: watch::Receiver<FetchState>,
    pos: u64,
    end: Option<u64>,
    file: Option<tokio::fs::File>,
}

impl Reader {
    async fn read(&mut self, available: u64) -> std::io::Result<Bytes> {
        if self.file.is_none() {
            let mut f = tokio::fs::File::open(&self.inflight.spool).await?;
            f.seek(SeekFrom::Start(self.pos)).await?;
            self.file = Some(f);
        }
        let file = self.file.as_mut().expect("opened above");
        let n = (available - self.pos).min(READ_PIECE) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact(&mut buf).await?;
        self.pos += n as u64;
        Ok(Bytes::from(buf))
    }
}

fn abandoned() -> ProxyError {
    ProxyError::Unreachable {
        upstream: "(this registry)".into(),
        reason: "the fetch was abandoned (shutting down)".into(),
    }
}

/// The fetches in progress, by digest.
pub struct Fetches {
    inflight: Mutex<HashMap<Digest, Arc<Inflight>>>,
    spool_dir: PathBuf,
    storage: Storage,
}

/// What a fetch reports to the metrics as it goes.
pub trait FetchObserver: Send + Sync + 'static {
    fn upstream_bytes(&self, n: u64);
    fn upstream_error(&self);
}

impl Fetches {
    pub fn new(storage: Storage, spool_dir: PathBuf) -> Fetches {
        Fetches {
            inflight: Mutex::default(),
            spool_dir,
            storage,
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
        let (tx, rx) = watch::channel(FetchState::Starting);
        let spool = self.spool_dir.join(format!(
            "{}-{}",
            digest.hex(),
            uuid::Uuid::new_v4().simple()
        ));
        let inflight = Arc::new(Inflight {
            state: rx,
            spool: spool.clone(),
            abort: OnceLock::new(),
        });
        map.insert(digest.clone(), inflight.clone());
        let fetches = self.clone();
        let target = target.clone();
        let digest = digest.clone();
        let task = tokio::spawn(async move {
            let result = fetches
                .fetch(&target, &digest, &spool, &tx, observer.as_ref())
                .await;
            match result {
                Ok(size) => {
                    tx.send_replace(FetchState::Done { size });
                }
                Err(e) => {
                    if !matches!(e, ProxyError::NotFound { .. }) {
                        observer.upstream_error();
                    }
                    tracing::warn!(upstream = %target.upstream.client.url, repository = %target.remote, digest = %digest, error = %e, "proxy: blob fetch failed");
                    tx.send_replace(FetchState::Failed(e));
                }
            }
            fetches.inflight.lock().unwrap().remove(&digest);
        });
        let _ = inflight.abort.set(task.abort_handle());
        (inflight, false)
    }

    /// Stops every fetch (the server is stopping): their clients' responses
    /// fail, nothing becomes visible.
    pub fn abort_all(&self) {
        let map = std::mem::take(&mut *self.inflight.lock().unwrap());
        for f in map.values() {
            if let Some(a) = f.abort.get() {
                a.abort();
            }
        }
    }

    async fn fetch(
        &self,
        target: &Target,
        digest: &Digest,
        spool: &std::path::Path,
        tx: &watch::Sender<FetchState>,
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
        let mut file = tokio::fs::File::create(spool)
            .await
            .map_err(|e| storage_err(&format!("spool file {}: {e}", spool.display())))?;
        let local = target.local.clone();
        let id = self
            .storage
            .start_upload(&local)
            .await
            .map_err(|e| storage_err(&e))?;
        tx.send_replace(FetchState::Streaming { size, written: 0 });

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
            .receive(
                target,
                &mut response,
                &mut file,
                size,
                tx,
                &chunks,
                observer,
            )
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

    #[allow(clippy::too_many_arguments)]
    async fn receive(
        &self,
        target: &Target,
        response: &mut reqwest::Response,
        file: &mut tokio::fs::File,
        size: Option<u64>,
        tx: &watch::Sender<FetchState>,
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
            file.write_all(&chunk).await.map_err(spool_err)?;
            // Readers open the file themselves: what they are told is
            // there must have reached the kernel.
            file.flush().await.map_err(spool_err)?;
            tx.send_modify(|s| {
                if let FetchState::Streaming { written: w, .. } = s {
                    *w = written;
                }
            });
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
