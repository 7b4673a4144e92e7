//! Which local-disk writes are fsynced. An upload session's bookkeeping
//! (`_uploads/<id>/startedat`, its part records, the directories they live
//! in) is written without fsync; everything a client is told exists (blob
//! data, links, manifests, tags) is fsynced with its directory entries, as
//! before.
//!
//! Why that keeps crash safety: what a 201 acknowledges is a blob or a
//! manifest, and every write that makes one visible still goes through
//! the durable store. A session's chunk data is fsynced too (by `DirectIo`
//! at the end of the PATCH that wrote it, before its part record is
//! written), so a part record can never survive a power loss that its data
//! did not, and the hash state in a record always describes bytes on disk.
//! What a power loss can take is an unfinished session's bookkeeping: the
//! client's next PATCH or PUT then gets BLOB_UPLOAD_UNKNOWN (or a shorter
//! offset) and starts that blob again, as docker does after any error. A
//! process crash (SIGKILL) loses nothing at all: the page cache survives it.
//!
//! Per docker-style push of one blob that left 9 fsyncs where there were
//! 23; `durable_files` took 3 more (`docs/storage.md` lists the 6 left).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::layout;

/// Routes small writes into upload sessions to `sessions` (no fsync) and
/// every other operation to `durable`.
pub struct SessionsUnsynced {
    pub durable: Arc<dyn ObjectStore>,
    pub sessions: Arc<dyn ObjectStore>,
}

impl SessionsUnsynced {
    fn for_write(&self, to: &Path) -> &Arc<dyn ObjectStore> {
        if layout::is_session_key(to) {
            &self.sessions
        } else {
            &self.durable
        }
    }
}

impl fmt::Display for SessionsUnsynced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionsUnsynced({})", self.durable)
    }
}

impl fmt::Debug for SessionsUnsynced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionsUnsynced({:?})", self.durable)
    }
}

#[async_trait]
impl ObjectStore for SessionsUnsynced {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.for_write(location)
            .put_opts(location, payload, opts)
            .await
    }

    /// Chunk data: always the durable store (see the module comment).
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.durable.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.durable.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.durable.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.durable.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.durable.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.durable.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.durable.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.for_write(to).copy_opts(from, to, options).await
    }

    /// A chunk renamed into a blob goes to the durable store, which makes
    /// the blob's directory entries durable.
    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.for_write(to).rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_inside_a_session_skip_fsync() {
        for (key, session) in [
            (
                "docker/registry/v2/repositories/a/_uploads/id/startedat",
                true,
            ),
            (
                "docker/registry/v2/repositories/a/b/_uploads/id/parts/00000000000000000001",
                true,
            ),
            ("docker/registry/v2/repositories/a/_uploads", false),
            (
                "docker/registry/v2/repositories/a/_layers/sha256/ab/link",
                false,
            ),
            ("docker/registry/v2/blobs/sha256/ab/abcd/data", false),
        ] {
            assert_eq!(layout::is_session_key(&Path::from(key)), session, "{key}");
        }
    }
}
