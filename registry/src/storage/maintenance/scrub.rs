//! `registry scrub`: verifies every blob's content against its digest and
//! every link in every repository, and reports what is corrupt or dangling.
//! Read-only, through `object_store`, so it runs on every backend and while
//! the registry serves (something removed by a concurrent delete or garbage
//! collection between the listing and the check is skipped, not reported).

use std::collections::{HashMap, HashSet};
use std::fmt;

use futures::StreamExt;
use sha2::Digest as _;

use crate::oci::references::references;
use crate::oci::{Algorithm, Digest, RepoName};
use crate::storage::walk::{RepoKey, RepoObject};
use crate::storage::{Storage, StorageError};

/// Blobs hashed at once.
const HASH_CONCURRENCY: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A blob whose content does not hash to its digest.
    CorruptBlob,
    /// A link file that holds no digest, or not the one its key names.
    CorruptLink,
    /// A tag whose manifest is not in the repository or has no content.
    DanglingTag,
    /// A manifest revision whose content is missing.
    MissingManifest,
    /// A manifest whose content is not JSON.
    UnreadableManifest,
    /// A manifest that references a blob or child manifest the repository
    /// does not hold (pulls of it fail).
    MissingReference,
    /// A `_layers` or referrers link to content that is gone.
    DanglingLink,
    /// A key under `repositories/` whose repository name is invalid.
    UnknownRepository,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptBlob => "corrupt blob",
            ProblemKind::CorruptLink => "corrupt link",
            ProblemKind::DanglingTag => "dangling tag",
            ProblemKind::MissingManifest => "missing manifest",
            ProblemKind::UnreadableManifest => "unreadable manifest",
            ProblemKind::MissingReference => "missing reference",
            ProblemKind::DanglingLink => "dangling link",
            ProblemKind::UnknownRepository => "unknown repository",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub blobs: usize,
    pub bytes: u64,
    pub links: usize,
    pub manifests: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scrub: checked {} blobs ({} bytes), {} links, {} manifests: {}",
            self.blobs,
            self.bytes,
            self.links,
            self.manifests,
            match self.problems.len() {
                0 => "no problems".to_owned(),
                1 => "1 problem".to_owned(),
                n => format!("{n} problems"),
            }
        )
    }
}

enum Hashed {
    Gone,
    Matches,
    Differs(Digest),
}

async fn hash_blob(storage: &Storage, d: &Digest) -> Result<Hashed, StorageError> {
    let Some(mut stream) = storage.blob_stream(d).await? else {
        return Ok(Hashed::Gone);
    };
    let computed = match d.algorithm() {
        Algorithm::Sha256 => {
            let mut h = sha2::Sha256::new();
            while let Some(part) = stream.next().await {
                h.update(&part?);
            }
            Digest::from_sha256_bytes(&h.finalize())
        }
        Algorithm::Sha512 => {
            let mut h = sha2::Sha512::new();
            while let Some(part) = stream.next().await {
                h.update(&part?);
            }
            Digest::from_sha512_bytes(&h.finalize())
        }
    };
    Ok(if &computed == d {
        Hashed::Matches
    } else {
        Hashed::Differs(computed)
    })
}

#[derive(Default)]
struct RepoIndex {
    revisions: HashSet<Digest>,
    layers: HashSet<Digest>,
}

pub async fn run(storage: &Storage) -> Result<Report, StorageError> {
    let mut report = Report::default();
    let listing = storage.walk_blobs().await?;
    let stored: HashSet<Digest> = listing.blobs.iter().map(|b| b.digest.clone()).collect();

    let mut hashed = futures::stream::iter(
        listing
            .blobs
            .iter()
            .map(|b| async move { (b, hash_blob(storage, &b.digest).await) }),
    )
    .buffer_unordered(HASH_CONCURRENCY);
    while let Some((blob, result)) = hashed.next().await {
        match result? {
            Hashed::Gone => {}
            Hashed::Matches => {
                report.blobs += 1;
                report.bytes += blob.size;
            }
            Hashed::Differs(computed) => {
                report.blobs += 1;
                report.bytes += blob.size;
                report.problems.push(Problem {
                    kind: ProblemKind::CorruptBlob,
                    detail: format!(
                        "{} ({}): content hashes to {computed}",
                        blob.digest, blob.key
                    ),
                });
            }
        }
    }

    let listing = storage.walk_repositories().await?;
    for key in &listing.unnamed {
        report.problems.push(Problem {
            kind: ProblemKind::UnknownRepository,
            detail: format!("{key}: not in a repository with a valid name"),
        });
    }
    let objects = listing.objects;
    let mut repos: HashMap<RepoName, RepoIndex> = HashMap::new();
    for o in &objects {
        let index = repos.entry(o.repo.clone()).or_default();
        match &o.kind {
            RepoKey::Revision(d) => {
                index.revisions.insert(d.clone());
            }
            RepoKey::Layer(d) => {
                index.layers.insert(d.clone());
            }
            _ => {}
        }
    }
    for o in &objects {
        check_object(storage, o, &repos, &stored, &mut report).await?;
    }
    report.problems.sort();
    Ok(report)
}

