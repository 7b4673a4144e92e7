//! When tags were last pulled. Every manifest GET or HEAD by tag that is
//! answered notes the time in memory; a task writes the repositories with
//! new pulls to their pull records (`storage::pull_record`) in batches, at
//! most `every` apart and when the server stops, never one write per pull.
//! Read by the pull-through cache's expiry and size caps (`proxy::evict`)
//! and by retention's `keep_pulled_within` (`policy::retention`), also after
//! a restart and on other replicas. Replicas merge into the same records,
//! the later time winning.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::oci::RepoName;
use crate::storage::pull_record::PullTimes;
use crate::storage::{Storage, StorageError};

/// How often pulls are written by default: what a crash can forget.
pub const RECORD_EVERY: Duration = Duration::from_secs(30);

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct PullLog {
    storage: Storage,
    /// repository → tag → last pull seen or adopted by this process
    /// (nested, so a repeated pull allocates nothing: it is on the path of
    /// every manifest GET by tag).
    pulled: Mutex<HashMap<String, HashMap<String, Instant>>>,
    /// Repositories whose record is behind `pulled`.
    unrecorded: Mutex<HashSet<String>>,
    /// Read-only maintenance: nothing is written.
    read_only: bool,
}

impl PullLog {
    pub fn new(storage: Storage, read_only: bool) -> Arc<PullLog> {
        Arc::new(PullLog {
            storage,
            pulled: Mutex::default(),
            unrecorded: Mutex::default(),
            read_only,
        })
    }

    /// A client pulled `tag` of `repo` now.
    pub fn note(&self, repo: &str, tag: &str) {
        let now = Instant::now();
        {
            let mut pulled = self.pulled.lock().unwrap();
            match pulled.get_mut(repo).and_then(|tags| tags.get_mut(tag)) {
                Some(at) => *at = now,
                None => {
                    pulled
                        .entry(repo.to_owned())
                        .or_default()
                        .insert(tag.to_owned(), now);
                }
            }
        }
        if !self.read_only {
            let mut unrecorded = self.unrecorded.lock().unwrap();
            if !unrecorded.contains(repo) {
                unrecorded.insert(repo.to_owned());
            }
        }
    }

    /// Remembers a pull at `at` (read from a record, or "now" for a tag
    /// with none) unless this process saw one already.
    pub fn adopt(&self, repo: &str, tag: &str, at: Instant) {
        self.pulled
            .lock()
            .unwrap()
            .entry(repo.to_owned())
            .or_default()
            .entry(tag.to_owned())
            .or_insert(at);
    }

    pub fn last(&self, repo: &str, tag: &str) -> Option<Instant> {
        self.pulled.lock().unwrap().get(repo)?.get(tag).copied()
    }

    /// Every (repository, tag) with its last pull.
    pub fn all(&self) -> Vec<((String, String), Instant)> {
        self.pulled
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(repo, tags)| {
                tags.iter()
                    .map(|(tag, at)| ((repo.clone(), tag.clone()), *at))
            })
            .collect()
    }

    /// `tag` was removed: forgotten here, and dropped from its record with
    /// the next batch.
    pub fn forget(&self, repo: &str, tag: &str) {
        if let Some(tags) = self.pulled.lock().unwrap().get_mut(repo) {
            tags.remove(tag);
        }
        if !self.read_only {
            self.unrecorded.lock().unwrap().insert(repo.to_owned());
        }
    }

    /// Writes the pulls not yet recorded into the repositories' records,
    /// merged with what is there (another replica's pulls: the later time
    /// wins) and without the tags no longer stored. A repository whose write
    /// fails is tried again with the next batch.
    pub async fn record(&self) -> Result<(), StorageError> {
        let repos = std::mem::take(&mut *self.unrecorded.lock().unwrap());
        if repos.is_empty() {
            return Ok(());
        }
        let (now, wall) = (Instant::now(), unix_now());
        // Every repository in the batch is rewritten, also one whose last
        // tag went (its record then drops the tag).
        let batch: HashMap<String, PullTimes> = {
            let pulled = self.pulled.lock().unwrap();
            repos
                .iter()
                .map(|repo| {
                    let times = pulled
                        .get(repo)
                        .into_iter()
                        .flatten()
                        .map(|(tag, at)| {
                            (
                                tag.clone(),
                                wall.saturating_sub(now.duration_since(*at).as_secs()),
                            )
                        })
                        .collect();
                    (repo.clone(), times)
                })
                .collect()
        };
        let mut left = repos;
        for (repo, times) in batch {
            let Ok(name) = repo.parse::<RepoName>() else {
                left.remove(&repo);
                continue;
            };
            if let Err(e) = self.merge_into_record(&name, times).await {
                self.unrecorded.lock().unwrap().extend(left);
                return Err(e);
            }
            left.remove(&repo);
        }
        Ok(())
    }

    async fn merge_into_record(
        &self,
        name: &RepoName,
        times: PullTimes,
    ) -> Result<(), StorageError> {
        let stored: HashSet<String> = self
            .storage
            .tags(name)
            .await?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut record = self.storage.pull_times(name).await?;
        for (tag, secs) in times {
            let e = record.entry(tag).or_insert(secs);
            *e = (*e).max(secs);
        }
        record.retain(|tag, _| stored.contains(tag));
        if record.is_empty() {
            // No tag left to remember: no object left behind either.
            return self.storage.forget_pull_times(name).await;
        }
        self.storage.record_pull_times(name, &record).await
    }

    async fn record_logged(&self) {
        if let Err(e) = self.record().await {
            tracing::warn!(error = %e, "recording pull times failed; retrying with the next batch");
        }
    }

    /// The task that writes the batches, `every` apart and once more at
    /// stop.
    pub fn spawn(self: &Arc<Self>, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.cancelled() => true,
                };
                log.record_logged().await;
                if stopping {
                    return;
                }
            }
        })
    }
}

/// `secs` (a record's Unix time) as an `Instant` of this process, for
/// comparing with pulls seen here; None when it is before this machine's
/// monotonic clock began.
pub fn instant_of(secs: u64, now: Instant, wall: u64) -> Option<Instant> {
    now.checked_sub(Duration::from_secs(wall.saturating_sub(secs)))
}
