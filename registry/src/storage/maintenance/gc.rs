//! Garbage collection: mark what tags (or, by default, any manifest in a
//! repository) reach, sweep the rest. Safe while the registry serves:
//!
//! * a grace window keeps blobs, links and manifests written recently (a push
//!   in progress has uploaded blobs its manifest does not reference yet);
//! * upload sessions (`_uploads`) are never touched, except that sessions
//!   older than the purge age are removed (registry:2's upload purging);
//! * what the collector is about to remove is announced first and the store
//!   is listed again before anything goes, and manifest pushes check the
//!   announcement after they became visible (`storage::gc_guard` has the
//!   protocol), so a push racing with a run either is seen and kept or is
//!   refused; it is never acknowledged with missing content;
//! * one run at a time, across processes and replicas (a lock in storage).
//!
//! Reachability. Roots are every manifest in a repository (default) or,
//! with `delete_untagged`, the manifests tags point at plus manifests newer
//! than the grace window. From a manifest: its config and layers, the child
//! manifests of an index, and the referrers (manifests whose `subject` is
//! it). Blobs are shared between repositories and kept while anything
//! reaches them anywhere; a repository's `_layers` link is kept while that
//! repository reaches the blob. Everything goes through `object_store`, so
//! this works on every backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;

use crate::oci::references::{references, Refs};
use crate::oci::{Digest, RepoName};
use crate::storage::gc_guard::{GcLock, Pending};
use crate::storage::walk::{RepoKey, RepoObject};
use crate::storage::{layout, Storage, StorageError};

/// A lock not refreshed for this long belongs to a collector that died.
const LOCK_STALE_AFTER: Duration = Duration::from_secs(10 * 60);
const LOCK_REFRESH_EVERY: Duration = Duration::from_secs(60);
/// Manifests read at once while marking.
const READ_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Options {
    /// Only report what would be removed.
    pub dry_run: bool,
    /// Also remove manifests no tag reaches.
    pub delete_untagged: bool,
    /// Keep anything written more recently than this.
    pub grace: Duration,
    /// Remove upload sessions started longer ago than this.
    pub upload_max_age: Option<Duration>,
    /// Per-repository windows for untagged manifests, from the retention
    /// rules (`delete_untagged_after`, rules that are no dry run), in file
    /// order: the first glob matching a repository decides; a rule without
    /// a window leaves the repository to `delete_untagged`.
    pub untagged_after: Vec<(String, Option<Duration>)>,
}

impl Options {
    /// How long an untagged manifest of `repo` stays, if it goes at all:
    /// its retention rule's window (never shorter than `grace`), else
    /// `grace` with `delete_untagged`.
    pub fn untagged_window(&self, repo: &str) -> Option<Duration> {
        let rule = self
            .untagged_after
            .iter()
            .find(|(glob, _)| crate::glob::glob_match(glob.as_bytes(), repo.as_bytes()));
        match rule {
            Some((_, Some(window))) => Some((*window).max(self.grace)),
            _ => self.delete_untagged.then_some(self.grace),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub dry_run: bool,
    pub repositories: usize,
    /// Manifests (per repository) and blobs in use after the run.
    pub manifests_in_use: usize,
    pub blobs_in_use: usize,
    pub deleted_blobs: Vec<(Digest, u64)>,
    pub deleted_manifests: Vec<(RepoName, Digest)>,
    /// Repository links removed: `_layers`, tag history, referrers (the
    /// revision links of deleted manifests are counted there).
    pub removed_links: Vec<String>,
    pub purged_uploads: Vec<(RepoName, String)>,
    /// Removal candidates kept because a push reached them during the run.
    pub rescued: usize,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn bytes_freed(&self) -> u64 {
        self.deleted_blobs.iter().map(|(_, n)| n).sum()
    }

    /// One line per removed (or, in a dry run, removable) thing.
    pub fn details(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut out = Vec::new();
        for (d, size) in &self.deleted_blobs {
            out.push(format!("{verb} blob {d} ({size} bytes)"));
        }
        for (repo, d) in &self.deleted_manifests {
            out.push(format!("{verb} manifest {repo}@{d}"));
        }
        for key in &self.removed_links {
            out.push(format!("{verb} link {key}"));
        }
        for (repo, id) in &self.purged_uploads {
            out.push(format!("{verb} upload session {repo} {id}"));
        }
        for w in &self.warnings {
            out.push(format!("warning: {w}"));
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        write!(
            f,
            "gc: {} repositories, {} manifests and {} blobs in use; {verb} {} blobs ({} bytes), {} manifests, {} links, {} upload sessions; {} rescued from concurrent pushes",
            self.repositories,
            self.manifests_in_use,
            self.blobs_in_use,
            self.deleted_blobs.len(),
            self.bytes_freed(),
            self.deleted_manifests.len(),
            self.removed_links.len(),
            self.purged_uploads.len(),
            self.rescued,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("another garbage collection is running (started {started} by {owner})")]
    Locked { owner: String, started: String },
    #[error(
        "manifest {repo}@{digest} is not JSON ({reason}), so what it references is unknown; \
         nothing was removed. `registry scrub` lists it; delete or re-push it"
    )]
    Unreadable {
        repo: RepoName,
        digest: Digest,
        reason: String,
    },
    #[error(
        "{0}: not in a repository whose name this registry understands, so what it \
         references is unknown; nothing was removed"
    )]
    UnknownRepository(String),
    #[error("stopped (shutdown) before anything was removed")]
    Stopped,
}

