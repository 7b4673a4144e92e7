//! Who the client is: the TCP peer, or, when the peer is a trusted proxy
//! (`http.trusted_proxies`), the address that proxy says it forwarded
//! for. One answer for the login throttles (`auth::credentials`), the
//! access log, the audit log and the web UI's login.
//!
//! The forwarding chain is `X-Forwarded-For` (every line, in order), or
//! `Forwarded`'s `for=` parameters (RFC 7239) when there is no
//! `X-Forwarded-For`. Read from the right: each trusted address is a proxy
//! of ours that appended the one before it, and the first address that is
//! not trusted is the client (an address further left was written by that
//! client, so it proves nothing). Without trusted proxies, or from a peer
//! that is not one, the headers are not read at all: a client cannot
//! choose the address its failed logins are counted under.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `http.trusted_proxies`: CIDRs, or single addresses.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| parse_net(e).ok_or_else(|| format!("{e:?} is not a CIDR (e.g. 10.0.0.0/8)")))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        // The nearest hop known to be ours; what it forwarded for is
        // believed, so walk on leftwards.
        let mut nearest = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => nearest = *ip,
                Some(ip) => return *ip,
                // A value we cannot read (`unknown`, an obfuscated name):
                // the proxy that wrote it is the last address we know.
                None => return nearest,
            }
        }
        nearest
    }
}

/// Parses a CIDR, or an address as a network of one.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The forwarding chain, leftmost (farthest) first; `None` for an entry
/// that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect();
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|line| line.split(','))
            .map(|e| parse_node(e.trim()))
            .collect();
    }
    headers
        .get_all(FORWARDED)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("for=?").split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
        })
        .collect()
}

/// An address, with or without a port: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

/// The client of the request (an extractor for handlers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&nets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_and_no_setting_keep_the_peer() {
        let forged = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.8"),
        ]);
        assert_eq!(proxies(&[]).client(ip("10.0.0.5"), &forged), ip("10.0.0.5"));
        assert_eq!(
            proxies(&["10.0.0.0/24"]).client(ip("10.0.1.5"), &forged),
            ip("10.0.1.5")
        );
    }

    #[test]
    fn the_rightmost_untrusted_address_wins() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("x-forwarded-for", "198.51.100.7")], "198.51.100.7"),
            // The client wrote the leftmost entry itself.
            (
                &[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.1.2.3")],
                "198.51.100.7",
            ),
            // Several lines are one list, in order.
            (
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "198.51.100.7, 192.168.1.1"),
                ],
                "198.51.100.7",
            ),
            (&[("x-forwarded-for", "198.51.100.7:4711")], "198.51.100.7"),
            (&[("x-forwarded-for", "[2001:db8::1]:4711")], "2001:db8::1"),
            (
                &[("x-forwarded-for", "::ffff:198.51.100.7")],
                "198.51.100.7",
            ),
            // Every hop trusted: the farthest one.
            (&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")], "10.9.9.9"),
            // Unreadable: the proxy that wrote it.
            (
                &[("x-forwarded-for", "1.2.3.4, unknown, 10.1.1.1")],
                "10.1.1.1",
            ),
            (&[("x-forwarded-for", "garbage")], "10.0.0.2"),
            // No header: the proxy itself.
            (&[], "10.0.0.2"),
            // Forwarded only when there is no X-Forwarded-For.
            (
                &[(
                    "forwarded",
                    "for=1.2.3.4, for=\"[2001:db8::2]:80\";proto=https, for=10.3.3.3",
                )],
                "2001:db8::2",
            ),
            (
                &[
                    ("forwarded", "for=198.51.100.1"),
                    ("x-forwarded-for", "198.51.100.7"),
                ],
                "198.51.100.7",
            ),
            (&[("forwarded", "for=_hidden, for=10.3.3.3")], "10.3.3.3"),
        ];
        for (h, want) in cases {
            assert_eq!(p.client(ip("10.0.0.2"), &headers(h)), ip(want), "{h:?}");
        }
    }

    #[test]
    fn settings_are_cidrs_or_addresses() {
        let p = proxies(&["127.0.0.1", "fd00::/8", "10.1.2.3/8"]);
        assert!(p.trusts(ip("127.0.0.1")));
        assert!(!p.trusts(ip("127.0.0.2")));
        assert!(p.trusts(ip("::ffff:127.0.0.1")));
        assert!(p.trusts(ip("fd12::1")));
        assert!(p.trusts(ip("10.200.0.1")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
