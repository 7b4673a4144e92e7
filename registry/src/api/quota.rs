//! Quotas at the HTTP edge: the checks made before an upload's body is
//! read (POST, PATCH and PUT with a known length, mounts, manifest PUTs),
//! the cap on a body of unknown length, and the refusal: 413 `DENIED`
//! naming the rule, the scope's usage and its limit. The accounting is
//! `crate::quota`'s; none of this runs when no quota rule is configured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use axum::http::header;

use crate::oci::{Digest, RepoName};
use crate::protocol::error::{ApiError, Code};
use crate::quota::rules::Limit;
use crate::quota::QuotaError;
use crate::storage::uploads::UploadId;
use crate::AppState;

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Storage(e) => e.into(),
            e => ApiError::new(Code::Denied, e.to_string())
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .detail(e.detail()),
        }
    }
}

/// The quota rules in force, or None when there are none (then nothing
/// here runs).
fn rules(state: &AppState) -> Option<crate::quota::rules::Quotas> {
    let quotas = state.policies.get().quota.clone();
    (!quotas.is_empty()).then_some(quotas)
}

/// The refusal of a request whose body is not read: the connection closes
/// after the answer (the body may still be on its way).
fn unread(e: QuotaError) -> ApiError {
    ApiError::from(e).close_connection()
}

/// Before a write creates content in `name`: a new repository must fit
/// its namespaces' repository limits, and `adding` bytes (the length of
/// the body about to be read, or 0 when unknown) the byte limits; a blob
/// already counted in a scope (`blob`) adds nothing there.
pub async fn before_write(
    state: &AppState,
    name: &RepoName,
    blob: Option<&Digest>,
    adding: u64,
) -> Result<(), ApiError> {
    let Some(quotas) = rules(state) else {
        return Ok(());
    };
    state
        .quota
        .admit_repository(&quotas, name)
        .await
        .map_err(unread)?;
    // A scope already at its limit takes no new upload, even one whose
    // length is not known yet.
    state
        .quota
        .admit(&quotas, name, blob, adding.max(1), None)
        .await
        .map_err(unread)
}

/// Before a new upload session of `name`: the repository has fewer open
/// than `policies.max_upload_sessions_per_repository` (429 with
/// `Retry-After` otherwise: sessions end when their clients finish or
/// cancel them, or when purged).
pub async fn before_session(state: &AppState, name: &RepoName) -> Result<(), ApiError> {
    let max = state.policies.get().max_upload_sessions;
    if max == 0 {
        return Ok(());
    }
    let open = state.storage.open_upload_sessions(name).await?;
    if open >= max as usize {
        return Err(ApiError::new(
            Code::TooManyRequests,
            format!("{name} has {open} unfinished upload sessions, the most policies.max_upload_sessions_per_repository allows; finish or cancel one, or retry later"),
        )
        .header(header::RETRY_AFTER, "10")
        .detail(serde_json::json!({ "open": open, "limit": max }))
        .close_connection());
    }
    Ok(())
}

/// After upload session `id` of `name` ended (finished or cancelled): its
/// reservation goes.
pub async fn after_session(state: &AppState, name: &RepoName, id: &UploadId) {
    if rules(state).is_none() {
        return;
    }
    if let Err(e) = state.storage.quota_release_upload(name, id.as_str()).await {
        tracing::warn!(repository = %name, upload = %id.as_str(), error = %e, "upload reservation not released (upload purging removes it)");
    }
}

/// Before a manifest (at most 4 MiB, read before its byte check, which
/// needs its digest: a manifest already counted, pushed again by a CI re-run
/// into a full namespace, passes) creates content in `name`: the
/// repository limits only.
pub async fn before_manifest(state: &AppState, name: &RepoName) -> Result<(), ApiError> {
    let Some(quotas) = rules(state) else {
        return Ok(());
    };
    state
        .quota
        .admit_repository(&quotas, name)
        .await
        .map_err(unread)
}

/// Before a blob of `size` bytes becomes part of `name` (an upload's last
/// request, a mount, a manifest).
/// The blob's bytes are those `upload` (if any) reserved.
pub async fn before_link(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    size: u64,
    upload: Option<&UploadId>,
) -> Result<(), ApiError> {
    let Some(quotas) = rules(state) else {
        return Ok(());
    };
    state
        .quota
        .admit(&quotas, name, Some(d), size, upload.map(UploadId::as_str))
        .await
        .map_err(ApiError::from)
}

/// After the blob was linked: counted in its scopes.
pub async fn after_link(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    size: u64,
) -> Result<(), ApiError> {
    let Some(quotas) = rules(state) else {
        return Ok(());
    };
    Ok(state.quota.record(&quotas, name, d, size).await?)
}

