//! Who the client is when requests arrive through reverse proxies (`TRUSTED_PROXIES`).
//!
//! `X-Forwarded-For` is a list every proxy appends its peer to, so only its right end is
//! written by proxies we run: anything further left may have come from the client itself.
//! The client is therefore the right-most address that is not one of our proxies, and the
//! header counts only when the TCP peer is one of them.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::AppState;

/// The networks of the reverse proxies in front of the server: a comma-separated list of
/// CIDRs (`10.0.0.0/8,::1/128`; a bare address means that one host). Empty: no proxy is
/// trusted and `X-Forwarded-For` is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not a CIDR (like 10.0.0.0/8) or an address"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with these headers.
    ///
    /// Walks every `X-Forwarded-For` value from the right, skipping trusted proxies; the first
    /// address that is not one is the client. An entry that is not an address (garbage, or
    /// `unknown`) stops the walk at the last trusted hop: what lies beyond it cannot be
    /// trusted. If every hop is trusted, the left-most one is the client (an internal caller).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for hop in value.rsplit(',') {
                let Some(ip) = parse_hop(hop) else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (some proxies add one).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's IP address: the TCP peer, or what a trusted proxy says the client is.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        let trusted = &state.config.config.trusted_proxies;
        Ok(ClientIp(trusted.client_address(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("header"),
            );
        }
        headers
    }

    fn proxies(list: &str) -> TrustedProxies {
        list.parse().expect("valid list")
    }

    #[test]
    fn parses_cidrs_and_bare_addresses() {
        let list = proxies(" 10.0.0.0/8, 192.168.1.7 ,::1/128,fd00::/8,");
        assert!(list.contains(ip("10.200.3.4")));
        assert!(list.contains(ip("192.168.1.7")));
        assert!(!list.contains(ip("192.168.1.8")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("fd12::5")));
        assert!(proxies("").is_empty());
        // Host bits are ignored, as in most tools' CIDR notation.
        assert!(proxies("10.1.2.3/8").contains(ip("10.9.9.9")));
        for bad in ["10.0.0.0/33", "::/129", "proxy.local", "10.0.0.0/8;", "*"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let list = proxies("10.0.0.0/8");
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            list.client_address(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client_address(ip("10.0.0.1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let list = proxies("10.0.0.0/8,127.0.0.1");
        let peer = ip("127.0.0.1");
        // The client prepended a fake address; our proxies appended the real one and theirs.
        let headers = forwarded(&["1.2.3.4, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(list.client_address(peer, &headers), ip("203.0.113.9"));
        // Several header lines are one list, in order.
        let headers = forwarded(&["1.2.3.4, 203.0.113.9", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(list.client_address(peer, &headers), ip("203.0.113.9"));
        // Ports and IPv4-mapped IPv6 are understood.
        let headers = forwarded(&["[2001:db8::7]:4711, 10.0.0.2:80"]);
        assert_eq!(list.client_address(peer, &headers), ip("2001:db8::7"));
        let headers = forwarded(&["::ffff:203.0.113.5"]);
        assert_eq!(list.client_address(peer, &headers), ip("203.0.113.5"));
        assert_eq!(
            list.client_address(ip("::ffff:127.0.0.1"), &forwarded(&["203.0.113.5"])),
            ip("203.0.113.5"),
            "a mapped peer is the IPv4 peer"
        );
    }

    #[test]
    fn without_an_untrusted_hop_the_walk_stops_safely() {
        let list = proxies("10.0.0.0/8,127.0.0.1");
        let peer = ip("127.0.0.1");
        assert_eq!(list.client_address(peer, &HeaderMap::new()), peer);
        // Garbage stops the walk at the last trusted hop: never at an address left of it.
        let headers = forwarded(&["203.0.113.9, unknown, 10.0.0.2"]);
        assert_eq!(list.client_address(peer, &headers), ip("10.0.0.2"));
        let headers = forwarded(&["203.0.113.9,,"]);
        assert_eq!(list.client_address(peer, &headers), peer);
        // Only trusted hops: the request started inside; the left-most one sent it.
        let headers = forwarded(&["10.0.0.5, 10.0.0.2"]);
        assert_eq!(list.client_address(peer, &headers), ip("10.0.0.5"));
    }
}