/// One repository as the listing showed it.
#[derive(Default)]
struct RepoState {
    revisions: HashMap<Digest, SystemTime>,
    tags: Vec<(String, Path)>,
    tag_index: Vec<(Digest, Path, SystemTime)>,
    layers: HashMap<Digest, (Path, SystemTime)>,
    referrer_links: Vec<(Digest, Digest, Path, SystemTime)>,
    uploads: BTreeMap<String, UploadSession>,
    /// subject → manifests in this repository whose subject it is.
    referrers_of: HashMap<Digest, Vec<Digest>>,
    /// Manifests kept, and every digest the kept manifests reference here.
    kept: HashSet<Digest>,
    used: HashSet<Digest>,
}

#[derive(Default)]
struct UploadSession {
    startedat: Option<Path>,
    newest: Option<SystemTime>,
}

struct Run<'a> {
    storage: &'a Storage,
    options: &'a Options,
    now: SystemTime,
    repos: BTreeMap<RepoName, RepoState>,
    /// Parsed manifests by digest; None when the content is missing.
    manifests: HashMap<Digest, Option<Refs>>,
    live: HashSet<Digest>,
    lock: Option<GcLock>,
    refreshed: Instant,
    report: Report,
}

/// Runs one collection. With a `stop` signal, a run stops (removing
/// nothing) when it is set before the removal phase began.
pub async fn run(
    storage: &Storage,
    options: &Options,
    stop: Option<CancellationToken>,
) -> Result<Report, GcError> {
    let lock = if options.dry_run {
        None
    } else {
        let owner = format!(
            "registry pid {} on {}",
            std::process::id(),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "an unnamed host".into())
        );
        match storage.gc_lock(&owner, LOCK_STALE_AFTER).await? {
            Ok(lock) => Some(lock),
            Err(holder) => {
                return Err(GcError::Locked {
                    owner: holder.owner,
                    started: holder.started,
                })
            }
        }
    };
    let mut run = Run {
        storage,
        options,
        now: SystemTime::now(),
        repos: BTreeMap::new(),
        manifests: HashMap::new(),
        live: HashSet::new(),
        lock,
        refreshed: Instant::now(),
        report: Report {
            dry_run: options.dry_run,
            ..Report::default()
        },
    };
    let result = run.execute(stop).await;
    // Whatever happened: no marker may outlive the run, and the lock goes.
    if let Some(lock) = run.lock.take() {
        let cleared = storage.gc_clear_all_pending().await;
        let unlocked = storage.gc_unlock(lock).await;
        if result.is_ok() {
            cleared?;
            unlocked?;
        }
    }
    result.map(|()| run.report)
}

