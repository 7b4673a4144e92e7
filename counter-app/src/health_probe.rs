//! `counter-app healthcheck`: asks the running server's `/health` and turns the
//! answer into an exit code, so a FROM scratch image needs no curl or wget.
//! Plain blocking std networking: no runtime to start for one request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} sent a malformed response: {line:?}")]
    Malformed { addr: SocketAddr, line: String },
    #[error("{addr} reports unhealthy: HTTP {status}")]
    Unhealthy { addr: SocketAddr, status: u16 },
}

/// Returns the status line of a 200 answer, or why the server is not healthy.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let io = |source| ProbeError::Io { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // One write for the whole request: `write!` on an unbuffered stream sends
    // each piece separately, and a server that answers after the first piece
    // and closes turns the next write into EPIPE.
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: counter-app-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;

    let line = read_status_line(&mut stream).map_err(io)?;
    let status = parse_status(&line).ok_or_else(|| ProbeError::Malformed {
        addr,
        line: line.clone(),
    })?;
    if status == 200 {
        Ok(line)
    } else {
        Err(ProbeError::Unhealthy { addr, status })
    }
}

/// Reads up to the first CRLF; the rest of the response does not matter.
fn read_status_line(stream: &mut impl Read) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Read the whole request head before answering, as a server would.
            let mut request = Vec::new();
            let mut chunk = [0u8; 256];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = conn.write_all(response);
        });
        addr
    }

    #[test]
    fn healthy_on_200() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(
            probe(addr, Duration::from_secs(2)).unwrap(),
            "HTTP/1.1 200 OK"
        );
    }

    #[test]
    fn unhealthy_on_503() {
        let addr = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(
            probe(addr, Duration::from_secs(2)),
            Err(ProbeError::Unhealthy { status: 503, .. })
        ));
    }

    #[test]
    fn malformed_and_refused() {
        let addr = serve_once(b"SSH-2.0-OpenSSH\r\n");
        assert!(matches!(
            probe(addr, Duration::from_secs(2)),
            Err(ProbeError::Malformed { .. })
        ));
        // Bind then drop: nothing listens on that port any more.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            probe(closed, Duration::from_secs(2)),
            Err(ProbeError::Connect { .. })
        ));
    }
}
