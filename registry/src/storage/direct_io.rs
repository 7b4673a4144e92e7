//! The local-disk backend: `object_store`'s `LocalFileSystem` for listings,
//! small reads and conditional writes (other small files are written by
//! `durable_files`), with blob data moved by `O_DIRECT` I/O.
//!
//! Why: blob data is written once and streamed out in large sequential
//! pieces. Through the page cache every byte costs a copy into a freshly
//! allocated cache page and, with fsync on, a flush of all of them at the
//! end of the upload; with `O_DIRECT` the disk is written while the body is
//! still arriving and the fsync at the end has almost nothing left to do.
//! On this project's test machines buffered writes reach ~330 MB/s while
//! `O_DIRECT` writes reach ~1.3 GB/s. (MinIO writes object data the same
//! way on Linux.) The first read of a large object uses `O_DIRECT` too, so
//! a blob just pushed is not read back through a cold page cache (~340 MB/s
//! here, against ~1.4 GB/s direct). An object of up to `PAGE_CACHE_MAX`
//! read again is hot (a layer every node of a swarm pulls, a warm mirror):
//! after its first read the kernel is asked to bring it into the page cache
//! in the background (`POSIX_FADV_WILLNEED`), and later reads go through
//! the page cache, which serves them from memory (bench/proxy.sh: a warm
//! pull of 24 MiB in 16 ms instead of 41).
//!
//! `O_DIRECT` needs buffers, offsets and lengths aligned to the device's
//! block size; everything that is not aligned (the tail of an object, a part
//! of odd size) goes through a second, buffered descriptor of the same file.
//! If the filesystem refuses `O_DIRECT` (tmpfs on older kernels, some FUSE
//! filesystems) the probe at start switches it off and every operation goes
//! to `LocalFileSystem` unchanged.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use super::aligned::{is_aligned, Aligned, ALIGN};
use super::durable_files;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Objects smaller than this are read through the page cache: links,
/// records and small configs, which are read often and cheap to cache.
const DIRECT_READ_MIN: u64 = 1 << 20;
/// Size of each read of a large object (direct), and of a small one.
const DIRECT_READ_BLOCK: usize = 1 << 20;
const BUFFERED_READ_BLOCK: usize = 256 * 1024;
/// Reads of one object in flight at once: a few, so the device queue stays
/// busy while a block is being sent (measured: 1 → ~550, 4 → ~800 MiB/s).
const READS_IN_FLIGHT: usize = 4;
/// Memory for blocks read ahead of their consumers, across all reads of
/// one store: a pull storm of 64 clients × 3 layers would otherwise hold
/// 4 MiB per read (~770 MiB). Past it, reads go on one block at a time.
const READ_AHEAD_BUDGET: usize = 64 << 20;
/// What one read-ahead permit stands for.
const AHEAD_UNIT: usize = 64 << 10;
/// Objects up to this size are read through the page cache once they were
/// read before (larger ones, always `O_DIRECT`: they would only push the
/// hot ones out).
const PAGE_CACHE_MAX: u64 = 64 << 20;
/// How many objects are remembered as read (their paths).
const HOT_ENTRIES: usize = 4096;

const STORE: &str = "DirectIo";

fn generic(source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(source),
    }
}

fn finished() -> object_store::Error {
    generic(std::io::Error::other("upload already completed or aborted"))
}

fn joined(r: Result<object_store::Result<()>, tokio::task::JoinError>) -> object_store::Result<()> {
    r.unwrap_or_else(|e| Err(generic(std::io::Error::other(e))))
}

/// Whether `dir` accepts `O_DIRECT` writes and reads.
pub fn supported(dir: &FsPath) -> bool {
    let probe = dir.join(format!(".direct-io-probe#{}", rand::random::<u32>()));
    let result = (|| {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)?;
        let mut block = Aligned::zeroed(ALIGN);
        file.write_all_at(block.as_ref(), 0)?;
        file.read_exact_at(block.as_mut_slice(), 0)
    })();
    let _ = std::fs::remove_file(&probe);
    result.is_ok()
}

