//! Listings for people rather than clients: a repository's tags with their
//! digest, media type, size, platforms and push time, and repositories with
//! their tag count, size and last push (the `/v2/_ext/...` endpoints and the
//! web UI read these).
//!
//! What a manifest says about itself (media type, blob sizes, platforms,
//! artifact type) never changes, since manifests are content-addressed, so
//! those facts are kept by digest and a page of 1,000 tags reads each
//! manifest once per process, not once per request. Which tag names which
//! digest comes from `Storage::cached().resolve_tag` (the pull path's
//! metadata cache, with its coherence contract); the tag set and push times come
//! from one listing of the tags directory (the `current/link` objects'
//! last-modified times, which disk and S3 listings both report).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::{is_not_found, layout, Result, Storage};
use crate::oci::manifest::{self, DOCKER_LIST, OCI_INDEX};
use crate::oci::{Digest, RepoName, Tag};

/// Past this many manifests the facts cache starts again from empty (a
/// few hundred bytes each: ~10 MiB at most).
const MAX_FACTS: usize = 30_000;
/// Tag lookups in flight at once for one listing.
const CONCURRENCY: usize = 32;

/// What a stored manifest says about itself.
#[derive(Debug, Clone)]
pub struct Facts {
    pub media_type: String,
    /// Length of the manifest itself.
    pub manifest_size: u64,
    /// `artifactType`, or an image's config media type (as the referrers
    /// API reports it).
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// Config and layers (an image), with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Child manifests (an index).
    pub children: Vec<Digest>,
    /// `os/architecture[/variant]` of an index's children, in order, without
    /// the `unknown/unknown` entries that hold build attestations.
    pub platforms: Vec<String>,
}

impl Facts {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    fn of(body: &[u8]) -> Option<Facts> {
        let m = manifest::parse(body, None).ok()?;
        #[derive(Deserialize)]
        struct Platform {
            os: String,
            architecture: String,
            variant: Option<String>,
        }
        #[derive(Deserialize)]
        struct Child {
            platform: Option<Platform>,
        }
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Child>,
        }
        let platforms = serde_json::from_slice::<Index>(body)
            .map(|i| {
                i.manifests
                    .into_iter()
                    .filter_map(|c| c.platform)
                    .filter(|p| p.os != "unknown")
                    .map(|p| match p.variant {
                        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
                        _ => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Facts {
            manifest_size: body.len() as u64,
            artifact_type: m.artifact_type,
            subject: m.subject,
            blobs: m
                .blob_descriptors
                .into_iter()
                .map(|b| (b.digest, b.size))
                .collect(),
            children: m.children,
            platforms,
            media_type: m.media_type,
        })
    }
}

/// A repository's tags, each with its push time.
type TagTimes = Vec<(Tag, Option<SystemTime>)>;

/// One tag of a repository.
#[derive(Debug, Clone)]
pub struct TagInfo {
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    /// Manifest, config and layers; for an index, itself and every child
    /// stored in the repository.
    pub size: u64,
    pub platforms: Vec<String>,
    /// When the tag was last pointed at a manifest.
    pub pushed: Option<SystemTime>,
}

/// One repository.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub name: String,
    pub tags: usize,
    /// Every distinct blob and manifest its tags reach, counted once.
    pub size: u64,
    pub last_push: Option<SystemTime>,
}

#[derive(Clone)]
pub struct Listing {
    storage: Storage,
    facts: Arc<Mutex<HashMap<Digest, Arc<Facts>>>>,
}

impl Listing {
    pub fn new(storage: Storage) -> Listing {
        Listing {
            storage,
            facts: Arc::default(),
        }
    }

    /// What the manifest `d` in `name` says about itself; None when the
    /// repository does not hold it (or it does not parse).
    pub async fn facts(&self, name: &RepoName, d: &Digest) -> Result<Option<Arc<Facts>>> {
        if let Some(f) = self.facts.lock().unwrap().get(d) {
            return Ok(Some(f.clone()));
        }
        let Some(body) = self.storage.cached().read_manifest(name, d).await? else {
            return Ok(None);
        };
        let Some(facts) = Facts::of(&body).map(Arc::new) else {
            return Ok(None);
        };
        let mut cache = self.facts.lock().unwrap();
        if cache.len() >= MAX_FACTS {
            cache.clear();
        }
        cache.insert(d.clone(), facts.clone());
        Ok(Some(facts))
    }

