//! Everything the registry keeps, behind one seam: `object_store`. Handlers
//! call the methods here and never build keys or touch the backend directly.
//!
//! Invariants (held by the order of writes, since the backend has no
//! transactions):
//! * a blob's `data` is written whole (staged, then renamed) and only after
//!   its digest was verified; links to it are written after it exists;
//! * a tag's `current/link` is written last, after the manifest's data and
//!   revision link, so a crash never leaves a tag naming a missing manifest.

mod aligned;
pub mod backend;
mod chunk_files;
mod direct_io;
mod durability;
mod durable_files;
mod event_queue;
pub mod gc_guard;
mod hashing;
pub mod layout;
pub mod listing;
mod local_dirs;
pub mod maintenance;
mod manifest_cache;
pub mod meta_cache;
pub mod metered;
pub mod pull_record;
mod read_coalesce;
mod repository_keys;
pub mod spool;
mod tag_claim;
pub mod uploads;
pub mod walk;

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt, PutPayload};

use crate::oci::{Digest, RepoName, Tag};

pub use uploads::{UploadError, UploadStatus};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage backend: {0}")]
    Backend(#[from] object_store::Error),
    #[error("corrupt link at {path}: {content:?}")]
    CorruptLink { path: String, content: String },
    #[error("corrupt upload record at {0}")]
    CorruptUpload(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Where blob GETs are redirected when the backend can pre-sign URLs.
#[derive(Clone)]
pub struct Redirect {
    pub signer: Arc<dyn object_store::signer::Signer>,
    /// The backend's key prefix, which the signer (below it) must be given.
    pub prefix: Path,
    pub ttl: std::time::Duration,
}

#[derive(Clone)]
pub struct Storage {
    pub(crate) store: Arc<dyn ObjectStore>,
    redirect: Option<Redirect>,
    /// Sizes of the parts streamed to the backend: large enough for fast
    /// I/O (and S3's 5 MiB minimum), small enough to bound memory per upload.
    parts: aligned::PartSizes,
    /// Upload blocks in memory at once, across all uploads.
    upload_blocks: Arc<tokio::sync::Semaphore>,
    manifests: Arc<manifest_cache::ManifestCache>,
    /// Tags, links and sizes for the read path (`cached()`); off unless
    /// `with_metadata_cache` turns it on.
    meta: Arc<meta_cache::MetaCache>,
    /// Largest object the backend renames in one request (S3's CopyObject
    /// takes at most 5 GiB); larger upload chunks are streamed into place.
    rename_limit: Option<u64>,
    /// The local-disk backend's root, where keys are files and directories
    /// can be left empty (`local_dirs`).
    local_root: Option<std::path::PathBuf>,
    /// Upload chunks continued in place (local disk; `chunk_files`).
    chunk_files: Option<chunk_files::ChunkFiles>,
    /// Concurrent GETs of one blob sharing one backend GET (object stores
    /// only; `read_coalesce`).
    reads: Option<Arc<read_coalesce::CoalescedReads>>,
}

/// A blob's content (or a range of it) as it streams.
pub type BlobBody = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// Memory for upload data in flight, across all uploads (at least four
/// parts, what one upload needs at full speed).
const UPLOAD_MEMORY_BUDGET: usize = 8 << 20;

pub(crate) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Storage {
    pub fn new(store: Arc<dyn ObjectStore>, parts: aligned::PartSizes) -> Storage {
        Storage {
            store,
            redirect: None,
            parts,
            upload_blocks: aligned::upload_budget(parts.base(), UPLOAD_MEMORY_BUDGET),
            manifests: Arc::default(),
            meta: Arc::new(meta_cache::MetaCache::disabled()),
            rename_limit: None,
            local_root: None,
            chunk_files: None,
            reads: None,
        }
    }

    /// Concurrent GETs of one blob share one backend GET, through spool
    /// files in the system's temporary directory (`read_coalesce`).
    pub fn with_read_coalescing(mut self) -> std::io::Result<Storage> {
        self.reads = Some(Arc::new(read_coalesce::CoalescedReads::in_temp_dir()?));
        Ok(self)
    }

    /// Requests that joined a blob read already in progress.
    pub fn coalesced_reads(&self) -> u64 {
        self.reads.as_ref().map_or(0, |r| r.joined())
    }

    /// Creates `key` only if it does not exist (a conditional create, on
    /// disk and S3): true when this call created it.
    pub(crate) async fn create_once(&self, key: &Path, payload: PutPayload) -> Result<bool> {
        match self
            .store
            .put_opts(key, payload, object_store::PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The local-disk backend's root: directories there can be pruned
    /// (`local_dirs`), and PATCHes write on into the previous PATCH's chunk
    /// file (`chunk_files`; `direct`: with `O_DIRECT`, as the store writes).
    pub fn with_local_disk(
        mut self,
        root: std::path::PathBuf,
        direct: bool,
        fsync: bool,
    ) -> Storage {
        self.local_root = Some(root.clone());
        self.chunk_files = Some(chunk_files::ChunkFiles::new(root, direct, fsync));
        self
    }

    /// Removes what is left of a directory on local disk once its files
    /// are gone (see `local_dirs`): a finished, cancelled or purged upload
    /// session's. A failure costs an inode, not data: logged, never the
    /// request's error.
    pub(crate) async fn remove_empty_dirs(&self, key: &Path) {
        let Some(root) = &self.local_root else {
            return;
        };
        let dir = root.join(key.as_ref());
        let result = tokio::task::spawn_blocking(move || local_dirs::remove_empty_tree(&dir)).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(key = %key, error = %e, "could not remove empty directories");
        }
    }

    /// Removes empty upload directories older than `min_age` on local disk
    /// (none exist on S3). Returns how many.
    pub async fn prune_empty_upload_dirs(&self, min_age: std::time::Duration) -> Result<usize> {
        let Some(root) = &self.local_root else {
            return Ok(0);
        };
        let repositories = root.join(layout::repositories_root().as_ref());
        tokio::task::spawn_blocking(move || {
            local_dirs::prune_empty_upload_dirs(&repositories, min_age)
        })
        .await
        .map_err(|e| StorageError::Backend(object_store::Error::JoinError { source: e }))?
        .map_err(|e| {
            StorageError::Backend(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })
    }

    /// Serves `cached()` reads from memory within `config.ttl`.
    pub fn with_metadata_cache(mut self, config: &crate::config::MetadataCache) -> Storage {
        self.meta = Arc::new(meta_cache::MetaCache::new(
            config.ttl,
            config.max_entries,
            config.max_bytes,
        ));
        self
    }

    /// The metadata cache's counters, for the metrics.
    pub fn cache_stats(&self) -> meta_cache::CacheStats {
        self.meta.stats()
    }

    /// Reads for serving pulls, through the metadata cache. Write paths and
    /// their checks (a push's references, GC) use `Storage`'s own methods,
    /// which always ask the backend.
    pub fn cached(&self) -> Cached<'_> {
        Cached(self)
    }

    pub fn with_rename_limit(mut self, bytes: u64) -> Storage {
        self.rename_limit = Some(bytes);
        self
    }

    pub fn with_redirect(mut self, redirect: Redirect) -> Storage {
        self.redirect = Some(redirect);
        self
    }

    /// A pre-signed URL for a blob's content, when redirects are enabled.
    pub async fn blob_redirect(&self, d: &Digest) -> Result<Option<String>> {
        let Some(r) = &self.redirect else {
            return Ok(None);
        };
        let key = layout::blob_data(d);
        let full = if r.prefix.as_ref().is_empty() {
            key
        } else {
            Path::from_iter(r.prefix.parts().chain(key.parts()))
        };
        let url = r
            .signer
            .signed_url(axum::http::Method::GET, &full, r.ttl)
            .await?;
        Ok(Some(url.to_string()))
    }

    /// Cheap reachability check for `/readyz`.
    pub async fn ready(&self) -> Result<()> {
        self.store
            .list_with_delimiter(Some(&layout::repositories_root()))
            .await
            .map(|_| ())
            .or_else(|e| {
                if is_not_found(&e) {
                    Ok(())
                } else {
                    Err(e.into())
                }
            })
    }

    pub(crate) async fn exists(&self, key: &Path) -> Result<bool> {
        Ok(self.size_of(key).await?.is_some())
    }

    async fn size_of(&self, key: &Path) -> Result<Option<u64>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_link(&self, key: &Path) -> Result<Option<Digest>> {
        let bytes = match self.store.get(key).await {
            Ok(r) => r.bytes().await?,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| StorageError::CorruptLink {
                path: key.to_string(),
                content: text.into_owned(),
            })
    }

    async fn write_link(&self, key: &Path, d: &Digest) -> Result<()> {
        let r = self
            .store
            .put(key, PutPayload::from(d.to_string().into_bytes()))
            .await;
        // Even a failed write may have landed.
        self.meta.invalidate(key);
        r?;
        Ok(())
    }

    /// Deletes `key`; false when it was not there. S3 answers a DELETE of a
    /// missing key with success, so existence is checked first.
    pub(crate) async fn delete_if_exists(&self, key: &Path) -> Result<bool> {
        if !self.exists(key).await? {
            return Ok(false);
        }
        let r = self.store.delete(key).await;
        self.meta.invalidate(key);
        match r {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_prefix(&self, prefix: &Path) -> Result<()> {
        let keys = self.store.list(Some(prefix)).map_ok(|m| m.location).boxed();
        let mut deleted = self.store.delete_stream(keys);
        let mut result = Ok(());
        while let Some(r) = deleted.next().await {
            match r {
                Ok(key) => self.meta.invalidate(&key),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        // A key whose deletion failed part way may be gone: forget the
        // prefix's repository and everything else rather than guess.
        if result.is_err() {
            self.meta.clear();
        }
        result
    }

    /// Lists the child "directories" of `prefix` (their last component).
    async fn child_names(&self, prefix: &Path) -> Result<Vec<String>> {
        match self.store.list_with_delimiter(Some(prefix)).await {
            Ok(list) => Ok(list
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_owned))
                .collect()),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    // ----- blobs -----

    /// Size of a blob's content, if it is stored (in any repository).
    pub async fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        self.size_of(&layout::blob_data(d)).await
    }

    /// Size of a blob if `name` holds it: linked in the repository and stored.
    pub async fn repo_blob_size(&self, name: &RepoName, d: &Digest) -> Result<Option<u64>> {
        if !self.exists(&layout::layer_link(name, d)).await? {
            return Ok(None);
        }
        self.blob_size(d).await
    }

    /// Streams a blob's content, whole or a byte range of it.
    pub async fn blob_get(&self, d: &Digest, range: Option<GetRange>) -> Result<Option<GetResult>> {
        let opts = GetOptions {
            range,
            ..Default::default()
        };
        match self.store.get_opts(&layout::blob_data(d), opts).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams a blob's content, whole or bytes `range` of it. With read
    /// coalescing on, a whole-blob GET joins (or starts) the shared read of
    /// that blob, and a range GET reads from one already running.
    pub async fn blob_body(
        &self,
        d: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>> {
        if let Some(reads) = &self.reads {
            let shared = match &range {
                None => Some(reads.join_or_start(&self.store, layout::blob_data(d), d)),
                Some(_) => reads.in_progress(d),
            };
            if let Some(read) = shared {
                return match read.started().await {
                    Ok(_) => {
                        let (start, end) = range.map_or((0, None), |r| (r.start, Some(r.end)));
                        Ok(Some(read.reader(start, end).boxed()))
                    }
                    Err(read_coalesce::ReadError::NotFound) => Ok(None),
                    Err(e) => Err(StorageError::Backend(object_store::Error::Generic {
                        store: "shared read",
                        source: Box::new(e),
                    })),
                };
            }
        }
        let range = range.map(GetRange::Bounded);
        Ok(self
            .blob_get(d, range)
            .await?
            .map(|r| r.into_stream().map_err(std::io::Error::other).boxed()))
    }

    pub async fn link_blob(&self, name: &RepoName, d: &Digest) -> Result<()> {
        self.write_link(&layout::layer_link(name, d), d).await
    }

    /// Removes a blob from a repository; its content stays until garbage
    /// collection, since other repositories may share it.
    pub async fn unlink_blob(&self, name: &RepoName, d: &Digest) -> Result<bool> {
        self.delete_if_exists(&layout::layer_link(name, d)).await
    }

    // ----- manifests and tags -----

    pub async fn manifest_in_repo(&self, name: &RepoName, d: &Digest) -> Result<bool> {
        self.exists(&layout::revision_link(name, d)).await
    }

    /// A manifest's bytes, if `name` holds it.
    pub async fn read_manifest(&self, name: &RepoName, d: &Digest) -> Result<Option<Bytes>> {
        if !self.manifest_in_repo(name, d).await? {
            return Ok(None);
        }
        self.manifest_bytes(d).await
    }

    /// A manifest's bytes by digest (content-addressed: cached for good).
    async fn manifest_bytes(&self, d: &Digest) -> Result<Option<Bytes>> {
        Ok(self.manifest_typed(d).await?.map(|m| m.0))
    }

    /// ... with its media type (`oci::manifest::stored_media_type`).
    async fn manifest_typed(&self, d: &Digest) -> Result<Option<(Bytes, Arc<str>)>> {
        if let Some(hit) = self.manifests.get(d) {
            return Ok(Some(hit));
        }
        match self.store.get(&layout::blob_data(d)).await {
            Ok(r) => {
                let body = r.bytes().await?;
                let media_type: Arc<str> = crate::oci::manifest::stored_media_type(&body).into();
                self.manifests.insert(d, &body, &media_type);
                Ok(Some((body, media_type)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn resolve_tag(&self, name: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        self.read_link(&layout::tag_current_link(name, tag)).await
    }

    /// Lists `referrer` among the referrers of `subject` in `name`.
    pub async fn index_referrer(
        &self,
        name: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        self.write_link(&layout::referrer_link(name, subject, referrer), referrer)
            .await
    }

    /// Stores a manifest whose content was validated and whose references
    /// were checked, then points `tag` (if any) at it.
    pub async fn put_manifest(
        &self,
        name: &RepoName,
        d: &Digest,
        body: Bytes,
        subject: Option<&Digest>,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let data = layout::blob_data(d);
        if !self.exists(&data).await? {
            let r = self.store.put(&data, PutPayload::from(body)).await;
            self.meta.invalidate(&data);
            r?;
        }
        self.link_blob_if_missing(name, d).await?;
        self.write_link(&layout::revision_link(name, d), d).await?;
        if let Some(subject) = subject {
            self.index_referrer(name, subject, d).await?;
        }
        if let Some(tag) = tag {
            self.write_link(&layout::tag_index_link(name, tag, d), d)
                .await?;
            self.write_link(&layout::tag_current_link(name, tag), d)
                .await?;
        }
        Ok(())
    }

    async fn link_blob_if_missing(&self, name: &RepoName, d: &Digest) -> Result<()> {
        // registry:2 links manifests under _layers too; keeping that makes
        // its garbage collector and ours agree on what a repository holds.
        let key = layout::layer_link(name, d);
        if !self.exists(&key).await? {
            self.write_link(&key, d).await?;
        }
        Ok(())
    }

    /// Deletes a manifest from a repository, with every tag that points at
    /// it and its referrers entry. Returns false when it was not there.
    /// Removes manifest `d` from `name` with every tag that points at it;
    /// the tags it removed, or None when `name` does not hold `d`.
    pub async fn delete_manifest(
        &self,
        name: &RepoName,
        d: &Digest,
        subject: Option<&Digest>,
    ) -> Result<Option<Vec<Tag>>> {
        if !self.manifest_in_repo(name, d).await? {
            return Ok(None);
        }
        let mut untagged = Vec::new();
        for tag in self.tags(name).await?.unwrap_or_default() {
            let Ok(tag) = tag.parse::<Tag>() else {
                continue;
            };
            if self.resolve_tag(name, &tag).await?.as_ref() == Some(d) {
                self.remove_tag(name, &tag).await?;
                untagged.push(tag);
            }
        }
        if let Some(subject) = subject {
            self.delete_if_exists(&layout::referrer_link(name, subject, d))
                .await?;
        }
        self.delete_if_exists(&layout::revision_link(name, d))
            .await?;
        Ok(Some(untagged))
    }

    pub async fn delete_tag(&self, name: &RepoName, tag: &Tag) -> Result<bool> {
        if self.resolve_tag(name, tag).await?.is_none() {
            return Ok(false);
        }
        self.remove_tag(name, tag).await?;
        Ok(true)
    }

    /// The repository's tags in lexical order, or None for a repository that
    /// does not exist (holds no blobs, manifests or uploads). A tag counts
    /// only once its `current/link` exists: a tag directory without one is
    /// what a crash between the two tag writes leaves, and names nothing.
    pub async fn tags(&self, name: &RepoName) -> Result<Option<Vec<String>>> {
        if self
            .child_names(&layout::repository(name))
            .await?
            .is_empty()
        {
            return Ok(None);
        }
        let dir = layout::tags_dir(name);
        let depth = dir.parts().count();
        let metas: Vec<_> = match self.store.list(Some(&dir)).try_collect().await {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut tags: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                let parts: Vec<_> = m.location.parts().skip(depth).collect();
                match parts.as_slice() {
                    [tag, current, link]
                        if current.as_ref() == "current" && link.as_ref() == "link" =>
                    {
                        Some(tag.as_ref().to_owned())
                    }
                    _ => None,
                }
            })
            .collect();
        tags.sort();
        Ok(Some(tags))
    }

    /// Removes a tag: its `current/link` first, so that a crash part way
    /// leaves a tag that is either whole or gone.
    async fn remove_tag(&self, name: &RepoName, tag: &Tag) -> Result<()> {
        self.delete_if_exists(&layout::tag_current_link(name, tag))
            .await?;
        self.delete_prefix(&layout::tag_dir(name, tag)).await
    }

    /// Every repository that holds manifests, in lexical order.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        self.repositories_under(None).await
    }

    /// The repositories with manifests whose names start with `prefix`
    /// (a name: `team` gives `team`, `team/app`, ..., and `teamx` too,
    /// which callers filter), in lexical order.
    pub async fn repositories_under(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let start = match prefix {
            None => (layout::repositories_root(), String::new()),
            Some(p) => (
                Path::from(format!("{}/{p}", layout::repositories_root())),
                p.to_string(),
            ),
        };
        let mut pending = vec![start];
        while let Some((prefix, name)) = pending.pop() {
            for child in self.child_names(&prefix).await? {
                // Name components never start with '_', so `_manifests` and
                // friends mark the end of a repository name.
                if child == "_manifests" {
                    found.push(name.clone());
                } else if !child.starts_with('_') {
                    let full = if name.is_empty() {
                        child.clone()
                    } else {
                        format!("{name}/{child}")
                    };
                    pending.push((prefix.clone().join(child.as_str()), full));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Digests of the manifests in `name` whose subject is `subject`.
    pub async fn referrers(&self, name: &RepoName, subject: &Digest) -> Result<Vec<Digest>> {
        let prefix = layout::referrers_dir(name, subject);
        let metas: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<Digest> = metas
            .iter()
            .filter_map(|m| layout::digest_of_link_key(&m.location))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// `Storage::cached()`: the pull path's reads, from the metadata cache
/// within its ttl (`meta_cache` has the coherence contract).
pub struct Cached<'a>(&'a Storage);

impl Cached<'_> {
    /// The cached value for `key`, else `read`'s, stored. Concurrent misses
    /// of one key wait for the first (`MetaCache::turn`) instead of all
    /// reading storage: an expired tag list of 1,000 tags under 32
    /// connections was 32 listings at once, each slower than the ttl.
    async fn lookup<F, Fut>(&self, key: &str, read: F) -> Result<meta_cache::Value>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<meta_cache::Value>>,
    {
        let meta = &self.0.meta;
        if let Ok(v) = meta.get(key) {
            return Ok(v);
        }
        let Some(_turn) = meta.turn(key).await else {
            return read().await; // the cache is off
        };
        let ticket = match meta.get(key) {
            Ok(v) => return Ok(v),
            Err(ticket) => ticket,
        };
        let v = read().await?;
        meta.fill(ticket, key, v.clone());
        Ok(v)
    }

    /// `key` is a `layout::*_raw` key: a hit builds no `Path`.
    async fn size_of(&self, key: String) -> Result<Option<u64>> {
        let v = self
            .lookup(&key, || async {
                let path = layout::path(key.clone());
                Ok(meta_cache::Value::Size(self.0.size_of(&path).await?))
            })
            .await?;
        match v {
            meta_cache::Value::Size(s) => Ok(s),
            _ => self.0.size_of(&layout::path(key)).await,
        }
    }

    pub async fn resolve_tag(&self, name: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let key = layout::tag_current_link_raw(name, tag);
        let v = self
            .lookup(&key, || async {
                let path = layout::path(key.clone());
                Ok(meta_cache::Value::Link(self.0.read_link(&path).await?))
            })
            .await?;
        match v {
            meta_cache::Value::Link(d) => Ok(d),
            _ => self.0.read_link(&layout::path(key)).await,
        }
    }

    pub async fn manifest_in_repo(&self, name: &RepoName, d: &Digest) -> Result<bool> {
        Ok(self
            .size_of(layout::revision_link_raw(name, d))
            .await?
            .is_some())
    }

    pub async fn read_manifest(&self, name: &RepoName, d: &Digest) -> Result<Option<Bytes>> {
        Ok(self.read_manifest_typed(name, d).await?.map(|m| m.0))
    }

    /// A manifest's bytes with the media type it is served with (worked
    /// out once per digest, with the bytes: they never change).
    pub async fn read_manifest_typed(
        &self,
        name: &RepoName,
        d: &Digest,
    ) -> Result<Option<(Bytes, Arc<str>)>> {
        if !self.manifest_in_repo(name, d).await? {
            return Ok(None);
        }
        self.0.manifest_typed(d).await
    }

    pub async fn repo_blob_size(&self, name: &RepoName, d: &Digest) -> Result<Option<u64>> {
        if self
            .size_of(layout::layer_link_raw(name, d))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        self.size_of(layout::blob_data_raw(d)).await
    }

    pub async fn tags(&self, name: &RepoName) -> Result<Option<Arc<Vec<String>>>> {
        let key = meta_cache::tags_key(&layout::repository(name));
        let v = self
            .lookup(&key, || async {
                Ok(meta_cache::Value::Tags(
                    self.0.tags(name).await?.map(Arc::new),
                ))
            })
            .await?;
        match v {
            meta_cache::Value::Tags(t) => Ok(t),
            _ => Ok(self.0.tags(name).await?.map(Arc::new)),
        }
    }
}
