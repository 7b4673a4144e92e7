//! Quota accounting: how many bytes each quota scope holds, kept current
//! on every write rather than walked per request, shared by every replica
//! and kept across restarts (`quota::ledger` holds the keys).
//!
//! Two kinds of object make a scope's usage:
//! - a *claim* per blob counted in the scope, created only if absent. Of
//!   two pushes of one blob into a namespace (on any replica) exactly one
//!   creates it, so a blob is counted once per scope however many of its
//!   repositories link it;
//! - a *counter* per process: what that process added and removed. Only
//!   its process writes it, so no write races another; the usage is the
//!   sum of the counters. A counter untouched for [`STALE_COUNTER`] (its
//!   process is gone: live ones are rewritten every [`HEARTBEAT`]) is
//!   folded into the counter of the process that runs garbage collection.
//!
//! Bytes of unfinished uploads are *reserved*: each session records in
//! storage how many bytes it holds (`quota_reserve`, rewritten as it
//! grows, removed when it is finished, cancelled or purged), and
//! admission counts the reservations of every other session of the scope
//! with the usage. So upload sessions left open cannot each take the
//! whole room: together they hold at most what the limit leaves. A body
//! of known length is reserved before it is read, and refused if the
//! reservations made meanwhile leave no room for it.
//!
//! Admission reads the usage before a write and refuses it when the write
//! would pass the limit; the claim comes after the write. Writes admitted
//! at the same moment do not see each other, so the limit can be passed
//! by the blobs in flight when it is reached: at most one per upload
//! running at that moment (docs/policies.md states the bound; the quota
//! tests measure it).
//!
//! Removals (garbage collection, repository and blob deletes) reconcile
//! the scope with its links: a claim whose blob no scope repository links
//! any more is removed and its size subtracted, then the links are read
//! again, so a push that linked the blob meanwhile gets its claim back.

pub mod ledger;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::oci::{Digest, RepoName};
use crate::quota::rules::{Limit, Quotas, ScopeKey};
use crate::storage::{Storage, StorageError};

/// How often a live process rewrites its counters (so they do not look
/// abandoned).
pub const HEARTBEAT: Duration = Duration::from_secs(600);
/// A counter not written for this long belongs to a process that is gone.
pub const STALE_COUNTER: Duration = Duration::from_secs(3600);

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("quota exceeded: {scope} holds {used} bytes of {limit} allowed by {rule} ({reserved} of them by unfinished uploads); this upload adds {adding} bytes")]
    Bytes {
        rule: String,
        scope: ScopeKey,
        /// Stored and reserved by unfinished uploads.
        used: u64,
        reserved: u64,
        limit: u64,
        adding: u64,
    },
    #[error("quota exceeded: {scope} holds {count} repositories of {limit} allowed by {rule}; no new repository can be created there")]
    Repositories {
        rule: String,
        scope: ScopeKey,
        count: u64,
        limit: u64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QuotaError {
    /// The rule, used and limit, for the error body's `detail`.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            QuotaError::Bytes {
                rule,
                scope,
                used,
                reserved,
                limit,
                adding,
            } => serde_json::json!({
                "rule": rule, "scope": scope.to_string(),
                "used": used, "reserved": reserved, "limit": limit, "adding": adding,
            }),
            QuotaError::Repositories {
                rule,
                scope,
                count,
                limit,
            } => serde_json::json!({
                "rule": rule, "scope": scope.to_string(),
                "repositories": count, "limit": limit,
            }),
            QuotaError::Storage(_) => serde_json::Value::Null,
        }
    }
}

/// One scope's figures, as `registry usage` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Bytes of the distinct blobs the scope's repositories link (the
    /// truth, from a listing).
    pub linked: u64,
    /// Bytes of the blobs claimed (counted).
    pub claimed: u64,
    /// The sum of the counters: what admission reads.
    pub used: i64,
    /// Linked but not claimed (a write that crashed after linking, or one
    /// made before the rule existed).
    pub unclaimed: Vec<(Digest, u64)>,
    /// Claimed but linked by no repository of the scope any more.
    pub stale: Vec<(Digest, u64)>,
}

impl Reconciled {
    pub fn drift(&self) -> i64 {
        self.used - self.linked as i64
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    rule: String,
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Default)]
struct QuotaMetrics {
    used: Family<ScopeLabels, Gauge>,
    limit: Family<ScopeLabels, Gauge>,
    refused: Family<RuleLabel, Counter>,
}