fn stopped(stop: &Option<CancellationToken>) -> bool {
    stop.as_ref().is_some_and(|s| s.is_cancelled())
}

impl Run<'_> {
    fn old(&self, t: SystemTime) -> bool {
        self.older_than(t, self.options.grace)
    }

    fn older_than(&self, t: SystemTime, window: Duration) -> bool {
        // A time in the future (clock skew) is not old.
        self.now.duration_since(t).is_ok_and(|age| age >= window)
    }

    async fn heartbeat(&mut self) -> Result<(), GcError> {
        if let Some(lock) = &self.lock {
            if self.refreshed.elapsed() >= LOCK_REFRESH_EVERY {
                self.storage.gc_lock_refresh(lock).await?;
                self.refreshed = Instant::now();
            }
        }
        Ok(())
    }

    async fn execute(&mut self, stop: Option<CancellationToken>) -> Result<(), GcError> {
        if self.lock.is_some() {
            // Markers of a collector that died; we hold the lock now.
            self.storage.gc_clear_all_pending().await?;
        }
        let listing = self.storage.walk_repositories().await?;
        if let Some(key) = listing.unnamed.first() {
            return Err(GcError::UnknownRepository(key.to_string()));
        }
        let first = listing.objects;
        let seen: HashMap<Path, SystemTime> =
            first.iter().map(|o| (o.key.clone(), o.modified)).collect();
        for o in first {
            self.add_object(o);
        }
        let blobs = self.storage.walk_blobs().await?;

        // ----- mark -----
        let names: Vec<RepoName> = self.repos.keys().cloned().collect();
        for name in &names {
            if stopped(&stop) {
                return Err(GcError::Stopped);
            }
            self.heartbeat().await?;
            self.mark_repository(name).await?;
        }
        for b in &blobs.blobs {
            if !self.old(b.modified) {
                self.live.insert(b.digest.clone());
            }
        }

        // ----- candidates -----
        let mut plan = self.plan(&blobs.blobs);
        if let Some(max_age) = self.options.upload_max_age {
            self.report.purged_uploads = self.stale_uploads(max_age).await?;
        }
        if self.options.dry_run {
            self.finish_report(&plan);
            return Ok(());
        }
        if stopped(&stop) {
            return Err(GcError::Stopped);
        }

        // ----- announce, look again, rescue -----
        let pending = plan.pending();
        self.storage.gc_mark_pending(&pending).await?;
        self.heartbeat().await?;
        let second = self.storage.walk_repositories().await?.objects;
        let mut roots: Vec<(RepoName, Digest)> = Vec::new();
        for o in second {
            if seen.get(&o.key) == Some(&o.modified) {
                continue;
            }
            match &o.kind {
                RepoKey::Revision(d) => roots.push((o.repo.clone(), d.clone())),
                RepoKey::Referrer { referrer, .. } => {
                    roots.push((o.repo.clone(), referrer.clone()))
                }
                RepoKey::TagCurrent(_) => {
                    if let Some(d) = self.storage.read_link_key(&o.key).await? {
                        roots.push((o.repo.clone(), d));
                    }
                }
                RepoKey::Layer(d) => {
                    let state = self.repos.entry(o.repo.clone()).or_default();
                    state.used.insert(d.clone());
                    self.live.insert(d.clone());
                }
                _ => {}
            }
        }
        for (repo, d) in roots {
            self.repos.entry(repo.clone()).or_default();
            self.mark_from(&repo, vec![d]).await?;
        }
        let before = plan.len();
        plan.retain(&self.repos, &self.live);
        self.report.rescued = before - plan.len();
        let still = plan.pending();
        let rescued: Vec<Pending> = pending.into_iter().filter(|d| !still.contains(d)).collect();
        self.storage.gc_clear_pending(&rescued).await?;

        // ----- sweep: links first, then content -----
        self.heartbeat().await?;
        let mut links: Vec<Path> = plan.links.iter().map(|(_, _, k)| k.clone()).collect();
        links.extend(
            plan.manifests
                .iter()
                .map(|(r, d)| layout::revision_link(r, d)),
        );
        self.storage.delete_keys(links).await?;
        self.heartbeat().await?;
        let data: Vec<Path> = plan
            .blobs
            .iter()
            .map(|(d, _)| layout::blob_data(d))
            .collect();
        self.storage.delete_keys(data).await?;
        for (repo, id) in &self.report.purged_uploads {
            self.storage
                .delete_tree(&layout::upload_dir(repo, id))
                .await?;
            self.storage.quota_release_upload(repo, id).await?;
        }
        self.finish_report(&plan);
        Ok(())
    }

    fn add_object(&mut self, o: RepoObject) {
        let state = self.repos.entry(o.repo).or_default();
        match o.kind {
            RepoKey::Revision(d) => {
                state.revisions.insert(d, o.modified);
            }
            RepoKey::TagCurrent(tag) => state.tags.push((tag, o.key)),
            RepoKey::TagIndex(_, d) => state.tag_index.push((d, o.key, o.modified)),
            RepoKey::Layer(d) => {
                state.layers.insert(d, (o.key, o.modified));
            }
            RepoKey::Referrer { subject, referrer } => state
                .referrer_links
                .push((subject, referrer, o.key, o.modified)),
            RepoKey::Upload { id, startedat } => {
                let s = state.uploads.entry(id).or_default();
                if startedat {
                    s.startedat = Some(o.key);
                }
                s.newest = s.newest.max(Some(o.modified));
            }
            RepoKey::Other => {}
        }
    }

    /// Reads (once) and parses a manifest; None when its content is gone.
    async fn refs(&mut self, repo: &RepoName, d: &Digest) -> Result<Option<Refs>, GcError> {
        if let Some(r) = self.manifests.get(d) {
            return Ok(r.clone());
        }
        let parsed = match self.storage.read_blob(d).await? {
            None => None,
            Some(body) => Some(references(&body).map_err(|reason| GcError::Unreadable {
                repo: repo.clone(),
                digest: d.clone(),
                reason,
            })?),
        };
        self.manifests.insert(d.clone(), parsed.clone());
        Ok(parsed)
    }

    async fn prefetch(&mut self, repo: &RepoName, digests: Vec<Digest>) -> Result<(), GcError> {
        let todo: Vec<Digest> = digests
            .into_iter()
            .filter(|d| !self.manifests.contains_key(d))
            .collect();
        let storage = self.storage.clone();
        let mut reads = futures::stream::iter(todo.into_iter().map(move |d| {
            let storage = storage.clone();
            async move {
                let body = storage.read_blob(&d).await;
                (d, body)
            }
        }))
        .buffer_unordered(READ_CONCURRENCY);
        while let Some((d, body)) = reads.next().await {
            let parsed = match body? {
                None => None,
                Some(body) => Some(references(&body).map_err(|reason| GcError::Unreadable {
                    repo: repo.clone(),
                    digest: d.clone(),
                    reason,
                })?),
            };
            self.manifests.insert(d, parsed);
        }
        Ok(())
    }

    async fn mark_repository(&mut self, name: &RepoName) -> Result<(), GcError> {
        let state = &self.repos[name];
        let revisions: Vec<Digest> = state.revisions.keys().cloned().collect();
        let tags = state.tags.clone();
        // Every manifest in the repository is read: their subjects say
        // which are referrers of which (registry:2 keeps no referrers index).
        self.prefetch(name, revisions.clone()).await?;
        let mut referrers_of: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for r in &revisions {
            if let Some(Some(refs)) = self.manifests.get(r) {
                if let Some(subject) = &refs.subject {
                    referrers_of
                        .entry(subject.clone())
                        .or_default()
                        .push(r.clone());
                }
            }
        }
        for (subject, referrer, _, _) in &self.repos[name].referrer_links {
            if self.repos[name].revisions.contains_key(referrer) {
                referrers_of
                    .entry(subject.clone())
                    .or_default()
                    .push(referrer.clone());
            }
        }
        self.repos.get_mut(name).expect("repo").referrers_of = referrers_of;
        let mut roots: Vec<Digest> = Vec::new();
        if let Some(window) = self.options.untagged_window(name.as_str()) {
            for (tag, key) in &tags {
                match self.storage.read_link_key(key).await {
                    Ok(Some(d)) => roots.push(d),
                    Ok(None) => {}
                    Err(StorageError::CorruptLink { .. }) => self
                        .report
                        .warnings
                        .push(format!("tag {name}:{tag} has a corrupt link; ignored")),
                    Err(e) => return Err(e.into()),
                }
            }
            let state = &self.repos[name];
            roots.extend(
                state
                    .revisions
                    .iter()
                    .filter(|(_, t)| !self.older_than(**t, window))
                    .map(|(d, _)| d.clone()),
            );
        } else {
            roots = revisions;
        }
        // Links written within the grace window keep their blob (a push
        // that mounted or uploaded it has not written its manifest yet).
        let fresh: Vec<Digest> = self.repos[name]
            .layers
            .iter()
            .filter(|(_, (_, t))| !self.old(*t))
            .map(|(d, _)| d.clone())
            .collect();
        for d in fresh {
            self.repos
                .get_mut(name)
                .expect("repo")
                .used
                .insert(d.clone());
            self.live.insert(d);
        }
        self.mark_from(name, roots).await
    }

    /// Marks `roots` and everything they reach in `repo`.
    async fn mark_from(&mut self, repo: &RepoName, roots: Vec<Digest>) -> Result<(), GcError> {
        let mut work = roots;
        while let Some(d) = work.pop() {
            let state = self.repos.get_mut(repo).expect("repo state");
            if !state.kept.insert(d.clone()) {
                continue;
            }
            state.used.insert(d.clone());
            self.live.insert(d.clone());
            match self.refs(repo, &d).await? {
                Some(refs) => {
                    let state = self.repos.get_mut(repo).expect("repo state");
                    for b in refs.blobs.iter().chain(&refs.foreign) {
                        state.used.insert(b.clone());
                        self.live.insert(b.clone());
                    }
                    work.extend(refs.children.iter().cloned());
                }
                None => self.report.warnings.push(format!(
                    "manifest {repo}@{d} has no content (see `registry scrub`)"
                )),
            }
            // Referrers: from the index we keep, and from the subjects of
            // the manifests in the repository.
            if let Some(referrers) = self.repos[repo].referrers_of.get(&d) {
                work.extend(referrers.iter().cloned());
            }
        }
        Ok(())
    }

    fn plan(&self, blobs: &[crate::storage::walk::BlobObject]) -> Plan {
        let mut plan = Plan::default();
        for b in blobs {
            if !self.live.contains(&b.digest) && self.old(b.modified) {
                plan.blobs.push((b.digest.clone(), b.size));
            }
        }
        for (name, state) in &self.repos {
            if let Some(window) = self.options.untagged_window(name.as_str()) {
                for (d, t) in &state.revisions {
                    if !state.kept.contains(d) && self.older_than(*t, window) {
                        plan.manifests.push((name.clone(), d.clone()));
                    }
                }
            }
            let keeps = |d: &Digest| state.kept.contains(d) && state.revisions.contains_key(d);
            for (d, key, t) in &state.tag_index {
                if !keeps(d) && self.old(*t) {
                    plan.links.push((name.clone(), d.clone(), key.clone()));
                }
            }
            for (_, referrer, key, t) in &state.referrer_links {
                if !keeps(referrer) && self.old(*t) {
                    plan.links
                        .push((name.clone(), referrer.clone(), key.clone()));
                }
            }
            for (d, (key, t)) in &state.layers {
                if !state.used.contains(d) && self.old(*t) {
                    plan.links.push((name.clone(), d.clone(), key.clone()));
                }
            }
        }
        plan
    }

    async fn stale_uploads(&self, max_age: Duration) -> Result<Vec<(RepoName, String)>, GcError> {
        let mut out = Vec::new();
        for (name, state) in &self.repos {
            for (id, session) in &state.uploads {
                let started = match &session.startedat {
                    Some(key) => self.storage.read_started_at(key).await?,
                    None => None,
                }
                .or(session.newest);
                let age = started.and_then(|t| self.now.duration_since(t).ok());
                if age.is_some_and(|a| a >= max_age) {
                    out.push((name.clone(), id.clone()));
                }
            }
        }
        Ok(out)
    }

    fn finish_report(&mut self, plan: &Plan) {
        let r = &mut self.report;
        r.repositories = self.repos.len();
        r.manifests_in_use = self.repos.values().map(|s| s.kept.len()).sum();
        r.blobs_in_use = self.live.len();
        r.deleted_blobs = plan.blobs.clone();
        r.deleted_manifests = plan.manifests.clone();
        r.removed_links = plan.links.iter().map(|(_, _, k)| k.to_string()).collect();
        r.deleted_blobs.sort();
        r.deleted_manifests.sort();
        r.removed_links.sort();
    }
}

