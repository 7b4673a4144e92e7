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

use super::error::{ApiError, Code};
use crate::oci::{Digest, RepoName};
use crate::policy::quota::Limit;
use crate::quota::QuotaError;
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
fn rules(state: &AppState) -> Option<crate::policy::quota::Quotas> {
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
        .admit(&quotas, name, blob, adding.max(1))
        .await
        .map_err(unread)
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
pub async fn before_link(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    size: u64,
) -> Result<(), ApiError> {
    let Some(quotas) = rules(state) else {
        return Ok(());
    };
    state
        .quota
        .admit(&quotas, name, Some(d), size)
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

/// A cap on an upload body whose length is not known: the upload may grow
/// to `room` bytes in all (it holds `offset` already).
pub struct Cap {
    ledger: Arc<crate::quota::Ledger>,
    limit: Limit,
    room: u64,
    offset: u64,
    /// The upload's size when the body was cut (0: not cut).
    cut_at: Arc<AtomicU64>,
}

impl Cap {
    pub async fn for_upload(
        state: &AppState,
        name: &RepoName,
        offset: u64,
    ) -> Result<Option<Cap>, ApiError> {
        let Some(quotas) = rules(state) else {
            return Ok(None);
        };
        let Some((room, limit)) = state.quota.room(&quotas, name).await? else {
            return Ok(None);
        };
        let cap = Cap {
            ledger: state.quota.clone(),
            limit,
            room,
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
        unread(self.ledger.outgrown(self.limit.clone(), self.room, total))
    }
}