pub struct DirectIo {
    inner: Arc<LocalFileSystem>,
    fsync: bool,
    /// The read-ahead budget (`READ_AHEAD_BUDGET`), in `AHEAD_UNIT`s.
    ahead: Arc<Semaphore>,
    /// Objects of up to `PAGE_CACHE_MAX` read before: read buffered.
    read_before: quick_cache::sync::Cache<PathBuf, ()>,
}

impl DirectIo {
    pub fn new(inner: Arc<LocalFileSystem>, fsync: bool) -> DirectIo {
        DirectIo::with_read_ahead(inner, fsync, READ_AHEAD_BUDGET)
    }

    fn with_read_ahead(inner: Arc<LocalFileSystem>, fsync: bool, budget: usize) -> DirectIo {
        DirectIo {
            inner,
            fsync,
            ahead: Arc::new(Semaphore::new(budget / AHEAD_UNIT)),
            read_before: quick_cache::sync::Cache::new(HOT_ENTRIES),
        }
    }
}

impl fmt::Display for DirectIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirectIo({})", self.inner)
    }
}

impl fmt::Debug for DirectIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirectIo({:?})", self.inner)
    }
}

/// A file written at positioned offsets: the aligned front of each write
/// through an `O_DIRECT` descriptor (when there is one), everything else
/// through a buffered descriptor of the same file.
pub(super) struct DataFile {
    direct: Option<File>,
    buffered: File,
}

impl DataFile {
    /// An existing file, to write more of (an upload's chunk continued by
    /// the next PATCH, `chunk_files`). `direct`: whether the filesystem
    /// takes `O_DIRECT` (the store was opened with it).
    pub(super) fn open(path: &FsPath, direct: bool) -> std::io::Result<DataFile> {
        let buffered = OpenOptions::new().write(true).open(path)?;
        let direct = match direct {
            true => Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)?,
            ),
            false => None,
        };
        Ok(DataFile { direct, buffered })
    }

    /// Writes `data` at `offset`: the aligned front through `O_DIRECT`, the
    /// rest through the page cache. The two never share a block, since the
    /// direct part always ends on a block boundary.
    pub(super) fn write_at(&self, offset: u64, data: &PutPayload) -> std::io::Result<()> {
        let len = data.content_length();
        let direct = match &self.direct {
            Some(direct) if offset.is_multiple_of(ALIGN as u64) && len >= ALIGN => direct,
            _ => {
                let mut at = offset;
                for piece in data.iter() {
                    self.buffered.write_all_at(piece, at)?;
                    at += piece.len() as u64;
                }
                return Ok(());
            }
        };
        let direct_len = len - len % ALIGN;
        let mut pieces = data.iter().map(|b| b.as_ref());
        let mut carry: &[u8] = &[];
        match data.as_ref() {
            // One aligned block (what `aligned::reblock` makes): as it is.
            [block] if is_aligned(block) => {
                direct.write_all_at(&block[..direct_len], offset)?;
                pieces.next();
                carry = &block[direct_len..];
            }
            _ => {
                let mut block = Aligned::with_capacity(direct_len);
                let mut need = direct_len;
                for piece in pieces.by_ref() {
                    let take = need.min(piece.len());
                    block.extend(&piece[..take]);
                    need -= take;
                    if need == 0 {
                        carry = &piece[take..];
                        break;
                    }
                }
                direct.write_all_at(block.as_ref(), offset)?;
            }
        }
        let mut at = offset + direct_len as u64;
        for piece in std::iter::once(carry).chain(pieces) {
            self.buffered.write_all_at(piece, at)?;
            at += piece.len() as u64;
        }
        Ok(())
    }

    /// Flushes what was written (one flush covers both descriptors: they
    /// share the inode).
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.buffered.sync_all()
    }
}

