//! Upload sessions, kept entirely in storage so that a restarted process, or
//! another replica, continues any upload.
//!
//! Each PATCH streams its body into its own chunk object while hashing it,
//! then records `parts/<end>` = {start, end, chunk, sha256 state after end}.
//! The part record is created with `PutMode::Create`, so of two racing
//! appends at the same offset only one is recorded; the chain of records from
//! the largest `end` back to 0 names exactly the bytes that were hashed.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::{JoinError, JoinSet};

use super::aligned;
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

#[derive(Debug, Serialize, Deserialize)]
struct PartRecord {
    start: u64,
    end: u64,
    chunk: String,
    sha256: String,
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
        serde_json::from_slice(&bytes).map_err(|_| StorageError::CorruptUpload(key.to_string()))
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
            sha256: hasher.to_base64(),
        };
        let put = self
            .store
            .put_opts(
                &layout::upload_part(name, &id.0, end),
                PutPayload::from(serde_json::to_vec(&record).expect("record serializes")),
                PutMode::Create.into(),
            )
            .await;
        match put {
            Ok(_) => Ok(UploadStatus { size: end }),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A concurrent append to the same offset won the race.
                self.delete_if_exists(&chunk_key).await?;
                Err(UploadError::OutOfOrder { size })
            }
            Err(e) => {
                self.delete_if_exists(&chunk_key).await?;
                Err(e.into())
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
        let mut received = 0u64;
        let written: Result<(), UploadError> = async {
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(|e| UploadError::Body(e.to_string()))?;
                while in_flight.len() >= MAX_PARTS_IN_FLIGHT {
                    part_written(in_flight.join_next().await)?;
                }
                if let Some(h) = &mut hasher {
                    h.update(&piece).await;
                }
                received += piece.len() as u64;
                // Each block is one part: `reblock` cut it to the part's size.
                in_flight.spawn(upload.put_part(PutPayload::from(piece)));
            }
            while let Some(done) = in_flight.join_next().await {
                part_written(Some(done))?;
            }
            upload.complete().await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            in_flight.shutdown().await;
            let _ = upload.abort().await;
            return Err(e);
        }
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
            match chain.as_slice() {
                [] => {
                    self.store.put(&target, PutPayload::default()).await?;
                }
                [only] if self.rename_limit.is_none_or(|limit| only.end <= limit) => {
                    self.store
                        .rename(&Path::from(only.chunk.as_str()), &target)
                        .await?;
                }
                // Several chunks, or one the backend can't rename (copy) in
                // one request: streamed into the blob, and the chunks are
                // removed with the session.
                chunks => {
                    let pieces =
                        futures::stream::iter(chunks.iter().map(|p| Path::from(p.chunk.as_str())))
                            .then(|key| {
                                let store = self.store.clone();
                                async move { store.get(&key).await.map(|r| r.into_stream()) }
                            })
                            .try_flatten()
                            .boxed();
                    self.stream_into(&target, pieces, None).await?;
                }
            }
        }
        // A miss for this blob may be cached; the link below forgets the
        // repository's, this the blob's own.
        self.meta.invalidate(&target);
        self.link_blob(name, digest).await?;
        let dir = layout::upload_dir(name, &id.0);
        self.delete_prefix(&dir).await?;
        self.remove_empty_dirs(&dir).await;
        Ok(size)
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
        for part in chain {
            let mut s = self
                .store
                .get(&Path::from(part.chunk.as_str()))
                .await?
                .into_stream();
            while let Some(b) = s.next().await {
                h.update(&b?);
            }
        }
        Ok(Digest::from_sha512_bytes(&h.finalize()))
    }

    /// Cancels an upload and removes everything it stored.
    pub async fn cancel_upload(&self, name: &RepoName, id: &UploadId) -> Result<(), UploadError> {
        if !self.upload_exists(name, id).await? {
            return Err(UploadError::Unknown);
        }
        let dir = layout::upload_dir(name, &id.0);
        self.delete_prefix(&dir).await?;
        self.remove_empty_dirs(&dir).await;
        Ok(())
    }
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
}