/// After `name` lost links (a blob or repository delete).
pub async fn after_delete(state: &AppState, name: &RepoName) {
    let Some(quotas) = rules(state) else {
        return;
    };
    if let Err(e) = state.quota.after_delete(&quotas, name).await {
        tracing::warn!(repository = %name, error = %e, "quota usage not reconciled after a delete (the next gc does it)");
    }
}

/// What an append to an upload session may add: the upload may grow to
/// `room` bytes in all (it holds `offset` already; the reservations of
/// other sessions are not room). A body of known length is reserved
/// before it is read (`reserve`); the session's size is reserved after
/// each append (`settle`).
pub struct Cap {
    ledger: Arc<crate::quota::Ledger>,
    quotas: crate::quota::rules::Quotas,
    name: RepoName,
    upload: UploadId,
    limit: Limit,
    room: u64,
    reserved: u64,
    offset: u64,
    /// The upload's size when the body was cut (0: not cut).
    cut_at: Arc<AtomicU64>,
}

impl Cap {
    pub async fn for_upload(
        state: &AppState,
        name: &RepoName,
        upload: &UploadId,
        offset: u64,
    ) -> Result<Option<Cap>, ApiError> {
        let Some(quotas) = rules(state) else {
            return Ok(None);
        };
        let Some((room, limit, reserved)) = state
            .quota
            .room(&quotas, name, Some(upload.as_str()))
            .await?
        else {
            return Ok(None);
        };
        let cap = Cap {
            ledger: state.quota.clone(),
            quotas,
            name: name.clone(),
            upload: upload.clone(),
            limit,
            room,
            reserved,
            offset,
            cut_at: Arc::default(),
        };
        if offset >= room {
            return Err(cap.refusal(offset));
        }
        Ok(Some(cap))
    }

    /// Whether an upload of `total` bytes fits.
    pub fn check(&self, total: u64) -> Result<(), ApiError> {
        if total > self.room {
            return Err(self.refusal(total));
        }
        Ok(())
    }

    /// Reserves `total` bytes for the session before a body of known
    /// length is read, then checks again: of sessions reserving at the
    /// same moment none passes the limit (each sees the others' records,
    /// or they all give way).
    pub async fn reserve(&self, total: u64) -> Result<(), ApiError> {
        self.check(total)?;
        self.ledger
            .reserve(&self.quotas, &self.name, self.upload.as_str(), total)
            .await?;
        let again = self
            .ledger
            .room(&self.quotas, &self.name, Some(self.upload.as_str()))
            .await;
        match again {
            Ok(Some((room, limit, reserved))) if total > room => {
                self.unreserve(total).await;
                Err(unread(self.ledger.outgrown(limit, room, reserved, total)))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                self.unreserve(total).await;
                Err(e.into())
            }
        }
    }

    /// Back to the reservation of the bytes the session held.
    async fn unreserve(&self, total: u64) {
        if total > self.offset {
            let name = &self.name;
            let id = self.upload.as_str();
            let back = async {
                self.ledger
                    .reserve(&self.quotas, name, id, self.offset)
                    .await?;
                self.ledger.unreserve(name, id, total).await
            };
            if let Err(e) = back.await {
                tracing::warn!(repository = %name, upload = id, error = %e, "upload reservation not taken back (upload purging removes it)");
            }
        }
    }

    /// Records the size the session has after an append.
    pub async fn settle(&self, size: u64) -> Result<(), ApiError> {
        Ok(self
            .ledger
            .reserve(&self.quotas, &self.name, self.upload.as_str(), size)
            .await?)
    }

    /// The body, ending in an error once the upload would outgrow the room.
    pub fn wrap<S, E>(
        &self,
        body: S,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let allowed = self.room.saturating_sub(self.offset);
        let offset = self.offset;
        let cut_at = self.cut_at.clone();
        let mut seen = 0u64;
        body.map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            seen += chunk.len() as u64;
            if seen > allowed {
                cut_at.store(offset + seen, Ordering::Relaxed);
                return Err(std::io::Error::other("the upload outgrew its quota"));
            }
            Ok(chunk)
        })
    }

    /// The refusal, when the body was cut at the cap (so the append's
    /// error is the quota's): the upload had grown to at least that size.
    pub fn cut(&self) -> Option<ApiError> {
        match self.cut_at.load(Ordering::Relaxed) {
            0 => None,
            size => Some(self.refusal(size)),
        }
    }

    pub fn refusal(&self, total: u64) -> ApiError {
        unread(
            self.ledger
                .outgrown(self.limit.clone(), self.room, self.reserved, total),
        )
    }
}