/// This process's part of the accounting.
pub struct Ledger {
    storage: Storage,
    process: String,
    /// This process's counter per scope; the lock is held across the
    /// counter's write, so writes of one counter never overtake each other.
    own: Mutex<HashMap<ScopeKey, Arc<tokio::sync::Mutex<i64>>>>,
    /// Scopes known to have been counted from their links once.
    ready: Mutex<HashSet<ScopeKey>>,
    metrics: QuotaMetrics,
}

impl Ledger {
    pub fn new(storage: Storage) -> Ledger {
        Ledger {
            storage,
            process: format!(
                "{}-{}",
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
                uuid::Uuid::new_v4().simple()
            ),
            own: Mutex::default(),
            ready: Mutex::default(),
            metrics: QuotaMetrics::default(),
        }
    }

    /// The metrics (`registry_quota_*`), for the metrics listener.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "registry_quota_used_bytes",
            "Bytes a quota scope holds (each blob once), as last read",
            self.metrics.used.clone(),
        );
        r.register(
            "registry_quota_limit_bytes",
            "The byte limit of a quota scope",
            self.metrics.limit.clone(),
        );
        r.register(
            "registry_quota_refusals",
            "Writes refused because they would pass a quota",
            self.metrics.refused.clone(),
        );
        r
    }

    fn own_counter(&self, scope: &ScopeKey) -> Arc<tokio::sync::Mutex<i64>> {
        self.own
            .lock()
            .expect("quota counters")
            .entry(scope.clone())
            .or_default()
            .clone()
    }

    fn observe(&self, limit: &Limit, used: u64) {
        let labels = ScopeLabels {
            rule: limit.rule.clone(),
            scope: limit.scope.to_string(),
        };
        self.metrics.used.get_or_create(&labels).set(used as i64);
        if let Some(max) = limit.max_bytes {
            self.metrics.limit.get_or_create(&labels).set(max as i64);
        }
    }

    /// What `scope` holds: every process's counter (this one's from
    /// memory, which is never behind its stored copy).
    pub async fn used(&self, scope: &ScopeKey) -> Result<u64, StorageError> {
        let own = *self.own_counter(scope).lock().await;
        let others: i64 = self
            .storage
            .quota_counters(scope)
            .await?
            .iter()
            .filter(|c| c.process != self.process)
            .map(|c| c.bytes)
            .sum();
        Ok((own + others).max(0) as u64)
    }

    /// The bytes unfinished uploads of `scope` hold, but `except`'s (the
    /// upload being admitted, whose own bytes the caller counts).
    pub async fn reserved(
        &self,
        scope: &ScopeKey,
        except: Option<&str>,
    ) -> Result<u64, StorageError> {
        Ok(self
            .storage
            .quota_reservations(scope)
            .await?
            .iter()
            .filter(|r| except != Some(r.upload.as_str()))
            .map(|r| r.bytes)
            .sum())
    }

    /// Records that `upload` of `repository` holds `bytes`, when a byte
    /// limit applies to it.
    pub async fn reserve(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
        upload: &str,
        bytes: u64,
    ) -> Result<(), StorageError> {
        if quotas.counted_scopes(repository.as_str()).is_empty() {
            return Ok(());
        }
        self.storage.quota_reserve(repository, upload, bytes).await
    }

    /// Takes back a reservation of `bytes` that `reserve` made.
    pub async fn unreserve(
        &self,
        repository: &RepoName,
        upload: &str,
        bytes: u64,
    ) -> Result<(), StorageError> {
        self.storage
            .quota_unreserve(repository, upload, bytes)
            .await
    }

    /// Adds `delta` to this process's counter in `scope`.
    async fn add(&self, scope: &ScopeKey, delta: i64) -> Result<(), StorageError> {
        let counter = self.own_counter(scope);
        let mut value = counter.lock().await;
        let next = *value + delta;
        self.storage
            .quota_write_counter(scope, &self.process, next)
            .await?;
        *value = next;
        Ok(())
    }

    /// Counts a scope from its links the first time a rule needs it (a
    /// rule added to a registry that already holds content).
    async fn ensure_ready(&self, scope: &ScopeKey) -> Result<(), StorageError> {
        if self.ready.lock().expect("quota ready").contains(scope) {
            return Ok(());
        }
        if !self.storage.quota_is_ready(scope).await? {
            self.reconcile(scope, true).await?;
            self.storage.quota_mark_ready(scope).await?;
        }
        self.ready
            .lock()
            .expect("quota ready")
            .insert(scope.clone());
        Ok(())
    }

    /// Whether `repository` may receive a blob of `size` bytes: every byte
    /// limit on it leaves room (a blob already counted in a scope adds
    /// nothing there). Without a digest (a chunk of an upload), the bytes
    /// count as new everywhere.
    ///
    /// The reservations of unfinished uploads count as used, but those of
    /// `upload` (the session this write belongs to: its bytes are `size`).
    pub async fn admit(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
        blob: Option<&Digest>,
        size: u64,
        upload: Option<&str>,
    ) -> Result<(), QuotaError> {
        for limit in quotas.limits(repository.as_str()) {
            let Some(max) = limit.max_bytes else {
                continue;
            };
            self.ensure_ready(&limit.scope).await?;
            if let Some(d) = blob {
                if self.storage.quota_counts(&limit.scope, d, size).await? {
                    continue;
                }
            }
            let stored = self.used(&limit.scope).await?;
            self.observe(&limit, stored);
            let reserved = self.reserved(&limit.scope, upload).await?;
            let used = stored.saturating_add(reserved);
            if used.saturating_add(size) > max {
                return Err(self.refused(QuotaError::Bytes {
                    rule: limit.rule,
                    scope: limit.scope,
                    used,
                    reserved,
                    limit: max,
                    adding: size,
                }));
            }
        }
        Ok(())
    }

    /// The most bytes a new blob of `repository` may have (None: no byte
    /// limit applies), for capping an upload whose length is not known.
    /// The reservations of other uploads than `upload` take room.
    pub async fn room(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
        upload: Option<&str>,
    ) -> Result<Option<(u64, Limit, u64)>, StorageError> {
        let mut least: Option<(u64, Limit, u64)> = None;
        for limit in quotas.limits(repository.as_str()) {
            let Some(max) = limit.max_bytes else {
                continue;
            };
            self.ensure_ready(&limit.scope).await?;
            let used = self.used(&limit.scope).await?;
            self.observe(&limit, used);
            let reserved = self.reserved(&limit.scope, upload).await?;
            let room = max.saturating_sub(used.saturating_add(reserved));
            if least.as_ref().is_none_or(|(r, _, _)| room < *r) {
                least = Some((room, limit, reserved));
            }
        }
        Ok(least)
    }

    /// The refusal for an upload that outgrew `room` bytes under `limit`
    /// (where other uploads held `reserved`).
    pub fn outgrown(&self, limit: Limit, room: u64, reserved: u64, adding: u64) -> QuotaError {
        let max = limit.max_bytes.unwrap_or_default();
        self.refused(QuotaError::Bytes {
            rule: limit.rule,
            scope: limit.scope,
            used: max.saturating_sub(room),
            reserved,
            limit: max,
            adding,
        })
    }

    /// Whether a first write into `repository` may create it: every
    /// namespace with a repository limit has room (a repository that
    /// already holds manifests always may).
    pub async fn admit_repository(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
    ) -> Result<(), QuotaError> {
        let limits: Vec<Limit> = quotas
            .limits(repository.as_str())
            .into_iter()
            .filter(|l| l.max_repositories.is_some())
            .collect();
        if limits.is_empty() {
            return Ok(());
        }
        let existing = self
            .storage
            .repositories_under(Some(repository.as_str()))
            .await?;
        if existing.iter().any(|r| r == repository.as_str()) {
            return Ok(());
        }
        for limit in limits {
            let max = limit.max_repositories.unwrap_or(u64::MAX);
            let count = self.storage.scope_repository_count(&limit.scope).await? as u64;
            if count >= max {
                return Err(self.refused(QuotaError::Repositories {
                    rule: limit.rule,
                    scope: limit.scope,
                    count,
                    limit: max,
                }));
            }
        }
        Ok(())
    }

    fn refused(&self, e: QuotaError) -> QuotaError {
        if let QuotaError::Bytes { rule, .. } | QuotaError::Repositories { rule, .. } = &e {
            self.metrics
                .refused
                .get_or_create(&RuleLabel { rule: rule.clone() })
                .inc();
        }
        e
    }

    /// Counts a blob `repository` now links (after the link is written).
    pub async fn record(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
        d: &Digest,
        size: u64,
    ) -> Result<(), StorageError> {
        for scope in quotas.counted_scopes(repository.as_str()) {
            if self.storage.quota_claim(&scope, d, size).await? {
                self.add(&scope, size as i64).await?;
            }
        }
        Ok(())
    }

    /// Brings `scope`'s claims in line with its links (or, without
    /// `apply`, only reports how far they are apart).
    pub async fn reconcile(
        &self,
        scope: &ScopeKey,
        apply: bool,
    ) -> Result<Reconciled, StorageError> {
        let claims = self.storage.quota_blobs(scope).await?;
        let links = self.storage.scope_links(scope).await?;
        let mut sizes = BTreeMap::new();
        for d in &links {
            if let Some(size) = self.storage.blob_size(d).await? {
                sizes.insert(d.clone(), size);
            }
        }
        let mut out = Reconciled {
            linked: sizes.values().sum(),
            claimed: claims.values().sum(),
            used: self.used(scope).await? as i64,
            unclaimed: sizes
                .iter()
                .filter(|(d, _)| !claims.contains_key(*d))
                .map(|(d, s)| (d.clone(), *s))
                .collect(),
            stale: claims
                .iter()
                .filter(|(d, _)| !links.contains(*d))
                .map(|(d, s)| (d.clone(), *s))
                .collect(),
        };
        if !apply {
            return Ok(out);
        }
        for (d, size) in &out.unclaimed {
            if self.storage.quota_claim(scope, d, *size).await? {
                self.add(scope, *size as i64).await?;
            }
        }
        if !out.stale.is_empty() {
            for (d, size) in &out.stale {
                if self.storage.quota_release(scope, d, *size).await? {
                    self.add(scope, -(*size as i64)).await?;
                }
            }
            // A push may have linked one of them since the listing; its
            // claim failed while ours stood, so claim it again for it.
            let links = self.storage.scope_links(scope).await?;
            for (d, size) in &out.stale {
                if links.contains(d) && self.storage.quota_claim(scope, d, *size).await? {
                    self.add(scope, *size as i64).await?;
                }
            }
        }
        out.used = self.used(scope).await? as i64;
        out.claimed = self.storage.quota_blobs(scope).await?.values().sum();
        Ok(out)
    }

    /// Makes the counters sum to the claims (after a process died between
    /// a claim and its counter's write). Only when two readings agree, so
    /// a push between the readings is not taken for drift.
    pub async fn fix_counters(&self, scope: &ScopeKey) -> Result<i64, StorageError> {
        let gap = |claimed: u64, used: u64| claimed as i64 - used as i64;
        let first = gap(
            self.storage.quota_blobs(scope).await?.values().sum(),
            self.used(scope).await?,
        );
        let second = gap(
            self.storage.quota_blobs(scope).await?.values().sum(),
            self.used(scope).await?,
        );
        if first != 0 && first == second {
            self.add(scope, first).await?;
            return Ok(first);
        }
        Ok(0)
    }

    /// Folds the counters of processes that are gone into this one's.
    pub async fn compact(&self, scope: &ScopeKey) -> Result<usize, StorageError> {
        let now = SystemTime::now();
        let mut folded = 0;
        for c in self.storage.quota_counters(scope).await? {
            let age = now.duration_since(c.modified).unwrap_or_default();
            if c.process == self.process || age < STALE_COUNTER {
                continue;
            }
            self.add(scope, c.bytes).await?;
            self.storage.quota_delete_counter(scope, &c.process).await?;
            folded += 1;
        }
        Ok(folded)
    }

    /// Rewrites this process's counters, so other processes see them live.
    pub async fn heartbeat(&self) -> Result<(), StorageError> {
        let counters: Vec<(ScopeKey, Arc<tokio::sync::Mutex<i64>>)> = self
            .own
            .lock()
            .expect("quota counters")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (scope, counter) in counters {
            let value = counter.lock().await;
            self.storage
                .quota_write_counter(&scope, &self.process, *value)
                .await?;
        }
        Ok(())
    }

    /// Every limit of the rules over what the registry holds: the
    /// namespaces and the total, and each existing repository a
    /// per-repository rule matches (or that has been counted before).
    pub async fn all_limits(&self, quotas: &Quotas) -> Result<Vec<Limit>, StorageError> {
        let (mut limits, globs) = quotas.fixed_scopes();
        if !globs.is_empty() {
            let mut names = self.storage.repositories().await?;
            names.extend(self.storage.quota_repository_scopes().await?);
            names.sort();
            names.dedup();
            limits.extend(quotas.repository_limits(&names));
        }
        Ok(limits)
    }

    /// After garbage collection (or a repository or blob delete): every
    /// scope whose blobs may have left is reconciled, and counters of
    /// processes that are gone are folded.
    pub async fn after_removal(&self, limits: &[Limit]) -> Result<(), StorageError> {
        let mut done = HashSet::new();
        for limit in limits {
            if limit.max_bytes.is_none() || !done.insert(limit.scope.clone()) {
                continue;
            }
            let r = self.reconcile(&limit.scope, true).await?;
            self.compact(&limit.scope).await?;
            self.observe(limit, self.used(&limit.scope).await?);
            if !r.stale.is_empty() || !r.unclaimed.is_empty() {
                tracing::info!(
                    target: "audit",
                    rule = %limit.rule, scope = %limit.scope,
                    released = r.stale.len(), claimed = r.unclaimed.len(),
                    used = r.used,
                    "quota usage reconciled"
                );
            }
        }
        Ok(())
    }

    /// The limits on `repository` with what each scope holds, for the tags
    /// listing.
    pub async fn report(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
    ) -> Result<Vec<(Limit, u64)>, StorageError> {
        let mut out = Vec::new();
        for limit in quotas.limits(repository.as_str()) {
            let used = if limit.max_bytes.is_some() {
                self.ensure_ready(&limit.scope).await?;
                let used = self.used(&limit.scope).await?;
                self.observe(&limit, used);
                used
            } else {
                0
            };
            out.push((limit, used));
        }
        Ok(out)
    }
}

