//! What a client's connection may hold: how long it may take to send a
//! request's headers (`http.header_read_timeout`), how long it may stay open
//! without a request (`http.idle_timeout`), HTTP/2 pings and streams, and
//! how many connections are open at once (`http.max_connections`).
//!
//! Every accepted TCP stream is registered in [`Connections`] with the
//! number of its requests in flight (from the service call until the
//! response body was sent or dropped). When a new connection would go past
//! the cap, the connection idle longest (no request in flight: a half-sent
//! header, a TLS handshake, a kept-alive connection between requests) is
//! closed to make room; when every connection has a request in flight, the
//! new one is closed at once. So clients that never finish their headers
//! cannot keep a working client out, and the file descriptors the listener
//! holds stay bounded.
//!
//! A connection is closed from outside by making its next read return end
//! of file: hyper then ends the connection as if the client had left.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum_server::accept::Accept;
use futures::task::AtomicWaker;
use http_body_util::BodyExt;
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::Http;
use crate::linger::Lingering;

/// Applies the timeouts and HTTP/2 limits to hyper's connection builder.
pub fn configure<E>(builder: &mut Builder<E>, http: &Http, max_read_buffer: usize) {
    builder
        .http1()
        .max_buf_size(max_read_buffer)
        .header_read_timeout(http.header_read_timeout);
    let h2 = &http.http2;
    let mut b = builder.http2();
    b.max_concurrent_streams(h2.max_concurrent_streams);
    if !h2.keepalive_interval.is_zero() {
        b.keep_alive_interval(h2.keepalive_interval)
            .keep_alive_timeout(h2.keepalive_timeout);
    }
}

/// The open connections of one listener.
pub struct Connections {
    cap: usize,
    idle_timeout: Duration,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
}

/// One connection's state, shared by its stream and its service.
struct Conn {
    in_flight: AtomicUsize,
    /// Milliseconds since `Connections::epoch` when it last became idle.
    idle_since: AtomicU64,
    closing: AtomicBool,
    waker: AtomicWaker,
}

impl Conn {
    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl Connections {
    /// Starts the task that closes connections idle past `idle_timeout`
    /// (it ends when the listener and its connections are gone).
    pub fn new(cap: usize, idle_timeout: Duration) -> Arc<Connections> {
        let conns = Arc::new(Connections {
            cap: cap.max(1),
            idle_timeout,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        });
        let weak = Arc::downgrade(&conns);
        let every = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::spawn(sweep(weak, every));
        conns
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.table.lock().unwrap().open.len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers a new connection, closing the longest-idle one when the
    /// cap is reached; `None` when every open connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table.lock().unwrap();
        if table.open.len() >= self.cap {
            let oldest = table
                .open
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.idle_since.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let id = oldest?;
            if let Some(c) = table.open.remove(&id) {
                c.close();
            }
            tracing::debug!(
                cap = self.cap,
                "connection limit: closed the longest-idle connection"
            );
        }
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        table.open.insert(id, conn.clone());
        Some(Slot {
            id,
            conn,
            conns: self.clone(),
        })
    }

    fn close_idle(&self) {
        let now = self.now_ms();
        let limit = self.idle_timeout.as_millis() as u64;
        let mut table = self.table.lock().unwrap();
        table.open.retain(|_, c| {
            let idle = c.in_flight.load(Ordering::Acquire) == 0
                && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) >= limit;
            if idle {
                c.close();
            }
            !idle
        });
    }
}

async fn sweep(conns: Weak<Connections>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match conns.upgrade() {
            Some(c) => c.close_idle(),
            None => return,
        }
    }
}

/// A connection's registration; removed from the table when dropped.
#[derive(Clone)]
struct Slot {
    id: u64,
    conn: Arc<Conn>,
    conns: Arc<Connections>,
}

/// Wraps accepted streams: registers them (or closes them, over the cap),
/// counts their requests, and lingers on close (`linger`).
#[derive(Clone)]
pub struct LimitAcceptor {
    conns: Arc<Connections>,
}

impl LimitAcceptor {
    pub fn new(conns: Arc<Connections>) -> LimitAcceptor {
        LimitAcceptor { conns }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Lingering<Tracked>;
    type Service = Counted<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Some(slot) = self.conns.admit() else {
            // Dropping the stream closes it: every connection is serving.
            return std::future::ready(Err(io::Error::other("connection limit reached")));
        };
        let service = Counted {
            inner: service,
            conn: slot.conn.clone(),
            epoch: self.conns.epoch,
        };
        std::future::ready(Ok((Lingering::new(Tracked { stream, slot }), service)))
    }
}

/// An accepted stream that reads end of file once its connection is closed
/// from outside (over the cap, or idle too long).
pub struct Tracked {
    stream: TcpStream,
    slot: Slot,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut table = self.slot.conns.table.lock().unwrap();
        table.open.remove(&self.slot.id);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &self.slot.conn;
        conn.waker.register(cx.waker());
        if conn.closing.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A connection's service: counts its requests in flight until their
/// response bodies end.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    conn: Arc<Conn>,
    epoch: Instant,
}

/// Marks one request in flight; dropped with its response body.
struct InFlight {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl InFlight {
    fn new(conn: Arc<Conn>, epoch: Instant) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { conn, epoch }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, Req, B> tower_service::Service<Req> for Counted<S>
where
    S: tower_service::Service<Req, Response = axum::http::Response<B>>,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = axum::http::Response<axum::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let guard = InFlight::new(self.conn.clone(), self.epoch);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _held = &guard;
                    frame
                }))
            }))
        })
    }
}