/// What a run is about to remove.
#[derive(Default)]
struct Plan {
    blobs: Vec<(Digest, u64)>,
    manifests: Vec<(RepoName, Digest)>,
    /// (repository, digest the link names, key).
    links: Vec<(RepoName, Digest, Path)>,
}

impl Plan {
    fn len(&self) -> usize {
        self.blobs.len() + self.manifests.len() + self.links.len()
    }

    /// The markers announcing this plan: blob content globally, links
    /// (revision and `_layers` links and the rest) per repository.
    fn pending(&self) -> Vec<Pending> {
        let mut all: Vec<Pending> = self
            .blobs
            .iter()
            .map(|(d, _)| Pending::Blob(d.clone()))
            .chain(
                self.manifests
                    .iter()
                    .map(|(r, d)| Pending::Link(r.clone(), d.clone())),
            )
            .chain(
                self.links
                    .iter()
                    .map(|(r, d, _)| Pending::Link(r.clone(), d.clone())),
            )
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Drops whatever a rescan found reachable after all.
    fn retain(&mut self, repos: &BTreeMap<RepoName, RepoState>, live: &HashSet<Digest>) {
        self.blobs.retain(|(d, _)| !live.contains(d));
        self.manifests
            .retain(|(r, d)| !repos.get(r).is_some_and(|s| s.kept.contains(d)));
        self.links.retain(|(r, d, _)| {
            !repos
                .get(r)
                .is_some_and(|s| s.kept.contains(d) || s.used.contains(d))
        });
    }
}

/// Removes upload sessions older than `max_age` (the online purger; a
/// collection run does the same with `Options::upload_max_age`).
pub async fn purge_uploads(
    storage: &Storage,
    max_age: Duration,
    dry_run: bool,
) -> Result<Vec<(RepoName, String)>, GcError> {
    let options = Options {
        dry_run,
        delete_untagged: false,
        grace: Duration::MAX,
        upload_max_age: Some(max_age),
        untagged_after: Vec::new(),
    };
    let mut run = Run {
        storage,
        options: &options,
        now: SystemTime::now(),
        repos: BTreeMap::new(),
        manifests: HashMap::new(),
        live: HashSet::new(),
        lock: None,
        refreshed: Instant::now(),
        report: Report::default(),
    };
    for o in storage.walk_repositories().await?.objects {
        if matches!(o.kind, RepoKey::Upload { .. }) {
            run.add_object(o);
        }
    }
    let stale = run.stale_uploads(max_age).await?;
    if !dry_run {
        for (repo, id) in &stale {
            storage.delete_tree(&layout::upload_dir(repo, id)).await?;
            storage.quota_release_upload(repo, id).await?;
        }
        // Reservations whose session another way ended without them
        // (quota rules removed meanwhile, a crash between the two).
        storage.quota_purge_reservations(max_age).await?;
        // Directories without a file (left by older versions and by
        // crashes) are invisible to the walk above, which sees keys.
        let empty = storage.prune_empty_upload_dirs(max_age).await?;
        if empty > 0 {
            tracing::info!(target: "gc", removed = empty, "empty upload directories removed");
        }
    }
    Ok(stale)
}