/// The staging file of an upload: `<dest>#<digits>`, a name
/// `LocalFileSystem` never lists, so a crash leaves nothing visible.
struct Staged {
    dest: PathBuf,
    path: PathBuf,
    file: DataFile,
    sync_dirs: bool,
}

impl Staged {
    /// `sync_dirs`: make new directories durable (not for an upload
    /// session's chunks: `durability`).
    fn create(dest: PathBuf, sync_dirs: bool) -> std::io::Result<Staged> {
        let path = durable_files::staging_path(&dest);
        let direct = durable_files::with_dirs(&dest, sync_dirs, || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
        })?;
        let buffered = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(Staged {
            dest,
            path,
            file: DataFile {
                direct: Some(direct),
                buffered,
            },
            sync_dirs,
        })
    }

    /// Makes the staged file the object: flush, rename into place, flush
    /// the directory entry.
    fn publish(&self, fsync: bool) -> std::io::Result<()> {
        if fsync {
            self.file.sync()?;
        }
        std::fs::rename(&self.path, &self.dest)?;
        if fsync && self.sync_dirs {
            durable_files::sync_parent(&self.dest)?;
        }
        Ok(())
    }

    fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Parts write disjoint ranges with positioned writes, so several are in
/// flight at once, each holding its own reference to the staged file.
struct DirectUpload {
    staged: Option<Arc<Staged>>,
    offset: u64,
    fsync: bool,
}

impl fmt::Debug for DirectUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DirectUpload({:?})",
            self.staged.as_ref().map(|s| &s.path)
        )
    }
}

#[async_trait]
impl MultipartUpload for DirectUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Some(staged) = self.staged.clone() else {
            return futures::future::ready(Err(finished())).boxed();
        };
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        tokio::task::spawn_blocking(move || staged.file.write_at(offset, &data).map_err(generic))
            .map(joined)
            .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        // `Storage::stream_into` waits for every part before completing, so
        // no write is in flight any more.
        let staged = self.staged.take().ok_or_else(finished)?;
        let fsync = self.fsync;
        let published = tokio::task::spawn_blocking(move || {
            staged.publish(fsync).map_err(|e| {
                let _ = staged.remove();
                generic(e)
            })
        })
        .await;
        joined(published)?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        match self.staged.take() {
            Some(staged) => {
                joined(tokio::task::spawn_blocking(move || staged.remove().map_err(generic)).await)
            }
            None => Ok(()),
        }
    }
}

impl Drop for DirectUpload {
    fn drop(&mut self) {
        // Dropped unfinished (the client went away): remove the staging file.
        if let Some(staged) = self.staged.take() {
            let remove = move || drop(staged.remove());
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(remove)),
                Err(_) => remove(),
            }
        }
    }
}

/// A block read from a file; its read-ahead permit, if it has one, goes
/// back when the block's last `Bytes` is dropped (sent to the client).
struct Block {
    buf: Aligned,
    _ahead: Option<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

/// Read-ahead budget permits for `len` bytes.
fn ahead_permits(len: usize) -> u32 {
    len.div_ceil(AHEAD_UNIT) as u32
}

/// One read of a file in progress (`read_stream`).
struct FileRead {
    file: Arc<File>,
    /// Where the next block to start begins (aligned when direct).
    next: u64,
    range: Range<u64>,
    direct: bool,
    block: u64,
    queue: VecDeque<tokio::task::JoinHandle<object_store::Result<Bytes>>>,
    ahead: Arc<Semaphore>,
}

impl FileRead {
    /// Starts reading the next block on the blocking pool.
    fn start(&mut self, permit: Option<OwnedSemaphorePermit>) {
        let (at, end, range) = (self.next, self.range.end, self.range.clone());
        // Direct reads cover whole blocks; the slice below trims them.
        let want = (self.block.min(end - at) as usize).next_multiple_of(if self.direct {
            ALIGN
        } else {
            1
        });
        self.next = at + self.block;
        let keep = (range.start.max(at) - at) as usize..(end.min(at + want as u64) - at) as usize;
        let file = self.file.clone();
        self.queue.push_back(tokio::task::spawn_blocking(move || {
            let mut buf = Aligned::zeroed(want);
            let mut filled = 0;
            while filled < want {
                match file.read_at(&mut buf.as_mut_slice()[filled..], at + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(generic(e)),
                }
            }
            if filled < keep.end {
                return Err(generic(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "file shorter than its recorded size",
                )));
            }
            let block = Block {
                buf,
                _ahead: permit,
            };
            Ok(Bytes::from_owner(block).slice(keep))
        }));
    }