    /// Every blob and manifest the manifest `d` of `name` reaches, each
    /// once, with its size (empty when the repository does not hold it).
    pub async fn reached(&self, name: &RepoName, d: &Digest) -> Result<HashMap<Digest, u64>> {
        let mut into = HashMap::new();
        self.reach(name, d, &mut into).await?;
        Ok(into)
    }

    /// Every blob and manifest `d` reaches (itself, its config and layers,
    /// an index's stored children), each once, with its size.
    async fn reach(
        &self,
        name: &RepoName,
        d: &Digest,
        into: &mut HashMap<Digest, u64>,
    ) -> Result<Option<Arc<Facts>>> {
        let Some(facts) = self.facts(name, d).await? else {
            return Ok(None);
        };
        into.insert(d.clone(), facts.manifest_size);
        into.extend(facts.blobs.iter().cloned());
        for child in &facts.children {
            if let Some(c) = self.facts(name, child).await? {
                into.insert(child.clone(), c.manifest_size);
                into.extend(c.blobs.iter().cloned());
            }
        }
        Ok(Some(facts))
    }

    /// The tags of `name` with their current link's last-modified time, or
    /// None for a repository that does not exist.
    async fn tag_times(&self, name: &RepoName) -> Result<Option<TagTimes>> {
        if let Some(root) = &self.storage.local_root {
            return local_tag_times(root, name).await;
        }
        let store = &self.storage.store;
        match store
            .list_with_delimiter(Some(&layout::repository(name)))
            .await
        {
            Ok(l) if l.common_prefixes.is_empty() && l.objects.is_empty() => return Ok(None),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let dir = layout::tags_dir(name);
        let depth = dir.parts().count();
        let metas: Vec<_> = match store.list(Some(&dir)).try_collect().await {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut tags: TagTimes = metas
            .iter()
            .filter_map(|m| {
                let parts: Vec<_> = m.location.parts().skip(depth).collect();
                match parts.as_slice() {
                    [tag, current, link]
                        if current.as_ref() == "current" && link.as_ref() == "link" =>
                    {
                        let tag = tag.as_ref().parse::<Tag>().ok()?;
                        Some((tag, Some(m.last_modified.into())))
                    }
                    _ => None,
                }
            })
            .collect();
        tags.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(Some(tags))
    }

    /// What `tag` of `name` names now, or None when it was removed.
    async fn tag_info(
        &self,
        name: &RepoName,
        tag: Tag,
        pushed: Option<SystemTime>,
    ) -> Result<Option<TagInfo>> {
        let Some(digest) = self.storage.cached().resolve_tag(name, &tag).await? else {
            return Ok(None);
        };
        let mut reached = HashMap::new();
        let Some(facts) = self.reach(name, &digest, &mut reached).await? else {
            return Ok(None);
        };
        Ok(Some(TagInfo {
            tag: tag.as_str().to_owned(),
            digest,
            media_type: facts.media_type.clone(),
            size: reached.values().sum(),
            platforms: facts.platforms.clone(),
            pushed,
        }))
    }

    /// One page of the tags of `name` in `sort` order (see `page`), and
    /// whether more follow; None for a repository that does not exist.
    /// Ordering needs only the one listing; only the page's tags are looked
    /// up, so a page costs the same with 10 tags as with 10,000.
    pub async fn tags_page(
        &self,
        name: &RepoName,
        sort: Sort,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<(Vec<TagInfo>, bool)>> {
        let Some(times) = self.tag_times(name).await? else {
            return Ok(None);
        };
        let mut times: Vec<TagTime> = times
            .into_iter()
            .map(|(tag, pushed)| TagTime { tag, pushed })
            .collect();
        self::sort(&mut times, sort);
        let (page, more) = page(times, sort, last, Some(n));
        // Futures built first, not in a stream's closure: a closure over
        // borrowed items makes the handler's future not provably `Send`.
        let lookups: Vec<_> = page
            .into_iter()
            .map(|t| self.tag_info(name, t.tag, t.pushed))
            .collect();
        let infos: Vec<Option<TagInfo>> = futures::stream::iter(lookups)
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Some((infos.into_iter().flatten().collect(), more)))
    }

    /// Tag count, size and last push of `name` (zeros for a repository
    /// without tags or that does not exist).
    pub async fn repository(&self, name: &RepoName) -> Result<RepoInfo> {
        let times = self.tag_times(name).await?.unwrap_or_default();
        let last_push = times.iter().filter_map(|(_, t)| *t).max();
        let lookups: Vec<_> = times
            .iter()
            .map(|(tag, _)| async move { self.storage.cached().resolve_tag(name, tag).await })
            .collect();
        let digests: HashSet<Digest> = futures::stream::iter(lookups)
            .buffered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut reached = HashMap::new();
        for d in &digests {
            self.reach(name, d, &mut reached).await?;
        }
        Ok(RepoInfo {
            name: name.as_str().to_owned(),
            tags: times.len(),
            size: reached.values().sum(),
            last_push,
        })
    }

    /// Summaries of several repositories, in the order given.
    pub async fn repositories(&self, names: &[RepoName]) -> Result<Vec<RepoInfo>> {
        let summaries: Vec<_> = names.iter().map(|n| self.repository(n)).collect();
        futures::stream::iter(summaries)
            .buffered(8)
            .try_collect()
            .await
    }

    /// Every repository that holds manifests, by name.
    pub async fn repository_names(&self) -> Result<Vec<String>> {
        match &self.storage.local_root {
            Some(root) => {
                let root = root.join(layout::repositories_root().as_ref());
                blocking(move || local_repository_names(&root)).await
            }
            None => self.storage.repositories().await,
        }
    }
}

/// `Listing::tag_times` on local disk: one directory read and one `stat`
/// per tag on a blocking thread, instead of `object_store`'s recursive
/// listing, which also walks every tag's `index/` history (three times the
/// entries) and costs most of a 1,000-tag page. Keys are paths under the
/// root as they are for `LocalFileSystem` (names and tags need no escaping).
async fn local_tag_times(root: &std::path::Path, name: &RepoName) -> Result<Option<TagTimes>> {
    let repository = root.join(layout::repository(name).as_ref());
    let tags_dir = root.join(layout::tags_dir(name).as_ref());
    let read = move || -> std::io::Result<Option<TagTimes>> {
        match std::fs::read_dir(&repository).map(|mut entries| entries.next().is_some()) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let entries = match std::fs::read_dir(&tags_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(e),
        };
        let mut tags = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(tag) = entry
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<Tag>().ok())
            else {
                continue;
            };
            // A tag counts once its current link exists (see Storage::tags).
            match std::fs::metadata(entry.path().join("current/link")) {
                Ok(meta) if meta.is_file() => tags.push((tag, meta.modified().ok())),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        tags.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(Some(tags))
    };
    blocking(read).await
}

/// `Storage::repositories` on local disk: the same walk (a directory with
/// a `_manifests` child is a repository; components starting with `_` are
/// never name components) as plain directory reads on one blocking thread,
/// ~30 times cheaper than one `object_store` listing per directory with
/// 10,000 repositories.
fn local_repository_names(root: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, name)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let Some(child) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if child == "_manifests" {
                found.push(name.clone());
            } else if !child.starts_with('_') {
                let full = if name.is_empty() {
                    child
                } else {
                    format!("{name}/{child}")
                };
                pending.push((entry.path(), full));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs local file system work on the blocking pool, with its errors as
/// the backend's.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| super::StorageError::Backend(object_store::Error::JoinError { source: e }))?
        .map_err(|e| {
            super::StorageError::Backend(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })
}

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Name,
    /// Most recently pushed first; ties (and never pushed) by name.
    Pushed,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "name" => Some(Sort::Name),
            "pushed" | "time" => Some(Sort::Pushed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Pushed => "pushed",
        }
    }
}

/// A tag and its push time, before it is looked up.
struct TagTime {
    tag: Tag,
    pushed: Option<SystemTime>,
}

impl Listed for TagTime {
    fn name(&self) -> &str {
        self.tag.as_str()
    }
    fn pushed(&self) -> Option<SystemTime> {
        self.pushed
    }
}

/// Something a listing holds: a name and a push time.
pub trait Listed {
    fn name(&self) -> &str;
    fn pushed(&self) -> Option<SystemTime>;
}

impl Listed for TagInfo {
    fn name(&self) -> &str {
        &self.tag
    }
    fn pushed(&self) -> Option<SystemTime> {
        self.pushed
    }
}

impl Listed for RepoInfo {
    fn name(&self) -> &str {
        &self.name
    }
    fn pushed(&self) -> Option<SystemTime> {
        self.last_push
    }
}

/// Orders `items` (which arrive by name) as `sort` says.
pub fn sort<T: Listed>(items: &mut [T], sort: Sort) {
    match sort {
        Sort::Name => items.sort_by(|a, b| a.name().cmp(b.name())),
        Sort::Pushed => items.sort_by(|a, b| {
            b.pushed()
                .cmp(&a.pushed())
                .then_with(|| a.name().cmp(b.name()))
        }),
    }
}

/// One page of an ordered list: at most `n` items after the one named
/// `last`, and whether more follow. By name, "after" is lexical (so a
/// `last` that was deleted meanwhile still works, as in the catalog); by
/// push time it is the position of `last` in the order, and a `last` that
/// no longer exists ends the listing (an empty page) rather than starting
/// it again.
pub fn page<T: Listed>(
    items: Vec<T>,
    sort: Sort,
    last: Option<&str>,
    n: Option<usize>,
) -> (Vec<T>, bool) {
    let after: Vec<T> = match (last, sort) {
        (None, _) => items,
        (Some(last), Sort::Name) => items.into_iter().filter(|i| i.name() > last).collect(),
        (Some(last), Sort::Pushed) => match items.iter().position(|i| i.name() == last) {
            Some(at) => items.into_iter().skip(at + 1).collect(),
            None => Vec::new(),
        },
    };
    match n {
        Some(n) if after.len() > n => (after.into_iter().take(n).collect(), true),
        _ => (after, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn repo(name: &str, secs: Option<u64>) -> RepoInfo {
        RepoInfo {
            name: name.into(),
            tags: 0,
            size: 0,
            last_push: secs.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    fn names(items: &[RepoInfo]) -> Vec<&str> {
        items.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn sorts_and_pages() {
        let all = || {
            vec![
                repo("a", Some(5)),
                repo("b", None),
                repo("c", Some(9)),
                repo("d", Some(5)),
            ]
        };
        let mut by_time = all();
        sort(&mut by_time, Sort::Pushed);
        assert_eq!(names(&by_time), ["c", "a", "d", "b"]);
        let (p, more) = page(by_time.clone(), Sort::Pushed, Some("a"), Some(1));
        assert_eq!((names(&p), more), (vec!["d"], true));
        let (p, more) = page(by_time.clone(), Sort::Pushed, Some("d"), Some(5));
        assert_eq!((names(&p), more), (vec!["b"], false));
        let (p, _) = page(by_time, Sort::Pushed, Some("gone"), None);
        assert!(p.is_empty());
        let (p, more) = page(all(), Sort::Name, Some("a0"), Some(2));
        assert_eq!((names(&p), more), (vec!["b", "c"], true));
    }

    #[test]
    fn facts_of_an_index_list_platforms() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
          "manifests":[
           {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,
            "digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
           {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,
            "digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let f = Facts::of(index).unwrap();
        assert!(f.is_index());
        assert_eq!(f.platforms, ["linux/arm64/v8"]);
        assert_eq!(f.children.len(), 2);
        assert_eq!(f.manifest_size, index.len() as u64);
    }
}
