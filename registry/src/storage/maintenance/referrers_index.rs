//! `registry index-referrers`: adds to the referrers index (`_referrers`)
//! every stored manifest with a `subject` that is not in it yet. Our index
//! is written when a manifest is pushed to us; registry:2 keeps none, so
//! artifacts it stored (SBOMs, signatures) are listed by the referrers API
//! only after this has run once over its directory or bucket. Only adds
//! links, so it is idempotent and safe while the registry serves.

use std::collections::HashSet;
use std::fmt;

use crate::oci::manifest;
use crate::oci::Digest;
use crate::storage::walk::RepoKey;
use crate::storage::{Storage, StorageError};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Manifests read.
    pub manifests: usize,
    /// Referrers entries written (manifests with a subject not yet indexed).
    pub added: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index-referrers: read {} manifests, added {} referrers entries",
            self.manifests, self.added
        )
    }
}

pub async fn run(storage: &Storage) -> Result<Report, StorageError> {
    let listing = storage.walk_repositories().await?;
    let indexed: HashSet<(&str, &Digest)> = listing
        .objects
        .iter()
        .filter_map(|o| match &o.kind {
            RepoKey::Referrer { referrer, .. } => Some((o.repo.as_str(), referrer)),
            _ => None,
        })
        .collect();
    let mut report = Report::default();
    for object in &listing.objects {
        let RepoKey::Revision(digest) = &object.kind else {
            continue;
        };
        if indexed.contains(&(object.repo.as_str(), digest)) {
            continue;
        }
        // Gone since the listing (a concurrent delete): nothing to index.
        let Some(body) = storage.read_manifest(&object.repo, digest).await? else {
            continue;
        };
        report.manifests += 1;
        // What does not parse was never ours to index (scrub reports it).
        if let Ok(parsed) = manifest::parse(&body, None) {
            if let Some(subject) = parsed.subject {
                storage
                    .index_referrer(&object.repo, &subject, digest)
                    .await?;
                report.added += 1;
            }
        }
    }
    Ok(report)
}
