//! The cap on open client connections that `http.max_connections` puts in
//! force: plain arithmetic on the config and the process's open-file
//! limit, so `check-config` shows the same number the server uses
//! (`conn_limits` applies it).

use super::Http;

/// File descriptors kept for everything but client connections (storage
/// files, upstream and S3 connections, the metrics listener) when the cap
/// is sized from `RLIMIT_NOFILE`.
const RESERVED_FDS: u64 = 256;

/// The cap on open connections: `http.max_connections`, or half the
/// open-file limit (each connection may also open a file or two), at
/// least 16.
pub fn max_connections(http: &Http) -> usize {
    if http.max_connections > 0 {
        return http.max_connections;
    }
    let nofile = open_file_limit().unwrap_or(1024);
    (nofile.saturating_sub(RESERVED_FDS) / 2).clamp(16, 1 << 20) as usize
}

/// The soft `RLIMIT_NOFILE`.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    (rc == 0).then_some(limit.rlim_cur as u64)
}
