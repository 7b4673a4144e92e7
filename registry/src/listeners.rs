//! The API's listening sockets: every TCP address `http.addr` resolves to
//! (`config::listen`), or the unix socket `http.net = "unix"` names, and
//! serving on the unix socket (axum-server takes TCP listeners only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::config::listen::Listen;
use crate::config::Config;

/// What the API listens on.
pub enum Bound {
    /// One listener per address, the first being `Running::addr`.
    Tcp(Vec<std::net::TcpListener>),
    Unix(UnixListener, PathBuf),
}

/// Binds what `http.addr` and `http.net` name. Host names are resolved
/// now: a name that no longer resolves stops the start.
pub fn bind(config: &Config) -> Result<Bound, (String, std::io::Error)> {
    let listen = config
        .listen()
        .map_err(|e| (config.http.addr.clone(), invalid(e.to_string())))?;
    match listen {
        Listen::Unix(path) => bind_unix(&path)
            .map(|l| Bound::Unix(l, path.clone()))
            .map_err(|e| (path.display().to_string(), e)),
        tcp => {
            let addrs = tcp
                .resolve()
                .map_err(|m| (config.http.addr.clone(), invalid(m)))?;
            crate::config::listen::bind_all(&addrs)
                .map(Bound::Tcp)
                .map_err(|(addr, e)| (addr.to_string(), e))
        }
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

/// As Go's `net.Listen("unix", path)` after registry:2 removed a stale
/// socket: a socket file left by an earlier run is replaced; any other
/// file at the path is not touched.
fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err() {
            std::fs::remove_file(path)?;
        }
    }
    UnixListener::bind(path)
}

/// The peer address handlers see for a unix socket client (it has none):
/// one address for every such client, as registry:2 logs none.
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Serves `router` on `listener` until `stop`, then lets connections finish
/// for up to `drain`; removes the socket file at the end.
pub async fn serve_unix(
    listener: UnixListener,
    path: PathBuf,
    router: Router,
    max_buf_size: usize,
    drain: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router.layer(axum::Extension(ConnectInfo(UNIX_PEER))));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(max_buf_size);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("unix socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service.clone())
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("unix socket connection: {e}");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
