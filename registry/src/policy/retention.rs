//! Retention: which tags of a repository stay. The first
//! `[[policies.retention]]` rule (in file order) whose repository glob
//! matches governs a repository; a tag stays when an immutable rule protects
//! it or any of the rule's `keep_*` conditions holds, and the rest are
//! untagged. Retention only removes tags: what they alone reached (manifests,
//! an index with its platforms, referrers such as signatures, blobs) is left
//! to the garbage collector deleting untagged manifests, which keeps
//! whatever a kept tag still reaches and removes referrers with their
//! subject. A rule is a dry run until it says `dry_run = false`.

use std::collections::HashSet;
use std::time::SystemTime;

use super::immutable::Immutable;
use crate::config::RetentionRule;
use crate::glob::glob_match;
use crate::oci::{Digest, RepoName, Tag};
use crate::storage::listing::{Listing, Sort};
use crate::storage::{Storage, StorageError};

/// Why a tag stays or goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept, and the condition that kept it.
    Keep(String),
    /// Not kept by anything.
    Remove,
}

/// What became of one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Kept(String),
    /// Removed (or, in a dry run, would be).
    Removed {
        dry_run: bool,
    },
    /// Planned for removal but pushed again (another digest) meanwhile: kept.
    Repushed,
}

#[derive(Debug, Clone)]
pub struct TagReport {
    /// `policies.retention[<i>]`.
    pub rule: String,
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    pub pushed: Option<SystemTime>,
    pub outcome: Outcome,
    /// The removed tag's manifest stays: a kept tag names it too.
    pub shared: bool,
}

impl TagReport {
    /// One line of the report: what, which tag, and why.
    pub fn line(&self) -> String {
        let at = format!("{}:{}", self.repository, self.tag);
        let pushed = self.pushed.map_or_else(
            || "push time unknown".to_owned(),
            |t| format!("pushed {}", humantime::format_rfc3339_seconds(t)),
        );
        match &self.outcome {
            Outcome::Kept(why) => format!("keep {at} ({}: {why})", self.rule),
            Outcome::Removed { dry_run } => format!(
                "{} {at} ({}: {pushed}, kept by no condition{})",
                if *dry_run { "would remove" } else { "remove" },
                self.rule,
                if self.shared {
                    "; its manifest stays, a kept tag names it"
                } else {
                    ""
                },
            ),
            Outcome::Repushed => format!(
                "keep {at} ({}: pushed again while retention ran)",
                self.rule
            ),
        }
    }
}

/// An untagged manifest past its rule's `delete_untagged_after`.
#[derive(Debug, Clone)]
pub struct UntaggedReport {
    pub rule: String,
    pub repository: String,
    pub digest: Digest,
    /// Its last push (the revision link's modification time).
    pub pushed: SystemTime,
    pub window: std::time::Duration,
    /// The rule is a dry run: garbage collection leaves it.
    pub dry_run: bool,
}

impl UntaggedReport {
    pub fn line(&self) -> String {
        let at = format!("{}@{}", self.repository, self.digest);
        let why = format!(
            "{}: pushed {}, reached by no kept tag, delete_untagged_after {}",
            self.rule,
            humantime::format_rfc3339_seconds(self.pushed),
            humantime::format_duration(self.window)
        );
        if self.dry_run {
            format!("would remove untagged {at} ({why})")
        } else {
            format!("untagged {at} goes with the next gc ({why})")
        }
    }
}

/// A whole run: every tag of every governed repository, and the untagged
/// manifests past their rule's window.
#[derive(Debug, Default)]
pub struct Report {
    pub tags: Vec<TagReport>,
    pub untagged: Vec<UntaggedReport>,
    pub repositories: usize,
}

impl Report {
    pub fn removed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Removed { dry_run: false }))
    }

    pub fn would_remove(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Removed { dry_run: true }))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.tags.iter().filter(|t| f(&t.outcome)).count()
    }

    pub fn summary(&self) -> String {
        let kept = self.tags.len() - self.removed() - self.would_remove();
        let mut s = format!(
            "retention: {} repositories, {} tags: {kept} kept, {} removed",
            self.repositories,
            self.tags.len(),
            self.removed()
        );
        if self.would_remove() > 0 {
            s += &format!(", {} to remove in dry-run rules", self.would_remove());
        }
        if !self.untagged.is_empty() {
            let dry = self.untagged.iter().filter(|u| u.dry_run).count();
            s += &format!(
                "; {} untagged manifests past their window ({} go with the next gc)",
                self.untagged.len(),
                self.untagged.len() - dry
            );
        }
        s
    }
}

/// A tag as retention sees it: its last push and last recorded pull.
#[derive(Debug, Clone)]
pub struct TagTimes {
    pub tag: String,
    pub pushed: Option<SystemTime>,
    pub pulled: Option<SystemTime>,
}

