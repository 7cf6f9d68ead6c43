//! IP networks (CIDR), for the trust rules of discovered addresses
//! (`cluster.allowed-networks`). Written here rather than taken from a
//! crate: it is 80 lines, and no network crate is in the dependency tree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/24`, `fd00::/8`, or a bare address (a /32 or /128).
    /// Host bits below the prefix are cleared (`10.0.0.7/24` is
    /// `10.0.0.0/24`).
    pub fn parse(text: &str) -> Result<Cidr, &'static str> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| "not an IP network (e.g. 10.0.0.0/24 or fd00::/64)")?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or("prefix length must be 0-32 (IPv4) or 0-128 (IPv6)")?,
        };
        Ok(Cidr::new(ip, prefix))
    }

    /// The network of `ip` with `prefix` bits (clamped to the family's width).
    pub fn new(ip: IpAddr, prefix: u8) -> Cidr {
        let ip = ip.to_canonical();
        let prefix = prefix.min(if ip.is_ipv4() { 32 } else { 128 });
        Cidr {
            net: mask(ip, prefix),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }

    /// Whether this network lies entirely inside `other`.
    pub fn within(&self, other: &Cidr) -> bool {
        self.prefix >= other.prefix && other.contains(self.net)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}
