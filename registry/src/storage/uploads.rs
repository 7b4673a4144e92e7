//! Upload sessions, kept entirely in storage so that a restarted process, or
//! another replica, continues any upload.
//!
//! Each PATCH streams its body into a chunk object while hashing it, then
//! records `parts/<end>` = {start, end, chunk, sha256 state after end}.
//! The part record is created with `PutMode::Create`, so of two racing
//! appends at the same offset only one is recorded; the chain of records from
//! the largest `end` back to 0 names exactly the bytes that were hashed.
//! On the local disk a PATCH writes on into the previous PATCH's chunk file
//! (`chunk_files`: then the record also says at which offset of the upload
//! that file begins); elsewhere each PATCH writes a chunk object of its own.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::{JoinError, JoinSet};

use super::aligned;
use super::chunk_files::ChunkFiles;
use super::direct_io::DataFile;
use super::hashing::{PipelinedSha256, ResumableSha256};
use super::{is_not_found, layout, Storage, StorageError};
use crate::oci::{Algorithm, Digest, RepoName};

/// At most this many parts of one upload are in flight to the backend.
const MAX_PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl FromStr for UploadId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Re-formatting makes the id canonical and safe as a key component.
        uuid::Uuid::parse_str(s).map(|u| UploadId(u.hyphenated().to_string()))
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl UploadId {
    fn new() -> UploadId {
        UploadId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStatus {
    /// Bytes received so far.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload session not found")]
    Unknown,
    #[error("chunk does not start at the upload's current size {size}")]
    OutOfOrder { size: u64 },
    #[error("request body ended early or failed: {0}")]
    Body(String),
    #[error("request body had {got} bytes where {expected} were announced")]
    LengthMismatch { expected: u64, got: u64 },
    #[error("content digest is {computed}, not the digest given")]
    DigestMismatch { computed: Digest },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<object_store::Error> for UploadError {
    fn from(e: object_store::Error) -> Self {
        UploadError::Storage(e.into())
    }
}

#[derive(Debug)]
struct PartRecord {
    start: u64,
    end: u64,
    chunk: String,
    /// PATCHes may write on into `chunk`'s file (`chunk_files`).
    open: bool,
    /// The offset in the upload at which `chunk`'s file begins, when a
    /// PATCH wrote on into an earlier PATCH's file; absent, the chunk holds
    /// this part from its first byte.
    from: Option<u64>,
    sha256: String,
}

/// A part record as stored. An open chunk is named by `file`, not `chunk`:
/// a registry from before chunk files (which takes a chunk to hold exactly
/// its part, and copies it whole) then refuses the record as corrupt
/// instead of misreading it, so during a rolling update an upload that
/// moves between versions fails and the client pushes the blob again.
#[derive(Serialize, Deserialize)]
struct StoredPart {
    start: u64,
    end: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<u64>,
    sha256: String,
}

impl From<&PartRecord> for StoredPart {
    fn from(p: &PartRecord) -> StoredPart {
        let name = Some(p.chunk.clone());
        StoredPart {
            start: p.start,
            end: p.end,
            chunk: if p.open { None } else { name.clone() },
            file: if p.open { name } else { None },
            from: p.from,
            sha256: p.sha256.clone(),
        }
    }
}

impl StoredPart {
    /// The record, if it is one this registry writes.
    fn parse(self) -> Option<PartRecord> {
        let (chunk, open) = match (self.chunk, self.file, self.from) {
            (Some(chunk), None, None) => (chunk, false),
            (None, Some(file), _) => (file, true),
            _ => return None,
        };
        Some(PartRecord {
            start: self.start,
            end: self.end,
            chunk,
            open,
            from: self.from,
            sha256: self.sha256,
        })
    }
}

impl PartRecord {
    fn file_start(&self) -> u64 {
        self.from.unwrap_or(self.start)
    }

    /// Where this part's bytes are in its chunk.
    fn file_range(&self) -> Range<u64> {
        self.start - self.file_start()..self.end - self.file_start()
    }
}

/// The chunk ranges that hold `chain`'s bytes in order, consecutive parts
/// of one file as one range.
fn chain_ranges(chain: &[PartRecord]) -> Vec<(Path, Range<u64>)> {
    let mut out: Vec<(Path, Range<u64>)> = Vec::new();
    for part in chain {
        let range = part.file_range();
        match out.last_mut() {
            Some((chunk, prev)) if chunk.as_ref() == part.chunk && prev.end == range.start => {
                prev.end = range.end;
            }
            _ => out.push((Path::from(part.chunk.as_str()), range)),
        }
    }
    out
}

impl Storage {
    pub async fn start_upload(&self, name: &RepoName) -> Result<UploadId, StorageError> {
        let id = UploadId::new();
        let now = humantime::format_rfc3339(SystemTime::now()).to_string();
        self.store
            .put(
                &layout::upload_started_at(name, &id.0),
                PutPayload::from(now.into_bytes()),
            )
            .await?;
        Ok(id)
    }

    async fn upload_exists(&self, name: &RepoName, id: &UploadId) -> Result<bool, StorageError> {
        self.exists(&layout::upload_started_at(name, &id.0)).await
    }

    async fn part_ends(&self, name: &RepoName, id: &UploadId) -> Result<Vec<u64>, StorageError> {
        let metas: Vec<_> = match self
            .store
            .list(Some(&layout::upload_parts_dir(name, &id.0)))
            .try_collect()
            .await
        {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut ends: Vec<u64> = metas
            .iter()
            .filter_map(|m| m.location.filename()?.parse().ok())
            .collect();
        ends.sort_unstable();
        Ok(ends)
    }

    async fn read_part(
        &self,
        name: &RepoName,
        id: &UploadId,
        end: u64,
    ) -> Result<PartRecord, StorageError> {
        let key = layout::upload_part(name, &id.0, end);
        let bytes = self.store.get(&key).await?.bytes().await?;
        match serde_json::from_slice::<StoredPart>(&bytes)
            .ok()
            .and_then(StoredPart::parse)
        {
            Some(p) if p.start < p.end && p.file_start() <= p.start && p.end == end => Ok(p),
            _ => Err(StorageError::CorruptUpload(key.to_string())),
        }
    }

    /// The newest part record, if any bytes were received.
    async fn latest_part(
        &self,
        name: &RepoName,
        id: &UploadId,
    ) -> Result<Option<PartRecord>, StorageError> {
        match self.part_ends(name, id).await?.last() {
            Some(&end) => Ok(Some(self.read_part(name, id, end).await?)),
            None => Ok(None),
        }
    }

    pub async fn upload_status(
        &self,
        name: &RepoName,
        id: &UploadId,
    ) -> Result<UploadStatus, UploadError> {
        if !self.upload_exists(name, id).await? {
            return Err(UploadError::Unknown);
        }
        let size = self.latest_part(name, id).await?.map_or(0, |p| p.end);
        Ok(UploadStatus { size })
    }

    /// Appends a request body to an upload. `start` is where the client says
    /// the chunk begins (Content-Range), `expected_len` what it announced
    /// (Content-Length or the range's length). Nothing is recorded unless the
    /// whole body arrived and matched both.
    pub async fn append_upload<S, E>(
        &self,
        name: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        if !self.upload_exists(name, id).await? {
            return Err(UploadError::Unknown);
        }
        let latest = self.latest_part(name, id).await?;
        let size = latest.as_ref().map_or(0, |p| p.end);
        if start.is_some_and(|s| s != size) {
            return Err(UploadError::OutOfOrder { size });
        }
        let hasher = match &latest {
            Some(p) => ResumableSha256::from_base64(&p.sha256).ok_or_else(|| {
                StorageError::CorruptUpload(layout::upload_part(name, &id.0, p.end).to_string())
            })?,
            None => ResumableSha256::default(),
        };

        // A chunk written by a registry from before chunk files is never
        // written on into: that registry may still be finishing this upload.
        if let (Some(part), Some(files)) = (latest.as_ref().filter(|p| p.open), &self.chunk_files) {
            if let Some(file) = self.claim_chunk(files, name, id, part).await? {
                return self
                    .append_in_place(name, id, part, (files, file), expected_len, body, hasher)
                    .await;
            }
        }

        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let chunk_key = layout::upload_chunk(name, &id.0, size, &nonce);
        let (received, hasher) = self
            .stream_into(&chunk_key, body, Some(PipelinedSha256::new(hasher)))
            .await?;
        let hasher = hasher.expect("a hasher was given");
        if let Some(expected) = expected_len {
            if expected != received {
                self.delete_if_exists(&chunk_key).await?;
                return Err(UploadError::LengthMismatch {
                    expected,
                    got: received,
                });
            }
        }
        if received == 0 {
            return Ok(UploadStatus { size });
        }

        let end = size + received;
        let record = PartRecord {
            start: size,
            end,
            chunk: chunk_key.to_string(),
            open: self.chunk_files.is_some(),
            from: None,
            sha256: hasher.to_base64(),
        };
        match self.record_part(name, id, &record).await {
            Ok(true) => Ok(UploadStatus { size: end }),
            Ok(false) => {
                // A concurrent append to the same offset won the race.
                self.delete_if_exists(&chunk_key).await?;
                Err(UploadError::OutOfOrder { size })
            }
            Err(e) => {
                self.delete_if_exists(&chunk_key).await?;
                Err(e)
            }
        }
    }

    /// Creates `record`'s part record; false if another append recorded
    /// the same end first.
    async fn record_part(
        &self,
        name: &RepoName,
        id: &UploadId,
        record: &PartRecord,
    ) -> Result<bool, UploadError> {
        let stored = StoredPart::from(record);
        let payload = PutPayload::from(serde_json::to_vec(&stored).expect("record serializes"));
        Ok(self
            .create_once(&layout::upload_part(name, &id.0, record.end), payload)
            .await?)
    }

    /// Creates the session's claim on `offset` (`chunk_files`): false if
    /// another writer has it.
    async fn claim(
        &self,
        name: &RepoName,
        id: &UploadId,
        offset: u64,
    ) -> Result<bool, StorageError> {
        self.create_once(
            &layout::upload_claim(name, &id.0, offset),
            PutPayload::default(),
        )
        .await
    }

    /// Claims the end of `part` and opens its chunk file to write on;
    /// `None` if another PATCH has the claim, or the file cannot be opened
    /// (the claim is kept then: nothing can continue that file).
    async fn claim_chunk(
        &self,
        files: &ChunkFiles,
        name: &RepoName,
        id: &UploadId,
        part: &PartRecord,
    ) -> Result<Option<Arc<DataFile>>, StorageError> {
        if !self.claim(name, id, part.end).await? {
            return Ok(None);
        }
        match files.open(&part.chunk).await {
            Ok(file) => Ok(Some(file)),
            Err(e) => {
                tracing::warn!(chunk = %part.chunk, error = %e, "upload chunk cannot be continued; writing a new one");
                Ok(None)
            }
        }
    }

    /// `append_upload` into the chunk file of `part`, the upload's newest
    /// part, whose end this PATCH has claimed. On any failure nothing is
    /// recorded and the claim is given back, once every write has ended,
    /// so a retry writes the same bytes again.
    #[allow(clippy::too_many_arguments)]
    async fn append_in_place<S, E>(
        &self,
        name: &RepoName,
        id: &UploadId,
        part: &PartRecord,
        (files, file): (&ChunkFiles, Arc<DataFile>),
        expected_len: Option<u64>,
        body: S,
        hasher: ResumableSha256,
    ) -> Result<UploadStatus, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let size = part.end;
        let from = part.file_start();
        let recorded: Result<Option<u64>, UploadError> = async {
            let (received, hasher) = self
                .write_in_place(&file, size - from, body, PipelinedSha256::new(hasher))
                .await?;
            if let Some(expected) = expected_len.filter(|&e| e != received) {
                return Err(UploadError::LengthMismatch {
                    expected,
                    got: received,
                });
            }
            if received == 0 {
                return Ok(None);
            }
            files.sync(file).await.map_err(io_failed)?;
            let end = size + received;
            let record = PartRecord {
                start: size,
                end,
                chunk: part.chunk.clone(),
                open: true,
                from: Some(from),
                sha256: hasher.to_base64(),
            };
            match self.record_part(name, id, &record).await? {
                true => Ok(Some(end)),
                // A PATCH that found the claim taken wrote a chunk of its
                // own, as long as this one, and recorded it first.
                false => Err(UploadError::OutOfOrder { size }),
            }
        }
        .await;
        if let Ok(Some(end)) = recorded {
            // The claim stays: the bytes before `end` are recorded, and the
            // next PATCH claims `end`.
            return Ok(UploadStatus { size: end });
        }
        let claim = layout::upload_claim(name, &id.0, size);
        if let Err(e) = self.store.delete(&claim).await {
            // The retry then writes a new chunk: slower, not wrong.
            tracing::warn!(claim = %claim, error = %e, "upload claim not given back");
        }
        recorded.map(|_| UploadStatus { size })
    }

    /// Writes `body` into `file` from `at` on, hashing it, at most
    /// `MAX_PARTS_IN_FLIGHT` blocks at a time. Returns only when no write
    /// is running any more, whatever happened (see `append_in_place`).
    async fn write_in_place<S, E>(
        &self,
        file: &Arc<DataFile>,
        at: u64,
        body: S,
        mut hasher: PipelinedSha256,
    ) -> Result<(u64, ResumableSha256), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let blocks = aligned::reblock(body, self.parts, self.upload_blocks.clone());
        let mut in_flight = JoinSet::new();
        let written = write_blocks(
            std::pin::pin!(blocks),
            Some(&mut hasher),
            &mut in_flight,
            |in_flight, offset, block| {
                let file = file.clone();
                in_flight.spawn_blocking(move || {
                    file.write_at(at + offset, &PutPayload::from(block))
                        .map_err(io_error)
                });
            },
        )
        .await;
        match written {
            Ok(received) => Ok((received, hasher.finish().await)),
            Err(e) => {
                // Waited for, not aborted: a blocking write cannot be
                // stopped, and none may land after the claim is given back.
                while in_flight.join_next().await.is_some() {}
                Err(e)
            }
        }
    }

    /// Streams `body` into a new object at `key` in parts of `self.parts`,
    /// hashing every piece when given a hasher. The object appears only when
    /// the whole body arrived; on any error nothing is left behind, and an
    /// empty body creates no object at all.
    async fn stream_into<S, E>(
        &self,
        key: &Path,
        body: S,
        mut hasher: Option<PipelinedSha256>,
    ) -> Result<(u64, Option<ResumableSha256>), UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let mut body =
            std::pin::pin!(
                aligned::reblock(body, self.parts, self.upload_blocks.clone()).peekable()
            );
        if body.as_mut().peek().await.is_none() {
            // An empty body (docker's closing PUT) stores nothing: no object
            // to create, sync and delete again.
            let state = match hasher {
                Some(h) => Some(h.finish().await),
                None => None,
            };
            return Ok((0, state));
        }
        let mut upload = self.store.put_multipart(key).await?;
        let mut in_flight = JoinSet::new();
        // Each block is one part: `reblock` cut it to the part's size.
        let written = write_blocks(
            body,
            hasher.as_mut(),
            &mut in_flight,
            |in_flight, _, block| {
                in_flight.spawn(upload.put_part(PutPayload::from(block)));
            },
        )
        .await;
        let written = match written {
            Ok(received) => upload
                .complete()
                .await
                .map(|_| received)
                .map_err(Into::into),
            Err(e) => Err(e),
        };
        let received = match written {
            Ok(received) => received,
            Err(e) => {
                in_flight.shutdown().await;
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        let state = match hasher {
            Some(h) => Some(h.finish().await),
            None => None,
        };
        Ok((received, state))
    }

    /// Completes an upload: checks the content against `digest`, moves it
    /// into place, links it into the repository and removes the session.
    pub async fn finish_upload(
        &self,
        name: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<u64, UploadError> {
        if !self.upload_exists(name, id).await? {
            return Err(UploadError::Unknown);
        }
        let chain = self.part_chain(name, id).await?;
        let size = chain.last().map_or(0, |p| p.end);
        let computed = match (digest.algorithm(), chain.last()) {
            (Algorithm::Sha256, Some(p)) => ResumableSha256::from_base64(&p.sha256)
                .ok_or_else(|| StorageError::CorruptUpload(p.chunk.clone()))?
                .digest(),
            (Algorithm::Sha256, None) => Digest::sha256_of(b""),
            // sha512 pushes are rare: hash the stored chunks once instead of
            // paying for a second running hash on every upload.
            (Algorithm::Sha512, _) => self.sha512_of_chunks(&chain).await?,
        };
        if &computed != digest {
            return Err(UploadError::DigestMismatch { computed });
        }

        let target = layout::blob_data(digest);
        if self.blob_size(digest).await?.is_none() {
            if let Err(e) = self.place(name, id, &chain, &target).await {
                // A repository delete (or the purger) removed the session
                // after it was found: the client's upload is gone, as if
                // the PUT had come a moment later (404
                // `BLOB_UPLOAD_UNKNOWN`; it pushes again), not a 503 (on S3
                // the copy out of a removed chunk answers 404 NoSuchKey).
                let chunk_gone = matches!(
                    &e,
                    UploadError::Storage(StorageError::Backend(
                        object_store::Error::NotFound { .. }
                    ))
                );
                if chunk_gone || matches!(self.upload_exists(name, id).await, Ok(false)) {
                    return Err(UploadError::Unknown);
                }
                return Err(e);
            }
        }
        // A miss for this blob may be cached; the link below forgets the
        // repository's, this the blob's own.
        self.meta.invalidate(&target);
        self.link_blob(name, digest).await?;
        self.remove_session(name, id).await?;
        Ok(size)
    }

    /// Moves an upload's content into place at `target`: the whole file
    /// renamed when one chunk holds it, else the chunks streamed in order.
    async fn place(
        &self,
        name: &RepoName,
        id: &UploadId,
        chain: &[PartRecord],
        target: &Path,
    ) -> Result<(), UploadError> {
        match chain.last() {
            None => {
                self.store.put(target, PutPayload::default()).await?;
            }
            // One file holds the whole blob: renamed into place.
            Some(last)
                if last.file_start() == 0
                    && self.rename_limit.is_none_or(|limit| last.end <= limit)
                    && self.own_chunk(name, id, last).await? =>
            {
                match &self.chunk_files {
                    Some(files) => files
                        .publish(&last.chunk, last.end, target.as_ref())
                        .await
                        .map_err(io_failed)?,
                    None => {
                        self.store
                            .rename(&Path::from(last.chunk.as_str()), target)
                            .await?
                    }
                }
            }
            // Several chunks, or one the backend can't rename (copy) in
            // one request: streamed into the blob, and the chunks are
            // removed with the session.
            Some(_) => {
                let pieces = self.chain_stream(chain);
                self.stream_into(target, pieces, None).await?;
            }
        }
        Ok(())
    }

    /// Removes everything an upload session stored: on the local disk the
    /// directory in one go (a listing and a delete per file otherwise, each
    /// a trip to the blocking pool); key by key if that fails (a racing
    /// PATCH just created a file in it) and on object stores.
    async fn remove_session(&self, name: &RepoName, id: &UploadId) -> Result<(), StorageError> {
        let dir = layout::upload_dir(name, &id.0);
        if let Some(files) = &self.chunk_files {
            match files.remove_tree(dir.as_ref()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!(key = %dir, error = %e, "removing the session key by key")
                }
            }
        }
        self.delete_prefix(&dir).await?;
        self.remove_empty_dirs(&dir).await;
        Ok(())
    }

    /// Whether the closing PUT may rename `last`'s chunk file: on the local
    /// disk only once it holds the claim on the end, so that no PATCH is
    /// still writing into the file (`chunk_files`).
    async fn own_chunk(
        &self,
        name: &RepoName,
        id: &UploadId,
        last: &PartRecord,
    ) -> Result<bool, StorageError> {
        match self.chunk_files {
            Some(_) => self.claim(name, id, last.end).await,
            None => Ok(true),
        }
    }

    /// The bytes `chain` names, read from their chunks in order.
    fn chain_stream(
        &self,
        chain: &[PartRecord],
    ) -> futures::stream::BoxStream<'static, object_store::Result<Bytes>> {
        let store = self.store.clone();
        futures::stream::iter(chain_ranges(chain))
            .then(move |(key, range)| {
                let store = store.clone();
                async move {
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(range)),
                        ..Default::default()
                    };
                    store.get_opts(&key, options).await.map(|r| r.into_stream())
                }
            })
            .try_flatten()
            .boxed()
    }

    /// The recorded parts from offset 0 to the newest end, in order.
    async fn part_chain(
        &self,
        name: &RepoName,
        id: &UploadId,
    ) -> Result<Vec<PartRecord>, UploadError> {
        let ends = self.part_ends(name, id).await?;
        let mut chain = Vec::new();
        let mut next = ends.last().copied();
        while let Some(end) = next {
            let part = self.read_part(name, id, end).await?;
            next = (part.start > 0).then_some(part.start);
            if part.start >= part.end || next.is_some_and(|s| ends.binary_search(&s).is_err()) {
                return Err(StorageError::CorruptUpload(part.chunk).into());
            }
            chain.push(part);
        }
        chain.reverse();
        Ok(chain)
    }

    async fn sha512_of_chunks(&self, chain: &[PartRecord]) -> Result<Digest, UploadError> {
        use sha2::Digest as _;
        let mut h = sha2::Sha512::new();
        let mut s = self.chain_stream(chain);
        while let Some(b) = s.next().await {
            h.update(&b?);
        }
        Ok(Digest::from_sha512_bytes(&h.finalize()))
    }

    /// Cancels an upload and removes everything it stored.
    pub async fn cancel_upload(&self, name: &RepoName, id: &UploadId) -> Result<(), UploadError> {
        if !self.upload_exists(name, id).await? {
            return Err(UploadError::Unknown);
        }
        Ok(self.remove_session(name, id).await?)
    }
}