    /// The block the consumer wants next always starts (every read
    /// progresses); up to `READS_IN_FLIGHT - 1` more start ahead of it
    /// while the process-wide read-ahead budget has room for them.
    fn fill(&mut self) {
        if self.queue.is_empty() && self.next < self.range.end {
            self.start(None);
        }
        while self.queue.len() < READS_IN_FLIGHT && self.next < self.range.end {
            let len = self.block.min(self.range.end - self.next) as usize;
            match self
                .ahead
                .clone()
                .try_acquire_many_owned(ahead_permits(len))
            {
                Ok(permit) => self.start(Some(permit)),
                Err(_) => break,
            }
        }
    }
}

/// Asks the kernel to read the first `len` bytes of `file` into the page
/// cache in the background (without waiting, on a descriptor of its own),
/// for the reads after this one.
fn warm_page_cache(file: &File, len: u64) {
    let Ok(file) = file.try_clone() else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a descriptor this closure owns.
        unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                0,
                len as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    });
}

/// Reads `range` of `file` as a stream of `Bytes`, `O_DIRECT` when `direct`
/// (the file must then be opened with it), at most `READS_IN_FLIGHT` blocks
/// ahead of the consumer, the blocks beyond the first within `ahead`.
fn read_stream(
    file: File,
    range: Range<u64>,
    direct: bool,
    ahead: Arc<Semaphore>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let (block, first) = if direct {
        (
            DIRECT_READ_BLOCK as u64,
            range.start - range.start % ALIGN as u64,
        )
    } else {
        (BUFFERED_READ_BLOCK as u64, range.start)
    };
    let read = FileRead {
        file: Arc::new(file),
        next: first,
        range,
        direct,
        block,
        queue: VecDeque::new(),
        ahead,
    };
    futures::stream::unfold(read, |mut read| async move {
        read.fill();
        let next = read.queue.pop_front()?;
        let got = next
            .await
            .unwrap_or_else(|e| Err(generic(std::io::Error::other(e))));
        if got.is_err() {
            // Nothing after a failed block.
            read.queue.clear();
            read.next = read.range.end;
        }
        Some((got, read))
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for DirectIo {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        // Links, manifests, records: written with only the fsyncs they need
        // (`durable_files`). Conditional puts stay `LocalFileSystem`'s.
        if opts.mode != PutMode::Overwrite || !opts.attributes.is_empty() {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let fsync = self.fsync;
        let written =
            tokio::task::spawn_blocking(move || durable_files::write_file(&dest, &payload, fsync))
                .await
                .map_err(|e| generic(std::io::Error::other(e)))?;
        written.map_err(generic)?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let dest = self.inner.path_to_filesystem(location)?;
        let fsync = self.fsync;
        // A session's chunk: its data is flushed (a part record will name
        // it), its directory entries need not be (`durability`).
        let sync_dirs = fsync && !super::layout::is_session_key(location);
        let staged = tokio::task::spawn_blocking(move || Staged::create(dest, sync_dirs))
            .await
            .map_err(|e| generic(std::io::Error::other(e)))?
            .map_err(generic)?;
        Ok(Box::new(DirectUpload {
            staged: Some(Arc::new(staged)),
            offset: 0,
            fsync,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let mut result = self.inner.get_opts(location, options).await?;
        let GetResultPayload::File(file, path) = result.payload else {
            return Ok(result);
        };
        if head {
            // Only the metadata is wanted: no reads, no second open.
            result.payload = GetResultPayload::File(file, path);
            return Ok(result);
        }
        let range = result.range.clone();
        let cacheable = result.meta.size <= PAGE_CACHE_MAX;
        if cacheable && self.read_before.get(&path).is_some() {
            // Hot: from the page cache (warmed after its first read).
            result.payload =
                GetResultPayload::Stream(read_stream(file, range, false, self.ahead.clone()));
            return Ok(result);
        }
        if cacheable && range.end - range.start >= DIRECT_READ_MIN {
            self.read_before.insert(path.clone(), ());
            warm_page_cache(&file, result.meta.size);
        }
        let stream = if range.end - range.start >= DIRECT_READ_MIN {
            // The same file again, unbuffered; if that fails (it was just
            // removed, say), the buffered descriptor still reads it.
            let reopened = tokio::task::spawn_blocking(move || {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
            })
            .await;
            match reopened {
                Ok(Ok(direct)) => read_stream(direct, range, true, self.ahead.clone()),
                _ => read_stream(file, range, false, self.ahead.clone()),
            }
        } else {
            read_stream(file, range, false, self.ahead.clone())
        };
        result.payload = GetResultPayload::Stream(stream);
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::{GetRange, ObjectStoreExt};

    fn store(dir: &FsPath) -> DirectIo {
        assert!(supported(dir), "the test directory must accept O_DIRECT");
        let local = LocalFileSystem::new_with_prefix(dir).unwrap();
        DirectIo::new(Arc::new(local), true)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    use super::durable_files::files_under as files;

    async fn upload(store: &DirectIo, key: &Path, parts: &[&[u8]]) {
        let mut up = store.put_multipart(key).await.unwrap();
        let writes: Vec<_> = parts
            .iter()
            .map(|p| up.put_part(PutPayload::from(p.to_vec())))
            .collect();
        futures::future::try_join_all(writes).await.unwrap();
        up.complete().await.unwrap();
    }

    async fn read(store: &DirectIo, key: &Path, range: Option<GetRange>) -> Vec<u8> {
        let opts = GetOptions {
            range,
            ..Default::default()
        };
        let r = store.get_opts(key, opts).await.unwrap();
        let pieces: Vec<Bytes> = r.into_stream().try_collect().await.unwrap();
        pieces.concat()
    }

    #[tokio::test]
    async fn parts_of_any_size_and_alignment_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let all = data(3 * ALIGN * 256 + 4321);
        // Aligned parts, an odd part in the middle (everything after it is
        // unaligned), and a short tail.
        let cuts = [
            0,
            1 << 20,
            2 << 20,
            (2 << 20) + 5000,
            all.len() - 7,
            all.len(),
        ];
        let parts: Vec<&[u8]> = cuts.windows(2).map(|w| &all[w[0]..w[1]]).collect();
        let key = Path::from("a/b/data");
        upload(&store, &key, &parts).await;
        assert_eq!(read(&store, &key, None).await, all);
        assert_eq!(files(dir.path()), ["a/b/data"], "no staging file is left");
    }

    #[tokio::test]
    async fn ranges_of_a_large_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let all = data((3 << 20) + 123);
        let key = Path::from("blob");
        upload(&store, &key, &[&all]).await;
        let n = all.len() as u64;
        for (range, want) in [
            (GetRange::Bounded(1..4097), &all[1..4097]),
            (
                GetRange::Bounded(4095..(2 << 20) + 1),
                &all[4095..(2 << 20) + 1],
            ),
            (GetRange::Offset((1 << 20) - 1), &all[(1 << 20) - 1..]),
            (GetRange::Suffix(10), &all[all.len() - 10..]),
            (GetRange::Bounded(0..n), &all[..]),
        ] {
            let label = format!("{range:?}");
            assert_eq!(read(&store, &key, Some(range)).await, want, "{label}");
        }
    }

    /// The first read of a large object goes direct and marks it; the reads
    /// after it go through the page cache and return the same bytes.
    #[tokio::test]
    async fn an_object_read_again_comes_from_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let all = data((2 << 20) + 77);
        let key = Path::from("hot");
        upload(&store, &key, &[&all]).await;
        let file = dir.path().join("hot");
        assert!(store.read_before.get(&file).is_none());
        assert_eq!(read(&store, &key, None).await, all);
        assert!(
            store.read_before.get(&file).is_some(),
            "the first read marks it"
        );
        assert_eq!(read(&store, &key, None).await, all);
        let range = GetRange::Bounded(4095..(1 << 20) + 9);
        assert_eq!(
            read(&store, &key, Some(range)).await,
            &all[4095..(1 << 20) + 9]
        );
        // Small objects are always buffered and never marked.
        let small = Path::from("small");
        upload(&store, &small, &[b"x"]).await;
        read(&store, &small, None).await;
        assert!(store.read_before.get(&dir.path().join("small")).is_none());
    }

    #[tokio::test]
    async fn small_objects_and_small_uploads_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let key = Path::from("small");
        upload(&store, &key, &[b"hello ", b"world"]).await;
        assert_eq!(read(&store, &key, None).await, b"hello world");
        let empty = Path::from("empty");
        upload(&store, &empty, &[]).await;
        assert_eq!(read(&store, &empty, None).await, b"");
    }

    #[tokio::test]
    async fn abandoned_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut aborted = store.put_multipart(&Path::from("x/aborted")).await.unwrap();
        aborted
            .put_part(PutPayload::from(data(ALIGN * 2)))
            .await
            .unwrap();
        aborted.abort().await.unwrap();
        let mut dropped = store.put_multipart(&Path::from("x/dropped")).await.unwrap();
        dropped.put_part(PutPayload::from(data(100))).await.unwrap();
        drop(dropped);
        // The drop removes its file on the blocking pool; wait for it.
        for _ in 0..100 {
            if files(dir.path()).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert!(listed.is_empty());
    }
    #[tokio::test]
    async fn read_ahead_stays_in_its_budget_and_every_read_progresses() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let budget = 2 * DIRECT_READ_BLOCK;
        let store = DirectIo::with_read_ahead(Arc::new(local), true, budget);
        let total = budget / AHEAD_UNIT;
        let all = data((8 << 20) + 5);
        let key = Path::from("blob");
        upload(&store, &key, &[&all]).await;

        // A slow client: its first block is held, its read-ahead fills the
        // budget and stays there while the client does not read on.
        let mut slow = store.get(&key).await.unwrap().into_stream();
        let first = slow.try_next().await.unwrap().unwrap();
        assert_eq!(&first[..], &all[..first.len()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.ahead.available_permits() == total {
            assert!(
                std::time::Instant::now() < deadline,
                "no read-ahead started"
            );
            tokio::task::yield_now().await;
        }
        // Others still read whole objects, block by block, correctly.
        for _ in 0..3 {
            assert_eq!(read(&store, &key, None).await, all);
        }
        // The slow client reads on and finishes; every permit comes back.
        let mut got = first.to_vec();
        while let Some(piece) = slow.try_next().await.unwrap() {
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, all);
        drop((slow, first));
        while store.ahead.available_permits() != total {
            assert!(
                std::time::Instant::now() < deadline,
                "permits were not returned"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        // No budget at all: one block at a time, still correct.
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let none = DirectIo::with_read_ahead(Arc::new(local), true, 0);
        assert_eq!(
            read(&none, &key, Some(GetRange::Offset(4095))).await,
            &all[4095..]
        );
    }
}
