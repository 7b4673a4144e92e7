//! A spool file that one writer fills while any number of readers stream
//! from it as it grows: one fetch (from an upstream registry, or from S3)
//! shared by every client that asks for the same blob at the same time.
//!
//! The writer appends what arrives and publishes the length written on a
//! watch channel; every reader, the first client's included, reads the file
//! itself, so memory stays bounded whatever the number of clients (one piece
//! per reader), and the first byte reaches all of them while the rest is
//! still arriving. The file is removed when the spool is dropped, i.e. when
//! the writer and the last reader are gone.
//!
//! With `hold_last`, the response's last byte waits for the writer's verdict
//! (`finish` or `fail`): content that still has to be verified (the proxy's
//! digest check) is never delivered whole before it is known to be right, so
//! a bad fetch aborts every response instead of truncating it cleanly.

use std::fmt::Display;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Pieces each reader reads from the spool file.
const READ_PIECE: u64 = 256 * 1024;

/// Where a spool's writer is.
#[derive(Clone, Debug)]
pub enum SpoolState<E> {
    /// Waiting for the source's first answer.
    Starting,
    Streaming {
        size: Option<u64>,
        written: u64,
    },
    /// Everything written (and, with `hold_last`, verified).
    Done {
        size: u64,
    },
    Failed(E),
}

/// The writer went away without a verdict (its task was aborted: the
/// server is stopping). Readers turn it into their own error type.
#[derive(Debug, Clone, Copy)]
pub struct Abandoned;

pub struct Spool<E> {
    state: watch::Receiver<SpoolState<E>>,
    path: PathBuf,
    hold_last: bool,
    abort: OnceLock<AbortHandle>,
}

/// A new directory for spool files under `$TMPDIR`, private to this user:
/// a random name created atomically (it never reuses a directory someone
/// else made) with mode 0700; removed when the `TempDir` is dropped.
pub fn private_temp_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

impl<E> Drop for Spool<E> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fills a spool; dropping it without `finish` or `fail` abandons it.
pub struct SpoolWriter<E> {
    tx: watch::Sender<SpoolState<E>>,
    path: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
}

