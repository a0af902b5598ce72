//! Which IP addresses a push may be sent to: public unicast ones.
//!
//! Ranges from the IANA IPv4 and IPv6 special-purpose address registries (RFC 6890 and its
//! successors). An IPv6 address that carries an IPv4 address (IPv4-mapped, IPv4-compatible,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4 address, since that is where
//! a connection to it can end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address, the kind a push service has.
///
/// False for unspecified, loopback, private, carrier-grade NAT, link-local (including the
/// cloud metadata address 169.254.169.254), unique-local, multicast, broadcast, reserved,
/// documentation and benchmarking addresses, in IPv4 and IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

/// IPv4 networks that are not public, as (address, prefix length).
const NOT_PUBLIC_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", including the unspecified 0.0.0.0
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // carrier-grade NAT (shared address space)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, including cloud metadata 169.254.169.254
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, including broadcast 255.255.255.255
];

/// IPv6 networks inside global unicast `2000::/3` that are not public.
const NOT_PUBLIC_V6: &[(u128, u32)] = &[
    // IETF protocol assignments, including Teredo 2001::/32 (which hides an IPv4 address)
    // and benchmarking 2001:2::/48.
    (0x2001_0000 << 96, 23),
    (0x2001_0db8 << 96, 32), // documentation
    (0x3fff_0000 << 96, 20), // documentation (RFC 9637)
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    !NOT_PUBLIC_V4.iter().any(|&(network, len)| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        ip & mask == u32::from(Ipv4Addr::from(network)) & mask
    })
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_ipv4(ip) {
        return is_public_v4(v4);
    }
    let bits = u128::from(ip);
    let within = |network: u128, len: u32| {
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        bits & mask == network & mask
    };
    // Only 2000::/3 is allocated for global unicast. Everything outside is not public: the
    // unspecified and loopback addresses, 100::/64 discard, fc00::/7 unique-local,
    // fe80::/10 link-local, fec0::/10 site-local, ff00::/8 multicast, 64:ff9b:1::/48
    // local-use NAT64, 5f00::/16 SRv6, and whatever is allocated later.
    within(0x2000 << 112, 3) && !NOT_PUBLIC_V6.iter().any(|&(net, len)| within(net, len))
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that embed one.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d] = ip.octets()[12..] else {
        return None;
    };
    let last32 = Ipv4Addr::new(a, b, c, d);
    match ip.segments() {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(last32),
        // IPv4-compatible ::a.b.c.d (deprecated), which also covers :: and ::1 (0.0.0.0/8).
        [0, 0, 0, 0, 0, 0, _, _] => Some(last32),
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last32),
        // 6to4 2002:AABB:CCDD::/48 (RFC 3056).
        [0x2002, high, low, ..] => Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().expect("an IP address"))
    }

    /// Each entry: a range, its first and last address (or a few inside), none public.
    #[test]
    fn ipv4_special_ranges_are_not_public() {
        let ranges: &[(&str, &[&str])] = &[
            ("0.0.0.0/8", &["0.0.0.0", "0.1.2.3", "0.255.255.255"]),
            ("10/8", &["10.0.0.0", "10.1.2.3", "10.255.255.255"]),
            (
                "100.64/10 CGNAT",
                &["100.64.0.0", "100.100.1.1", "100.127.255.255"],
            ),
            (
                "127/8",
                &["127.0.0.1", "127.0.0.0", "127.255.255.255", "127.1.2.3"],
            ),
            (
                "169.254/16",
                &["169.254.0.0", "169.254.169.254", "169.254.255.255"],
            ),
            ("172.16/12", &["172.16.0.0", "172.20.1.1", "172.31.255.255"]),
            ("192.0.0/24", &["192.0.0.0", "192.0.0.9", "192.0.0.255"]),
            ("192.0.2/24", &["192.0.2.0", "192.0.2.255"]),
            ("192.88.99/24", &["192.88.99.1"]),
            (
                "192.168/16",
                &["192.168.0.0", "192.168.1.1", "192.168.255.255"],
            ),
            ("198.18/15", &["198.18.0.0", "198.19.255.255"]),
            ("198.51.100/24", &["198.51.100.7"]),
            ("203.0.113/24", &["203.0.113.7"]),
            (
                "224/4 multicast",
                &["224.0.0.0", "224.0.0.251", "239.255.255.255"],
            ),
            (
                "240/4 reserved",
                &["240.0.0.0", "250.1.2.3", "255.255.255.254"],
            ),
            ("broadcast", &["255.255.255.255"]),
        ];
        for (range, addresses) in ranges {
            for address in *addresses {
                assert!(!public(address), "{address} ({range}) counted as public");
            }
        }
    }

    #[test]
    fn ipv4_neighbours_of_special_ranges_are_public() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "142.250.74.42",
        ] {
            assert!(public(address), "{address} counted as not public");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_not_public() {
        for (range, address) in [
            ("unspecified", "::"),
            ("loopback", "::1"),
            ("unique-local fc00::/7", "fc00::1"),
            ("unique-local fd00::/8", "fd12:3456:789a::1"),
            ("link-local fe80::/10", "fe80::1"),
            ("link-local fe80::/10", "febf:ffff::1"),
            ("site-local fec0::/10", "fec0::1"),
            ("multicast ff00::/8", "ff02::1"),
            ("multicast ff00::/8", "ff0e::101"),
            ("discard 100::/64", "100::1"),
            ("documentation 2001:db8::/32", "2001:db8::1"),
            ("documentation 3fff::/20", "3fff:0fff::1"),
            ("Teredo 2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            ("benchmarking 2001:2::/48", "2001:2::1"),
            ("local-use NAT64 64:ff9b:1::/48", "64:ff9b:1::a00:1"),
            ("SIIT ::ffff:0:0:0/96", "::ffff:0:7f00:1"),
        ] {
            assert!(!public(address), "{address} ({range}) counted as public");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_follow_the_ipv4_rules() {
        for address in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.1.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.1.2.3",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
        ] {
            assert!(!public(address), "{address} counted as public");
        }
        for address in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(public(address), "{address} counted as not public");
        }
    }

    #[test]
    fn ipv6_global_unicast_is_public() {
        for address in [
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200a",
            "2001:200::1",
            "2400:cb00:2048:1::c629:d7a2",
        ] {
            assert!(public(address), "{address} counted as not public");
        }
    }
}
