//! Lingering close (RFC 9112 §9.6): when the server ends a connection, it
//! first sends its response and a FIN, then keeps reading and discarding
//! what the client still sends, for a bounded time and number of bytes,
//! before it closes the socket.
//!
//! Without it, an early refusal (a manifest over 4 MiB, a PATCH out of
//! order, a push over a limit: any answer sent before the request body was
//! read) is lost: closing a socket with unread data makes the kernel send a
//! reset, and a client still writing its body sees "connection reset" or
//! "broken pipe" instead of the 413 or 416 already in its receive buffer.
//! Applied to every accepted TCP stream, under TLS when TLS is on; hyper
//! calls `poll_shutdown` whenever it ends a connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// How long a closing connection keeps reading.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much a closing connection reads before it gives up on the client.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// Wraps accepted streams in [`Lingering`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LingerAcceptor;

impl<S> axum_server::accept::Accept<TcpStream, S> for LingerAcceptor {
    type Stream = Lingering<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(Ok((Lingering::new(stream), service)))
    }
}

enum State {
    Open,
    /// Write side shut down; reading what the client still sends.
    Draining {
        deadline: Pin<Box<Sleep>>,
        left: u64,
    },
    Closed,
}

/// A stream whose shutdown lingers (see the module docs).
pub struct Lingering<T> {
    inner: T,
    state: State,
}

impl<T> Lingering<T> {
    pub fn new(inner: T) -> Lingering<T> {
        Lingering {
            inner,
            state: State::Open,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    // Sends what is buffered, then the FIN: the client has
                    // the whole response before we read another byte.
                    if let Err(e) = ready!(Pin::new(&mut this.inner).poll_shutdown(cx)) {
                        this.state = State::Closed;
                        return Poll::Ready(Err(e));
                    }
                    this.state = State::Draining {
                        deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        left: LINGER_BYTES,
                    };
                }
                State::Draining { deadline, left } => {
                    if *left == 0 || deadline.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 16 * 1024];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len() as u64);
                        }
                        // The client closed its side (or the connection
                        // failed): nothing is left to protect.
                        _ => this.state = State::Closed,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers before reading a 4 MiB body and closes: with
    /// lingering, the client that writes its whole body first still reads
    /// the answer; without, it gets a reset.
    async fn early_answer(linger: bool) -> io::Result<Vec<u8>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = Lingering::new(stream);
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
            stream.write_all(b"413 too large").await.unwrap();
            if linger {
                let _ = stream.shutdown().await;
            } else {
                let _ = Pin::new(&mut stream.inner).shutdown().await;
            }
        });
        let mut client = TcpStream::connect(addr).await?;
        let body = vec![b'x'; 4 * 1024 * 1024];
        let written = client.write_all(&body).await;
        let _ = server.await;
        written?;
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn a_client_still_sending_reads_the_early_answer() {
        assert_eq!(early_answer(true).await.unwrap(), b"413 too large");
        // The same without lingering: the reset reaches the client first.
        assert!(early_answer(false).await.is_err());
    }
}