impl Ledger {
    /// After a collection: every scope of the rules is reconciled (its
    /// unlinked blobs released) and dead processes' counters folded.
    pub async fn after_gc(&self, quotas: &Quotas) -> Result<(), StorageError> {
        if quotas.is_empty() {
            return Ok(());
        }
        let limits = self.all_limits(quotas).await?;
        self.after_removal(&limits).await
    }

    /// After `repository` lost links (a repository or blob delete).
    pub async fn after_delete(
        &self,
        quotas: &Quotas,
        repository: &RepoName,
    ) -> Result<(), StorageError> {
        self.after_removal(&quotas.limits(repository.as_str()))
            .await
    }

    /// Rewrites this process's counters every [`HEARTBEAT`] until `stop`.
    pub fn spawn_heartbeat(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::periodic::every(
            HEARTBEAT,
            HEARTBEAT,
            stop,
            move || {
                let ledger = self.clone();
                async move {
                    if let Err(e) = ledger.heartbeat().await {
                        tracing::warn!("quota counters not rewritten: {e}");
                    }
                    true
                }
            },
        ))
    }
}

/// `registry usage`: one line per limit, what its scope holds by the links
/// beside the usage quotas are checked against; with `apply`, the claims
/// and the counters are corrected (the line says by how much).
pub async fn usage_report(
    storage: &Storage,
    quotas: &Quotas,
    apply: bool,
) -> Result<Vec<String>, StorageError> {
    let ledger = Ledger::new(storage.clone());
    let mut lines = Vec::new();
    let mut drifted = 0;
    for limit in ledger.all_limits(quotas).await? {
        if let Some(max) = limit.max_repositories {
            let count = storage.scope_repository_count(&limit.scope).await?;
            lines.push(format!(
                "{} {}: {count} repositories, limit {max}",
                limit.rule, limit.scope
            ));
        }
        let Some(max) = limit.max_bytes else {
            continue;
        };
        let before = ledger.reconcile(&limit.scope, false).await?;
        let mut line = format!(
            "{} {}: used {} bytes, linked {} bytes, limit {max}, drift {}",
            limit.rule,
            limit.scope,
            before.used,
            before.linked,
            before.drift()
        );
        if before.drift() != 0 || !before.unclaimed.is_empty() || !before.stale.is_empty() {
            drifted += 1;
            line.push_str(&format!(
                " ({} blobs linked but not counted, {} counted but no longer linked)",
                before.unclaimed.len(),
                before.stale.len()
            ));
        }
        if apply {
            ledger.reconcile(&limit.scope, true).await?;
            ledger.fix_counters(&limit.scope).await?;
            ledger.compact(&limit.scope).await?;
            storage.quota_mark_ready(&limit.scope).await?;
            let after = ledger.reconcile(&limit.scope, false).await?;
            line.push_str(&format!(
                "; now used {}, drift {}",
                after.used,
                after.drift()
            ));
        }
        lines.push(line);
    }
    lines.push(match (drifted, apply) {
        (0, _) => "usage matches the links".to_string(),
        (n, false) => format!("{n} scopes drifted; `registry usage --apply` corrects them"),
        (n, true) => format!("{n} scopes corrected"),
    });
    Ok(lines)
}