/// The verdicts for one repository's tags, given newest push first (ties
/// by name), under `rule` and the immutable rules.
pub fn decide(
    rule: &RetentionRule,
    immutable: &Immutable,
    repository: &str,
    tags: &[TagTimes],
    now: SystemTime,
) -> Vec<Verdict> {
    // A time in the future (clock skew) counts as now.
    let within =
        |t: SystemTime, d: std::time::Duration| now.duration_since(t).unwrap_or_default() < d;
    tags.iter()
        .enumerate()
        .map(
            |(
                rank,
                TagTimes {
                    tag,
                    pushed,
                    pulled,
                },
            )| {
                if let Some(p) = immutable.protection(repository, tag) {
                    return Verdict::Keep(format!("immutable under {}", p.rule_name()));
                }
                if let Some(pattern) = rule
                    .keep_tags
                    .iter()
                    .find(|p| glob_match(p.as_bytes(), tag.as_bytes()))
                {
                    return Verdict::Keep(format!("keep_tags {pattern:?}"));
                }
                if let Some(n) = rule.keep_last {
                    if rank < n {
                        return Verdict::Keep(format!("keep_last {n} (#{})", rank + 1));
                    }
                }
                let Some(pushed) = pushed else {
                    return Verdict::Keep("push time unknown".into());
                };
                if let Some(d) = rule.keep_pushed_within {
                    if within(*pushed, d) {
                        return Verdict::Keep(format!(
                            "keep_pushed_within {}",
                            humantime::format_duration(d)
                        ));
                    }
                }
                if let (Some(d), Some(pulled)) = (rule.keep_pulled_within, pulled) {
                    if within(*pulled, d) {
                        return Verdict::Keep(format!(
                            "keep_pulled_within {} (pulled {})",
                            humantime::format_duration(d),
                            humantime::format_rfc3339_seconds(*pulled)
                        ));
                    }
                }
                Verdict::Remove
            },
        )
        .collect()
}

/// Runs the rules over every repository: removes what they do not keep
/// when `apply` (and the rule is not a dry run), reports every tag.
pub async fn run(
    storage: &Storage,
    rules: &[RetentionRule],
    immutable: &Immutable,
    apply: bool,
) -> Result<Report, StorageError> {
    let mut report = Report::default();
    if rules.is_empty() {
        return Ok(report);
    }
    let listing = Listing::new(storage.clone());
    let mut repositories = storage.repositories().await?;
    repositories.sort();
    for repo in repositories {
        let Ok(name) = repo.parse::<RepoName>() else {
            continue;
        };
        let Some((index, rule)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| glob_match(r.repository.as_bytes(), repo.as_bytes()))
        else {
            continue;
        };
        let Some((tags, _)) = listing
            .tags_page(&name, Sort::Pushed, None, usize::MAX)
            .await?
        else {
            continue;
        };
        report.repositories += 1;
        let pulls = storage.pull_times(&name).await?;
        let times: Vec<TagTimes> = tags
            .iter()
            .map(|t| TagTimes {
                tag: t.tag.clone(),
                pushed: t.pushed,
                pulled: pulls
                    .get(&t.tag)
                    .map(|&secs| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
            })
            .collect();
        let verdicts = decide(rule, immutable, &repo, &times, SystemTime::now());
        let kept: HashSet<&Digest> = tags
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Keep(_)))
            .map(|(t, _)| &t.digest)
            .collect();
        let remove = apply && !rule.dry_run;
        let mut remaining: HashSet<Digest> = HashSet::new();
        for (t, verdict) in tags.iter().zip(&verdicts) {
            let outcome = match verdict {
                Verdict::Keep(why) => Outcome::Kept(why.clone()),
                Verdict::Remove if !remove => Outcome::Removed { dry_run: true },
                Verdict::Remove => remove_if_unchanged(storage, &name, &t.tag, &t.digest).await?,
            };
            match &outcome {
                Outcome::Kept(_) => {
                    remaining.insert(t.digest.clone());
                }
                Outcome::Repushed => {
                    if let Ok(tag) = t.tag.parse::<Tag>() {
                        remaining.extend(storage.resolve_tag(&name, &tag).await?);
                    }
                }
                Outcome::Removed { .. } => {}
            }
            report.tags.push(TagReport {
                rule: format!("policies.retention[{index}]"),
                repository: repo.clone(),
                tag: t.tag.clone(),
                digest: t.digest.clone(),
                pushed: t.pushed,
                shared: matches!(outcome, Outcome::Removed { .. }) && kept.contains(&t.digest),
                outcome,
            });
        }
        if let Some(window) = rule.delete_untagged_after {
            for (digest, pushed) in untagged_past(storage, &name, &remaining, window).await? {
                report.untagged.push(UntaggedReport {
                    rule: format!("policies.retention[{index}]"),
                    repository: repo.clone(),
                    digest,
                    pushed,
                    window,
                    dry_run: rule.dry_run,
                });
            }
        }
    }
    Ok(report)
}