impl<E> Spool<E>
where
    E: Clone + Display + From<Abandoned> + Send + Sync + 'static,
{
    /// A new, empty spool in `dir`, its file named after `hint`.
    pub fn create(dir: &Path, hint: &str, hold_last: bool) -> (Arc<Spool<E>>, SpoolWriter<E>) {
        let path = dir.join(format!("{hint}-{}", uuid::Uuid::new_v4().simple()));
        let (tx, rx) = watch::channel(SpoolState::Starting);
        let spool = Arc::new(Spool {
            state: rx,
            path: path.clone(),
            hold_last,
            abort: OnceLock::new(),
        });
        let writer = SpoolWriter {
            tx,
            path,
            file: None,
            written: 0,
        };
        (spool, writer)
    }

    /// The writer's task, aborted by `abort`.
    pub fn set_task(&self, task: AbortHandle) {
        let _ = self.abort.set(task);
    }

    pub fn abort(&self) {
        if let Some(a) = self.abort.get() {
            a.abort();
        }
    }

    /// The content's size once the source answered (None: it did not say),
    /// or the source's refusal.
    pub async fn started(&self) -> Result<Option<u64>, E> {
        let mut rx = self.state.clone();
        let state = match rx.wait_for(|s| !matches!(s, SpoolState::Starting)).await {
            Ok(s) => s.clone(),
            Err(_) => return Err(Abandoned.into()),
        };
        match state {
            SpoolState::Streaming { size, .. } => Ok(size),
            SpoolState::Done { size } => Ok(Some(size)),
            SpoolState::Failed(e) => Err(e),
            SpoolState::Starting => unreachable!("waited for another state"),
        }
    }

    /// Bytes `start..end` (end exclusive; None: to the end) as they arrive.
    pub fn reader(
        self: Arc<Self>,
        start: u64,
        end: Option<u64>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let reader = Reader {
            rx: self.state.clone(),
            spool: self,
            pos: start,
            end,
            file: None,
        };
        futures::stream::unfold(Some(reader), |r| async move {
            let mut r = r?;
            loop {
                let state = r.rx.borrow_and_update().clone();
                let hold = u64::from(r.spool.hold_last);
                let (available, finished) = match state {
                    SpoolState::Starting => (0, false),
                    SpoolState::Streaming { size, written } => match r.end.or(size) {
                        Some(last) => (written.min(last.saturating_sub(hold)), false),
                        None => (written.saturating_sub(hold), false),
                    },
                    SpoolState::Done { size } => (r.end.map_or(size, |e| e.min(size)), true),
                    SpoolState::Failed(e) => {
                        return Some((Err(std::io::Error::other(e.to_string())), None))
                    }
                };
                if r.pos < available {
                    return match r.read(available).await {
                        Ok(bytes) => Some((Ok(bytes), Some(r))),
                        Err(e) => Some((Err(e), None)),
                    };
                }
                if finished {
                    return None;
                }
                if r.rx.changed().await.is_err()
                    && !matches!(*r.rx.borrow(), SpoolState::Done { .. })
                {
                    let e: E = Abandoned.into();
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
            }
        })
    }
}

struct Reader<E> {
    spool: Arc<Spool<E>>,
    rx: watch::Receiver<SpoolState<E>>,
    pos: u64,
    end: Option<u64>,
    file: Option<tokio::fs::File>,
}

impl<E> Reader<E> {
    async fn read(&mut self, available: u64) -> std::io::Result<Bytes> {
        if self.file.is_none() {
            let mut f = tokio::fs::File::open(&self.spool.path).await?;
            f.seek(SeekFrom::Start(self.pos)).await?;
            self.file = Some(f);
        }
        let file = self.file.as_mut().expect("opened above");
        let n = (available - self.pos).min(READ_PIECE) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact(&mut buf).await?;
        self.pos += n as u64;
        Ok(Bytes::from(buf))
    }
}

impl<E> SpoolWriter<E> {
    /// The source answered: creates the file; readers may start.
    pub async fn start(&mut self, size: Option<u64>) -> std::io::Result<()> {
        let file = tokio::fs::File::create(&self.path).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("spool file {}: {e}", self.path.display()))
        })?;
        self.file = Some(file);
        self.tx
            .send_replace(SpoolState::Streaming { size, written: 0 });
        Ok(())
    }

    /// Appends `chunk` and tells the readers. Returns the length written.
    pub async fn append(&mut self, chunk: &[u8]) -> std::io::Result<u64> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("spool written before start"))?;
        file.write_all(chunk).await?;
        // Readers open the file themselves: what they are told is there
        // must have reached the kernel.
        file.flush().await?;
        self.written += chunk.len() as u64;
        let written = self.written;
        self.tx.send_modify(|s| {
            if let SpoolState::Streaming { written: w, .. } = s {
                *w = written;
            }
        });
        Ok(written)
    }

    pub fn finish(self, size: u64) {
        self.tx.send_replace(SpoolState::Done { size });
    }

    pub fn fail(self, e: E) {
        self.tx.send_replace(SpoolState::Failed(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[derive(Clone, Debug)]
    struct Msg(String);
    impl Display for Msg {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl From<Abandoned> for Msg {
        fn from(_: Abandoned) -> Msg {
            Msg("abandoned".into())
        }
    }

    async fn collect(s: Arc<Spool<Msg>>, start: u64, end: Option<u64>) -> std::io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> = s.reader(start, end).try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn readers_get_what_was_written_and_the_last_byte_waits_for_the_verdict() {
        let dir = tempfile::tempdir().unwrap();
        for hold_last in [false, true] {
            let (spool, mut w) = Spool::<Msg>::create(dir.path(), "t", hold_last);
            let whole = tokio::spawn(collect(spool.clone(), 0, None));
            let part = tokio::spawn(collect(spool.clone(), 2, Some(5)));
            w.start(Some(6)).await.unwrap();
            w.append(b"abc").await.unwrap();
            w.append(b"def").await.unwrap();
            assert_eq!(spool.started().await.unwrap(), Some(6));
            w.finish(6);
            assert_eq!(whole.await.unwrap().unwrap(), b"abcdef");
            assert_eq!(part.await.unwrap().unwrap(), b"cde");
            // A late reader of a finished spool reads the file.
            assert_eq!(collect(spool.clone(), 4, None).await.unwrap(), b"ef");
        }
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_writer_fails_every_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut w) = Spool::<Msg>::create(dir.path(), "t", true);
        let reader = tokio::spawn(collect(spool.clone(), 0, None));
        w.start(Some(4)).await.unwrap();
        w.append(b"abcd").await.unwrap();
        w.fail(Msg("wrong digest".into()));
        let e = reader.await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "wrong digest");

        let (spool, w) = Spool::<Msg>::create(dir.path(), "t", false);
        drop(w);
        assert_eq!(spool.started().await.unwrap_err().0, "abandoned");
        let path = spool.path.clone();
        drop(spool);
        assert!(!path.exists(), "the file goes with the spool");
    }
}