fn io_error(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "upload",
        source: Box::new(e),
    }
}

fn io_failed(e: std::io::Error) -> UploadError {
    io_error(e).into()
}

/// Feeds `blocks` to `write` (which starts writing one block, at its
/// offset in the body, into `in_flight`), hashing each block first when
/// given a hasher, with at most `MAX_PARTS_IN_FLIGHT` writes running; waits
/// for every write. Returns the body's length. On an error some writes may
/// still be in flight: the caller decides how to stop them.
async fn write_blocks<S, E>(
    mut blocks: S,
    mut hasher: Option<&mut PipelinedSha256>,
    in_flight: &mut JoinSet<object_store::Result<()>>,
    mut write: impl FnMut(&mut JoinSet<object_store::Result<()>>, u64, Bytes),
) -> Result<u64, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let mut received = 0u64;
    while let Some(block) = blocks.next().await {
        let block = block.map_err(|e| UploadError::Body(e.to_string()))?;
        while in_flight.len() >= MAX_PARTS_IN_FLIGHT {
            part_written(in_flight.join_next().await)?;
        }
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&block).await;
        }
        let len = block.len() as u64;
        write(in_flight, received, block);
        received += len;
    }
    while let Some(done) = in_flight.join_next().await {
        part_written(Some(done))?;
    }
    Ok(received)
}