/// The manifests of `name` that neither a tag in `tagged` nor a manifest
/// pushed within `window` reaches (as the collector reaches them: an
/// index's children, a subject's referrers), pushed longer ago than
/// `window`: what garbage collection removes under the rule.
async fn untagged_past(
    storage: &Storage,
    name: &RepoName,
    tagged: &HashSet<Digest>,
    window: std::time::Duration,
) -> Result<Vec<(Digest, SystemTime)>, StorageError> {
    use crate::storage::walk::RepoKey;
    let now = SystemTime::now();
    let old = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age >= window);
    let revisions: Vec<(Digest, SystemTime)> = storage
        .repository_objects(name)
        .await?
        .into_iter()
        .filter_map(|o| match o.kind {
            RepoKey::Revision(d) => Some((d, o.modified)),
            _ => None,
        })
        .collect();
    let mut children: std::collections::HashMap<Digest, Vec<Digest>> = Default::default();
    let mut referrers: std::collections::HashMap<Digest, Vec<Digest>> = Default::default();
    for (d, _) in &revisions {
        let Some(body) = storage.read_manifest(name, d).await? else {
            continue;
        };
        if let Ok(refs) = crate::oci::references::references(&body) {
            if let Some(subject) = refs.subject {
                referrers.entry(subject).or_default().push(d.clone());
            }
            children.insert(d.clone(), refs.children);
        }
    }
    let mut reached: HashSet<Digest> = HashSet::new();
    let mut work: Vec<Digest> = tagged.iter().cloned().collect();
    work.extend(
        revisions
            .iter()
            .filter(|(_, t)| !old(*t))
            .map(|(d, _)| d.clone()),
    );
    while let Some(d) = work.pop() {
        if !reached.insert(d.clone()) {
            continue;
        }
        work.extend(children.get(&d).into_iter().flatten().cloned());
        work.extend(referrers.get(&d).into_iter().flatten().cloned());
    }
    let mut out: Vec<(Digest, SystemTime)> = revisions
        .into_iter()
        .filter(|(d, t)| !reached.contains(d) && old(*t))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// The windows garbage collection gives untagged manifests, per rule (in
/// file order; a dry-run rule's window is not applied).
pub fn untagged_windows(rules: &[RetentionRule]) -> Vec<(String, Option<std::time::Duration>)> {
    rules
        .iter()
        .map(|r| {
            (
                r.repository.clone(),
                r.delete_untagged_after.filter(|_| !r.dry_run),
            )
        })
        .collect()
}

/// Untags `tag` if it still names `planned`: a push that moved it since the
/// listing made it new, and it stays.
async fn remove_if_unchanged(
    storage: &Storage,
    name: &RepoName,
    tag: &str,
    planned: &Digest,
) -> Result<Outcome, StorageError> {
    let Ok(t) = tag.parse::<Tag>() else {
        return Ok(Outcome::Repushed);
    };
    match storage.resolve_tag(name, &t).await? {
        Some(d) if d == *planned => {
            storage.delete_tag(name, &t).await?;
            Ok(Outcome::Removed { dry_run: false })
        }
        // Gone already (someone else removed it) counts as removed.
        None => Ok(Outcome::Removed { dry_run: false }),
        Some(_) => Ok(Outcome::Repushed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImmutableRule;
    use std::time::Duration;

    #[test]
    fn any_keep_condition_keeps_and_the_rest_go() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86400);
        let days_ago = |d: u64| Some(now - Duration::from_secs(d * 86400));
        let rule = RetentionRule {
            repository: "ci/**".into(),
            keep_last: Some(2),
            keep_tags: vec!["latest".into(), "stable-*".into()],
            keep_pushed_within: Some(Duration::from_secs(7 * 86400)),
            keep_pulled_within: Some(Duration::from_secs(30 * 86400)),
            delete_untagged_after: None,
            dry_run: false,
        };
        let immutable = Immutable::new(vec![ImmutableRule {
            repository: "ci/**".into(),
            tags: vec!["v*".into()],
            ..Default::default()
        }]);
        let tags = [
            ("c9", days_ago(0), None),
            ("c8", days_ago(1), None),
            ("c7", days_ago(3), None),
            ("latest", days_ago(9), None),
            ("c6", days_ago(10), days_ago(31)),
            ("c5", days_ago(11), days_ago(29)),
            ("v1.0", days_ago(30), None),
            ("stable-1", days_ago(40), None),
            ("old", None, None),
        ]
        .map(|(t, pushed, pulled)| TagTimes {
            tag: t.to_owned(),
            pushed,
            pulled,
        });
        let verdicts = decide(&rule, &immutable, "ci/app", &tags, now);
        let keep = |why: &str| Verdict::Keep(why.into());
        assert_eq!(
            verdicts,
            [
                keep("keep_last 2 (#1)"),
                keep("keep_last 2 (#2)"),
                keep("keep_pushed_within 7days"),
                keep("keep_tags \"latest\""),
                Verdict::Remove,
                keep("keep_pulled_within 30days (pulled 1970-03-13T00:00:00Z)"),
                keep("immutable under policies.immutable[0]"),
                keep("keep_tags \"stable-*\""),
                keep("push time unknown"),
            ]
        );
    }
}