async fn check_object(
    storage: &Storage,
    o: &RepoObject,
    repos: &HashMap<RepoName, RepoIndex>,
    stored: &HashSet<Digest>,
    report: &mut Report,
) -> Result<(), StorageError> {
    let named = match &o.kind {
        RepoKey::Layer(d) | RepoKey::Revision(d) | RepoKey::TagIndex(_, d) => Some(d),
        RepoKey::Referrer { referrer, .. } => Some(referrer),
        RepoKey::TagCurrent(_) => None,
        RepoKey::Upload { .. } | RepoKey::Other => return Ok(()),
    };
    report.links += 1;
    let mut problem = |kind, detail: String| report.problems.push(Problem { kind, detail });
    let held = match storage.read_link_key(&o.key).await {
        Ok(Some(d)) => Some(d),
        Ok(None) => return Ok(()),
        Err(StorageError::CorruptLink { content, .. }) => {
            problem(
                ProblemKind::CorruptLink,
                format!("{}: holds {content:?}, not a digest", o.key),
            );
            None
        }
        Err(e) => return Err(e),
    };
    if let (Some(named), Some(held)) = (named, &held) {
        if named != held {
            problem(
                ProblemKind::CorruptLink,
                format!("{}: holds {held}, its key names {named}", o.key),
            );
            return Ok(());
        }
    }
    // A revision is served by its key alone (the link's content is not
    // read), so its manifest is checked even when the link is garbled.
    let Some(held) = held.or_else(|| match &o.kind {
        RepoKey::Revision(d) => Some(d.clone()),
        _ => None,
    }) else {
        return Ok(());
    };
    let repo = &o.repo;
    let index = &repos[repo];
    match &o.kind {
        RepoKey::Layer(d) if !stored.contains(d) => problem(
            ProblemKind::DanglingLink,
            format!("{repo}: blob {d} is linked but its content is missing"),
        ),
        RepoKey::Referrer { subject, referrer } if !index.revisions.contains(referrer) => problem(
            ProblemKind::DanglingLink,
            format!("{repo}: referrer {referrer} of {subject} is not in the repository"),
        ),
        RepoKey::TagCurrent(tag) => {
            if !index.revisions.contains(&held) {
                problem(
                    ProblemKind::DanglingTag,
                    format!("{repo}:{tag} points at {held}, which is not in the repository"),
                );
            } else if !stored.contains(&held) {
                problem(
                    ProblemKind::DanglingTag,
                    format!("{repo}:{tag} points at {held}, whose content is missing"),
                );
            }
        }
        RepoKey::Revision(d) => {
            let Some(body) = storage.read_blob(d).await? else {
                problem(
                    ProblemKind::MissingManifest,
                    format!("{repo}@{d}: the revision exists but the content is missing"),
                );
                return Ok(());
            };
            report.manifests += 1;
            let mut problem = |kind, detail: String| report.problems.push(Problem { kind, detail });
            let refs = match references(&body) {
                Ok(r) => r,
                Err(e) => {
                    problem(ProblemKind::UnreadableManifest, format!("{repo}@{d}: {e}"));
                    return Ok(());
                }
            };
            for b in &refs.blobs {
                if !stored.contains(b) {
                    problem(
                        ProblemKind::MissingReference,
                        format!("{repo}@{d} references blob {b}, whose content is missing"),
                    );
                } else if !index.layers.contains(b) {
                    problem(
                        ProblemKind::MissingReference,
                        format!("{repo}@{d} references blob {b}, which is not linked into {repo}"),
                    );
                }
            }
            for c in &refs.children {
                if !index.revisions.contains(c) {
                    problem(
                        ProblemKind::MissingReference,
                        format!("{repo}@{d} references manifest {c}, which is not in {repo}"),
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}