/// The outcome of one part write, as the upload's error.
fn part_written(
    done: Option<Result<object_store::Result<()>, JoinError>>,
) -> Result<(), UploadError> {
    match done {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e.into()),
        Some(Err(e)) => Err(object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::aligned::PartSizes;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;
    use std::sync::Arc;

    fn storage(parts: PartSizes) -> (Storage, Arc<InMemory>) {
        let store = Arc::new(InMemory::new());
        (Storage::new(store.clone(), parts), store)
    }

    fn body(data: &[u8], piece: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let pieces: Vec<_> = data
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(pieces)
    }

    #[tokio::test]
    async fn a_blob_written_in_growing_parts_reads_back_whole() {
        // 8 parts at most: 2 of 4 KiB, 2 of 8 KiB, then 16 KiB ones.
        let (s, _) = storage(PartSizes::growing(4096, 8));
        let name: RepoName = "grow/parts".parse().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let id = s.start_upload(&name).await.unwrap();
        let status = s
            .append_upload(&name, &id, Some(0), None, body(&data, 3000))
            .await
            .unwrap();
        assert_eq!(status.size, data.len() as u64);
        let digest = Digest::sha256_of(&data);
        s.finish_upload(&name, &id, &digest).await.unwrap();
        let got = s.blob_get(&digest, None).await.unwrap().unwrap();
        assert_eq!(got.bytes().await.unwrap(), data);
    }

    #[tokio::test]
    async fn a_body_failing_midway_leaves_no_chunk_and_no_record() {
        let (s, store) = storage(PartSizes::fixed(4096));
        let name: RepoName = "fail/midway".parse().unwrap();
        let id = s.start_upload(&name).await.unwrap();
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from(vec![1u8; 20_000])),
            Err("connection reset".to_owned()),
        ]);
        let r = s.append_upload(&name, &id, Some(0), None, failing).await;
        assert!(matches!(r, Err(UploadError::Body(_))), "{r:?}");
        let keys: Vec<String> = store
            .list(Some(&layout::upload_dir(&name, &id.0)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "only startedat is left: {keys:?}");
        assert_eq!(s.upload_status(&name, &id).await.unwrap().size, 0);
    }

    /// On the local filesystem a rename keeps the file (its inode); a
    /// streamed copy makes a new one, so the inode tells which path ran.
    #[tokio::test]
    async fn chunks_over_the_rename_limit_are_streamed_and_at_it_renamed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let s = Storage::new(store.clone(), PartSizes::fixed(4096)).with_rename_limit(10_000);
        let name: RepoName = "copy/limit".parse().unwrap();
        for (len, renamed) in [(10_000usize, true), (10_001, false)] {
            let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
            let id = s.start_upload(&name).await.unwrap();
            s.append_upload(&name, &id, Some(0), None, body(&data, 4000))
                .await
                .unwrap();
            let chunk = s.read_part(&name, &id, len as u64).await.unwrap().chunk;
            let inode = |key: &str| std::fs::metadata(dir.path().join(key)).unwrap().ino();
            let chunk_inode = inode(&chunk);
            let digest = Digest::sha256_of(&data);
            s.finish_upload(&name, &id, &digest).await.unwrap();
            let blob_inode = inode(layout::blob_data(&digest).as_ref());
            assert_eq!(chunk_inode == blob_inode, renamed, "{len} bytes");
            let got = s.blob_get(&digest, None).await.unwrap().unwrap();
            assert_eq!(got.bytes().await.unwrap(), data, "{len} bytes");
            let left: Vec<_> = store
                .list(Some(&layout::upload_dir(&name, &id.0)))
                .try_collect()
                .await
                .unwrap();
            assert!(left.is_empty(), "the session is gone: {left:?}");
        }
    }

    /// Local disk, as the server opens it (O_DIRECT, fsync), in `dir`.
    fn local(dir: &std::path::Path, directio: bool) -> Storage {
        let mut config = crate::config::Storage::default();
        config.filesystem.rootdirectory = dir.to_owned();
        config.filesystem.directio = directio;
        crate::storage::backend::open(&config).unwrap()
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8 ^ seed).collect()
    }

    /// The files in the session's `chunks/` directory.
    fn chunk_files(
        dir: &std::path::Path,
        name: &RepoName,
        id: &UploadId,
    ) -> Vec<std::path::PathBuf> {
        let chunks = session_path(dir, name, id).join("chunks");
        let mut files: Vec<_> = std::fs::read_dir(chunks)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    fn inode(p: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    }

    async fn finish_and_read(s: &Storage, name: &RepoName, id: &UploadId, all: &[u8]) {
        let digest = Digest::sha256_of(all);
        assert_eq!(
            s.finish_upload(name, id, &digest).await.unwrap(),
            all.len() as u64
        );
        let got = s.blob_get(&digest, None).await.unwrap().unwrap();
        assert_eq!(got.bytes().await.unwrap(), all);
    }

    /// Sizes of PATCHes, aligned or not, with O_DIRECT on and off: each
    /// PATCH writes on into the first one's file, and the PUT renames it.
    #[tokio::test]
    async fn patches_write_on_into_one_file_that_the_put_renames() {
        let cases: [(&str, bool, &[usize]); 4] = [
            ("aligned", true, &[1 << 20, 1 << 20, 4096]),
            ("unaligned", true, &[(1 << 20) + 5, 2 << 20, 100, 1]),
            ("small", true, &[10, 20, 30]),
            ("buffered", false, &[(1 << 20) + 5, 3000, 1 << 20]),
        ];
        for (label, directio, sizes) in cases {
            let dir = tempfile::tempdir().unwrap();
            let s = local(dir.path(), directio);
            let name: RepoName = "in/place".parse().unwrap();
            let id = s.start_upload(&name).await.unwrap();
            let all = data(sizes.iter().sum(), 1);
            let mut at = 0;
            for &len in sizes {
                let status = s
                    .append_upload(
                        &name,
                        &id,
                        Some(at as u64),
                        Some(len as u64),
                        body(&all[at..at + len], 70_000),
                    )
                    .await
                    .unwrap();
                at += len;
                assert_eq!(status.size, at as u64, "{label}");
            }
            let files = chunk_files(dir.path(), &name, &id);
            assert_eq!(files.len(), 1, "{label}: one chunk file: {files:?}");
            let chunk_inode = inode(&files[0]);
            finish_and_read(&s, &name, &id, &all).await;
            let blob = std::fs::canonicalize(dir.path())
                .unwrap()
                .join(layout::blob_data(&Digest::sha256_of(&all)).as_ref());
            assert_eq!(inode(&blob), chunk_inode, "{label}: renamed, not copied");
            assert!(
                !session_path(dir.path(), &name, &id).exists(),
                "{label}: the session's directory is gone"
            );
        }
    }

    fn session_path(dir: &std::path::Path, name: &RepoName, id: &UploadId) -> std::path::PathBuf {
        std::fs::canonicalize(dir)
            .unwrap()
            .join(layout::upload_dir(name, &id.0).as_ref())
    }

    /// A cancelled session leaves nothing (with a chunk, claims and
    /// records in it), and is unknown afterwards.
    #[tokio::test]
    async fn a_cancelled_upload_leaves_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let name: RepoName = "gone/soon".parse().unwrap();
        let (s, id) = session_with(dir.path(), &name, &data(5000, 3)).await;
        assert!(session_path(dir.path(), &name, &id).join("chunks").is_dir());
        s.cancel_upload(&name, &id).await.unwrap();
        assert!(!session_path(dir.path(), &name, &id).exists());
        assert!(matches!(
            s.upload_status(&name, &id).await,
            Err(UploadError::Unknown)
        ));
    }

    /// A session on local disk in `dir` with `first` appended.
    async fn session_with(
        dir: &std::path::Path,
        name: &RepoName,
        first: &[u8],
    ) -> (Storage, UploadId) {
        let s = local(dir, true);
        let id = s.start_upload(name).await.unwrap();
        s.append_upload(name, &id, Some(0), None, body(first, 1 << 16))
            .await
            .unwrap();
        (s, id)
    }

    /// A PATCH cut off midway (past what its retry will send) records
    /// nothing; the retry writes the same offset again and the PUT cuts
    /// what the failed one left past the end.
    #[tokio::test]
    async fn a_failed_patch_gives_its_claim_back_and_the_retry_writes_on() {
        let dir = tempfile::tempdir().unwrap();
        let name: RepoName = "retry/patch".parse().unwrap();
        let first = data(1 << 20, 2);
        let (s, id) = session_with(dir.path(), &name, &first).await;
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from(data(3 << 20, 9))),
            Err("connection reset".to_owned()),
        ]);
        let r = s
            .append_upload(&name, &id, Some(1 << 20), None, failing)
            .await;
        assert!(matches!(r, Err(UploadError::Body(_))), "{r:?}");
        assert_eq!(s.upload_status(&name, &id).await.unwrap().size, 1 << 20);
        let short = data(100, 3);
        let status = s
            .append_upload(&name, &id, Some(1 << 20), Some(100), body(&short, 100))
            .await
            .unwrap();
        assert_eq!(status.size, (1 << 20) + 100);
        assert_eq!(chunk_files(dir.path(), &name, &id).len(), 1, "written on");
        finish_and_read(&s, &name, &id, &[first, short].concat()).await;
    }

    /// A claim nobody gives back (its process was killed): the next PATCH
    /// writes a chunk of its own and the PUT joins the two.
    #[tokio::test]
    async fn a_claim_left_by_a_dead_process_means_a_new_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let name: RepoName = "stale/claim".parse().unwrap();
        let (a, b) = (data(5000, 4), data((1 << 20) + 3, 5));
        let (s, id) = session_with(dir.path(), &name, &a).await;
        assert!(s.claim(&name, &id, 5000).await.unwrap());
        s.append_upload(&name, &id, Some(5000), None, body(&b, 1 << 16))
            .await
            .unwrap();
        assert_eq!(chunk_files(dir.path(), &name, &id).len(), 2);
        finish_and_read(&s, &name, &id, &[a, b].concat()).await;
    }

    /// Two PATCHes at one offset at once: one is recorded, the other told
    /// the upload moved on, and the blob is the recorded one's bytes,
    /// whichever wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_patches_at_one_offset_record_one() {
        for round in 0..8u8 {
            let dir = tempfile::tempdir().unwrap();
            let name: RepoName = "race/patch".parse().unwrap();
            let head = data(1 << 20, 6);
            let (s, id) = session_with(dir.path(), &name, &head).await;
            let (x, y) = (data(2 << 20, round), data(2 << 20, round + 100));
            let (rx, ry) = tokio::join!(
                s.append_upload(&name, &id, Some(1 << 20), None, body(&x, 1 << 16)),
                s.append_upload(&name, &id, Some(1 << 20), None, body(&y, 1 << 16)),
            );
            let winner = match (&rx, &ry) {
                (Ok(_), Err(UploadError::OutOfOrder { .. })) => x,
                (Err(UploadError::OutOfOrder { .. }), Ok(_)) => y,
                other => panic!("round {round}: {other:?}"),
            };
            finish_and_read(&s, &name, &id, &[head, winner].concat()).await;
        }
    }

    /// What a registry from before chunk files reads a part record as.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct OlderPartRecord {
        start: u64,
        end: u64,
        chunk: String,
        sha256: String,
    }

    /// A record naming an open chunk (one PATCHes write on into) is refused
    /// by the older format, which would copy the whole file as the part;
    /// records of chunks that stay as written still read there.
    #[tokio::test]
    async fn older_registries_refuse_records_of_open_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let name: RepoName = "old/format".parse().unwrap();
        let (s, id) = session_with(dir.path(), &name, &data(5000, 1)).await;
        s.append_upload(&name, &id, Some(5000), None, body(&data(7000, 2), 4096))
            .await
            .unwrap();
        let closed = Storage::new(Arc::new(InMemory::new()), PartSizes::fixed(4096));
        let id2 = closed.start_upload(&name).await.unwrap();
        closed
            .append_upload(&name, &id2, Some(0), None, body(b"abc", 3))
            .await
            .unwrap();
        for (s, id, end, readable) in [
            (&s, &id, 5000, false),
            (&s, &id, 12_000, false),
            (&closed, &id2, 3, true),
        ] {
            let key = layout::upload_part(&name, &id.0, end);
            let bytes = s.store.get(&key).await.unwrap().bytes().await.unwrap();
            let older = serde_json::from_slice::<OlderPartRecord>(&bytes);
            assert_eq!(
                older.is_ok(),
                readable,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(s.read_part(&name, id, end).await.is_ok());
        }
    }

    /// A session an older registry wrote into (its chunks closed) is
    /// continued with chunks of its own, never by writing into the older
    /// one's file.
    #[tokio::test]
    async fn chunks_from_an_older_registry_are_not_written_on_into() {
        let dir = tempfile::tempdir().unwrap();
        let s = local(dir.path(), true);
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let older = Storage::new(
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap()),
            PartSizes::fixed(4096),
        );
        let name: RepoName = "old/session".parse().unwrap();
        let (a, b) = (data(6000, 3), data(9000, 4));
        let id = older.start_upload(&name).await.unwrap();
        older
            .append_upload(&name, &id, Some(0), None, body(&a, 4096))
            .await
            .unwrap();
        s.append_upload(&name, &id, Some(6000), None, body(&b, 4096))
            .await
            .unwrap();
        assert_eq!(chunk_files(dir.path(), &name, &id).len(), 2);
        finish_and_read(&s, &name, &id, &[a, b].concat()).await;
    }
}
