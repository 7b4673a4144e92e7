//! An `ObjectStore` wrapper that counts backend operations and failures per
//! operation, for the `registry_storage_operations_total` and
//! `registry_storage_errors_total` metrics, and opens a span per
//! operation beneath the request's for OpenTelemetry (`crate::otel`; debug
//! level, so never built while tracing is off). "Not found" and "already
//! exists" are answers, not failures, and are not counted.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use tracing::Instrument as _;

use super::Storage;

/// What happened to a backend operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was asked of the backend (counted once per call).
    Started,
    /// It failed (not for "not found" and the other answers).
    Failed,
}

/// Called with the operation's name when it starts and when it fails.
pub type ErrorSink = Arc<dyn Fn(&'static str, Outcome) + Send + Sync>;

fn counts(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
    )
}

/// The span of one backend operation on `object`.
fn op_span(op: &'static str, object: &Path) -> tracing::Span {
    let span = tracing::debug_span!(
        target: "registry::storage",
        "storage",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        storage.operation = op,
        storage.object = %object,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("storage {op}"));
    }
    span
}

struct Metered {
    inner: Arc<dyn ObjectStore>,
    sink: ErrorSink,
}

impl Metered {
    fn note<T>(&self, op: &'static str, r: object_store::Result<T>) -> object_store::Result<T> {
        (self.sink)(op, Outcome::Started);
        if let Err(e) = &r {
            if counts(e) {
                (self.sink)(op, Outcome::Failed);
            }
        }
        r
    }

    /// A streaming operation: counted when it is asked for, each failed
    /// item as a failure.
    fn started(&self, op: &'static str) -> ErrorSink {
        (self.sink)(op, Outcome::Started);
        self.sink.clone()
    }
}

impl fmt::Display for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

impl fmt::Debug for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({:?})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Metered {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let r = self
            .inner
            .put_opts(location, payload, opts)
            .instrument(op_span("put", location))
            .await;
        self.note("put", r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let r = self
            .inner
            .put_multipart_opts(location, opts)
            .instrument(op_span("put_multipart", location))
            .await;
        let upload = self.note("put", r)?;
        Ok(Box::new(MeteredUpload {
            inner: upload,
            sink: self.sink.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        let r = self
            .inner
            .get_opts(location, options)
            .instrument(op_span(op, location))
            .await;
        self.note(op, r)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let r = self
            .inner
            .get_ranges(location, ranges)
            .instrument(op_span("get", location))
            .await;
        self.note("get", r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let sink = self.started("delete");
        self.inner
            .delete_stream(locations)
            .inspect(move |r| {
                if let Err(e) = r {
                    if counts(e) {
                        sink("delete", Outcome::Failed);
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let sink = self.started("list");
        self.inner
            .list(prefix)
            .inspect(move |r| {
                if let Err(e) = r {
                    if counts(e) {
                        sink("list", Outcome::Failed);
                    }
                }
            })
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let sink = self.started("list");
        self.inner
            .list_with_offset(prefix, offset)
            .inspect(move |r| {
                if let Err(e) = r {
                    if counts(e) {
                        sink("list", Outcome::Failed);
                    }
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let span = op_span("list", prefix.unwrap_or(&Path::default()));
        let r = self
            .inner
            .list_with_delimiter(prefix)
            .instrument(span)
            .await;
        self.note("list", r)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let r = self
            .inner
            .copy_opts(from, to, options)
            .instrument(op_span("copy", to))
            .await;
        self.note("copy", r)
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let r = self
            .inner
            .rename_opts(from, to, options)
            .instrument(op_span("rename", to))
            .await;
        self.note("rename", r)
    }
}

struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
    sink: ErrorSink,
}

impl fmt::Debug for MeteredUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredUpload({:?})", self.inner)
    }
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let sink = self.sink.clone();
        self.inner
            .put_part(data)
            .inspect(move |r| {
                if let Err(e) = r {
                    if counts(e) {
                        sink("put", Outcome::Failed);
                    }
                }
            })
            .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let r = self.inner.complete().await;
        if let Err(e) = &r {
            if counts(e) {
                (self.sink)("put", Outcome::Failed);
            }
        }
        r
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl Storage {
    /// The same storage, with every backend operation and failure
    /// reported to `sink`.
    pub fn with_error_sink(mut self, sink: ErrorSink) -> Storage {
        self.store = Arc::new(Metered {
            inner: self.store,
            sink,
        });
        self
    }
}
