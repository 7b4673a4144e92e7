//! Listen addresses as registry:2 takes them (Go's `net.Listen`):
//! `host:port` with an IP or a host name, `:port` (every interface),
//! `[v6]:port`, and, with `http.net = "unix"`, a socket path.
//!
//! A host name is resolved when the server starts and every address it
//! resolves to is listened on (`localhost` is 127.0.0.1 and ::1), IPv4
//! first, so the first address is the one Go's `net.Listen` would pick.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where one listener listens, as written (host names not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `host` is `None` for `:port`.
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Unix(PathBuf),
}

/// `addr` under the network `net` (`tcp`, `tcp4`, `tcp6`, `unix`; empty is
/// tcp). Syntax only: no name is resolved here.
pub fn parse(addr: &str, net: &str) -> Result<Listen, String> {
    match net {
        "" | "tcp" | "tcp4" | "tcp6" => {}
        "unix" => {
            if addr.is_empty() {
                return Err("a unix socket needs a path".into());
            }
            return Ok(Listen::Unix(PathBuf::from(addr)));
        }
        other => return Err(format!("network {other:?} is not supported (tcp or unix)")),
    }
    let bad = || {
        format!(
            "{addr:?} is not host:port (e.g. 127.0.0.1:5000, localhost:5000, [::1]:5000 or :5000)"
        )
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        let v6 = inner.strip_suffix(']').ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        Some(v6.to_owned())
    } else if host.contains(':') || host.contains(['[', ']']) {
        // An IPv6 address needs its brackets, as in Go.
        return Err(bad());
    } else if host.is_empty() {
        None
    } else {
        let name_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !name_ok {
            return Err(bad());
        }
        Some(host.to_owned())
    };
    Ok(Listen::Tcp { host, port })
}

impl Listen {
    /// The socket addresses to listen on: `:port` is 0.0.0.0, an IP itself,
    /// a host name every address it resolves to (IPv4 first, no
    /// duplicates). Resolving may block (it asks the system resolver).
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let (host, port) = match self {
            Listen::Unix(path) => {
                return Err(format!(
                    "{} is a unix socket, not an address",
                    path.display()
                ))
            }
            Listen::Tcp { host: None, port } => {
                return Ok(vec![SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port)])
            }
            Listen::Tcp {
                host: Some(host),
                port,
            } => (host, *port),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("host {host:?} does not resolve: {e}"))?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        // Stable: the resolver's order within each family.
        addrs.sort_by_key(|a| a.is_ipv6());
        if addrs.is_empty() {
            return Err(format!("host {host:?} resolves to no address"));
        }
        Ok(addrs)
    }
}

/// Binds every address of `addrs` (non-blocking, for tokio). An address
/// after the first that this host cannot have (IPv6 turned off while
/// `localhost` still names ::1) is skipped with a warning, as Go would not
/// have listened on it anyway; any other failure is an error.
pub fn bind_all(
    addrs: &[SocketAddr],
) -> Result<Vec<std::net::TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let bound = std::net::TcpListener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(l)
        });
        match bound {
            Ok(l) => listeners.push(l),
            Err(e)
                if i > 0
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
                    ) =>
            {
                tracing::warn!(%addr, "not listening on this address: {e}");
            }
            Err(e) => return Err((*addr, e)),
        }
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: Option<&str>, port: u16) -> Listen {
        Listen::Tcp {
            host: host.map(str::to_owned),
            port,
        }
    }

    #[test]
    fn takes_what_go_net_listen_takes() {
        assert_eq!(parse(":5000", ""), Ok(tcp(None, 5000)));
        assert_eq!(
            parse("localhost:5001", "tcp"),
            Ok(tcp(Some("localhost"), 5001))
        );
        assert_eq!(
            parse("registry.example:80", ""),
            Ok(tcp(Some("registry.example"), 80))
        );
        assert_eq!(parse("0.0.0.0:5000", ""), Ok(tcp(Some("0.0.0.0"), 5000)));
        assert_eq!(parse("[::1]:5000", ""), Ok(tcp(Some("::1"), 5000)));
        assert_eq!(parse("[::]:0", "tcp6"), Ok(tcp(Some("::"), 0)));
        assert_eq!(
            parse("/run/registry.sock", "unix"),
            Ok(Listen::Unix("/run/registry.sock".into()))
        );
        for bad in [
            "localhost",
            "5000",
            "::1:5000",
            "[::1]",
            "a b:1",
            "h:70000",
            "h:http",
            "",
        ] {
            assert!(parse(bad, "tcp").is_err(), "{bad:?} accepted");
        }
        assert!(parse("/x", "udp").is_err());
        assert!(parse("", "unix").is_err());
    }

    #[test]
    fn resolves_names_to_every_address_ipv4_first() {
        assert_eq!(
            tcp(None, 5000).resolve().unwrap(),
            vec!["0.0.0.0:5000".parse().unwrap()]
        );
        assert_eq!(
            tcp(Some("::1"), 7).resolve().unwrap(),
            vec!["[::1]:7".parse().unwrap()]
        );
        let local = tcp(Some("localhost"), 5001).resolve().unwrap();
        assert!(
            local.contains(&"127.0.0.1:5001".parse().unwrap()),
            "{local:?}"
        );
        assert!(local[0].is_ipv4(), "{local:?}");
        assert!(local.iter().all(|a| a.ip().is_loopback()), "{local:?}");
        let e = tcp(Some("no-such-host.invalid"), 1).resolve().unwrap_err();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }

    #[test]
    fn binds_every_resolved_address() {
        let addrs = tcp(Some("localhost"), 0).resolve().unwrap();
        let bound = bind_all(&addrs).unwrap();
        assert!(!bound.is_empty());
        assert!(bound[0].local_addr().unwrap().ip().is_loopback());
    }
}
