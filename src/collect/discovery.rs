//! Which discovered cluster nodes the exporter may poll (issue 16).
//!
//! A node's `CLUSTER NODES` reply names addresses the exporter would then
//! connect to with the seed's credentials. A compromised or misconfigured
//! node could list any address (the cloud metadata service at
//! 169.254.169.254, an attacker's listener) and collect the password. So a
//! discovered address is polled only when it passes a trust check:
//!
//! * `cluster.allowed-networks` set: the address is in one of those CIDRs;
//! * not set: the address is in the same network as a configured seed's
//!   address (the IP literal, or the address its connection resolved to),
//!   where "network" is the seed's /24 for IPv4 and its /64 for IPv6, plus
//!   all of loopback (127.0.0.0/8 and ::1) when a seed is loopback. /24 and
//!   /64 because those are the usual smallest subnet a cluster's nodes share
//!   (one VPC subnet, one L2 segment), while anything wider would let a
//!   seed in 10.0.0.0/24 vouch for all of 10.0.0.0/8;
//! * link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata,
//!   unconfigured interfaces) are refused unless an allowed network lying
//!   inside the link-local range lists them explicitly (`0.0.0.0/0` does not);
//! * a discovered address must be an IP literal: a host name would have to be
//!   resolved, and could resolve anywhere afterwards.
//!
//! Refusals are counted per cluster and reason, logged once per address
//! while it stays listed, and shown on the landing page. Nothing is ever
//! sent to a refused address.
//!
//! CIDRs are parsed by hand with std's `IpAddr`: `ipnet` is not in
//! Cargo.lock, and the few lines here are all the module needs.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::error::Refusal;
pub use crate::redis::cidr::Cidr;
use std::sync::Mutex;

/// The seed's network when no CIDR is configured (see the module doc).
pub const SEED_PREFIX_V4: u8 = 24;
pub const SEED_PREFIX_V6: u8 = 64;

fn link_local_v4() -> Cidr {
    Cidr::new(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16)
}

fn link_local_v6() -> Cidr {
    Cidr::new(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10)
}

fn is_link_local(ip: IpAddr) -> bool {
    link_local_v4().contains(ip) || link_local_v6().contains(ip)
}

/// The networks discovered addresses are checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    networks: Vec<Cidr>,
}

impl Trust {
    /// `cluster.allowed-networks` as configured.
    pub fn explicit(networks: &[Cidr]) -> Trust {
        Trust {
            networks: networks.to_vec(),
        }
    }

    /// The seeds' networks: /24 or /64 around each seed address, plus all of
    /// loopback when a seed is loopback.
    pub fn from_seeds(seeds: impl IntoIterator<Item = IpAddr>) -> Trust {
        let mut networks: Vec<Cidr> = Vec::new();
        let mut add = |c: Cidr| {
            if !networks.contains(&c) {
                networks.push(c);
            }
        };
        for ip in seeds {
            let ip = ip.to_canonical();
            if ip.is_loopback() {
                add(Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8));
                add(Cidr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128));
            } else if ip.is_ipv4() {
                add(Cidr::new(ip, SEED_PREFIX_V4));
            } else {
                add(Cidr::new(ip, SEED_PREFIX_V6));
            }
        }
        Trust { networks }
    }

    /// Whether a discovered node at `host` (CLUSTER NODES' ip field) may be
    /// polled.
    pub fn check(&self, host: &str) -> Result<(), Refusal> {
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Err(Refusal::NotAllowed);
        };
        let ip = ip.to_canonical();
        if is_link_local(ip) {
            // Only a network that is itself link-local vouches for it: a
            // catch-all like 0.0.0.0/0 must not open the metadata address.
            let listed = self.networks.iter().any(|n| {
                n.contains(ip) && (n.within(&link_local_v4()) || n.within(&link_local_v6()))
            });
            return if listed {
                Ok(())
            } else {
                Err(Refusal::LinkLocal)
            };
        }
        if self.networks.iter().any(|n| n.contains(ip)) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }
}

/// Newly refused addresses logged one by one per discovery pass; the rest
/// of a pass is one aggregated line, so a reply listing 40 000 nodes does
/// not write 40 000 log lines.
pub const LOG_EACH_PER_PASS: usize = 5;

/// Refused addresses shown on the landing page; the rest are counted there.
pub const SHOWN_ON_PAGE: usize = 100;

/// One refused address, as the landing page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedAddr {
    pub addr: String,
    pub cluster: String,
    pub reason: Refusal,
}

/// What discovery refused: the addresses refused in the last pass (memory
/// bounded by what the views list, which the reply cap bounds) and the
/// counters.
#[derive(Debug, Default)]
pub struct Refused {
    inner: Mutex<RefusedInner>,
}

#[derive(Debug, Default)]
struct RefusedInner {
    /// Refused in the last pass: address -> (cluster, reason).
    current: HashMap<String, (String, Refusal)>,
    /// `redis_vitals_discovery_refused_total`, by (cluster, reason).
    counts: BTreeMap<(String, Refusal), u64>,
}

impl Refused {
    /// Records one discovery pass: `refused` is every address refused in
    /// it, `clusters` every cluster seen (their counters start at 0).
    /// Counts and logs only the addresses not refused in the previous pass.
    pub fn record(&self, clusters: &[String], refused: Vec<RefusedAddr>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for c in clusters {
            for r in Refusal::ALL {
                inner.counts.entry((c.clone(), r)).or_insert(0);
            }
        }
        let mut next: HashMap<String, (String, Refusal)> = HashMap::with_capacity(refused.len());
        let mut new_by_reason: BTreeMap<(String, Refusal), usize> = BTreeMap::new();
        let mut logged = 0;
        for r in refused {
            let is_new = inner
                .current
                .get(&r.addr)
                .is_none_or(|(c, reason)| *c != r.cluster || *reason != r.reason);
            if is_new {
                *inner
                    .counts
                    .entry((r.cluster.clone(), r.reason))
                    .or_insert(0) += 1;
                *new_by_reason
                    .entry((r.cluster.clone(), r.reason))
                    .or_insert(0) += 1;
                if logged < LOG_EACH_PER_PASS {
                    logged += 1;
                    tracing::warn!(addr = %r.addr, cluster = %r.cluster, reason = r.reason.as_str(),
                        "discovered cluster node not polled (see cluster.allowed-networks, cluster.max-nodes)");
                }
            }
            next.insert(r.addr, (r.cluster, r.reason));
        }
        let total_new: usize = new_by_reason.values().sum();
        if total_new > logged {
            for ((cluster, reason), n) in &new_by_reason {
                tracing::warn!(cluster = %cluster, reason = reason.as_str(), count = n,
                    "discovered cluster nodes not polled (only the first {LOG_EACH_PER_PASS} of a pass are logged by address)");
            }
        }
        inner.current = next;
    }

    /// (cluster, reason, count) for the exposition.
    pub fn counts(&self) -> Vec<(String, Refusal, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .counts
            .iter()
            .map(|((c, r), n)| (c.clone(), *r, *n))
            .collect()
    }

    /// Up to `limit` addresses refused now, in address order, and how many
    /// there are in all.
    pub fn current(&self, limit: usize) -> (Vec<RefusedAddr>, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<RefusedAddr> = inner
            .current
            .iter()
            .map(|(a, (c, r))| RefusedAddr {
                addr: a.clone(),
                cluster: c.clone(),
                reason: *r,
            })
            .collect();
        all.sort_by(|a, b| a.addr.cmp(&b.addr));
        let total = all.len();
        all.truncate(limit);
        (all, total)
    }

    /// Whether `addr` is refused now.
    pub fn is_refused(&self, addr: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.current.contains_key(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let c = Cidr::parse("10.1.2.7/24").unwrap();
        assert_eq!(c.to_string(), "10.1.2.0/24");
        assert!(c.contains("10.1.2.255".parse().unwrap()));
        assert!(!c.contains("10.1.3.0".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("fd00:1::/64").unwrap();
        assert!(v6.contains("fd00:1::abcd".parse().unwrap()));
        assert!(!v6.contains("fd00:2::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seeds_vouch_for_their_own_network_only() {
        let t = Trust::from_seeds(["10.0.5.20".parse().unwrap()]);
        assert_eq!(t.check("10.0.5.21"), Ok(()));
        assert_eq!(t.check("10.0.6.1"), Err(Refusal::NotAllowed));
        assert_eq!(t.check("127.0.0.1"), Err(Refusal::NotAllowed));
        assert_eq!(t.check("169.254.169.254"), Err(Refusal::LinkLocal));
        assert_eq!(t.check("redis-0.example"), Err(Refusal::NotAllowed));
        let lo = Trust::from_seeds(["127.0.0.1".parse().unwrap()]);
        assert_eq!(lo.check("127.0.0.2"), Ok(()));
        assert_eq!(lo.check("::1"), Ok(()));
        assert_eq!(lo.check("10.0.0.1"), Err(Refusal::NotAllowed));
        let v6 = Trust::from_seeds(["fd00::1".parse().unwrap()]);
        assert_eq!(v6.check("fd00::ffff:1"), Ok(()));
        assert_eq!(v6.check("fe80::1"), Err(Refusal::LinkLocal));
        assert_eq!(
            Trust::from_seeds([]).check("10.0.0.1"),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn link_local_needs_an_explicit_link_local_network() {
        let any = Trust::explicit(&[
            Cidr::parse("0.0.0.0/0").unwrap(),
            Cidr::parse("::/0").unwrap(),
        ]);
        assert_eq!(any.check("8.8.8.8"), Ok(()));
        assert_eq!(any.check("169.254.169.254"), Err(Refusal::LinkLocal));
        assert_eq!(any.check("fe80::1"), Err(Refusal::LinkLocal));
        let explicit = Trust::explicit(&[Cidr::parse("169.254.10.0/24").unwrap()]);
        assert_eq!(explicit.check("169.254.10.3"), Ok(()));
        assert_eq!(explicit.check("169.254.169.254"), Err(Refusal::LinkLocal));
    }

    #[test]
    fn refusals_are_counted_once_while_listed() {
        let r = Refused::default();
        let one = |addr: &str| RefusedAddr {
            addr: addr.into(),
            cluster: "c".into(),
            reason: Refusal::NotAllowed,
        };
        let count = |r: &Refused, reason| {
            r.counts()
                .into_iter()
                .find(|(c, rr, _)| c == "c" && *rr == reason)
                .map(|x| x.2)
        };
        r.record(&["c".into()], vec![one("a:1"), one("b:1")]);
        r.record(&["c".into()], vec![one("a:1"), one("b:1")]);
        assert_eq!(count(&r, Refusal::NotAllowed), Some(2));
        assert_eq!(count(&r, Refusal::Cap), Some(0));
        r.record(&["c".into()], vec![one("a:1")]);
        r.record(&["c".into()], vec![one("a:1"), one("b:1")]);
        assert_eq!(count(&r, Refusal::NotAllowed), Some(3));
        let (shown, total) = r.current(1);
        assert_eq!((shown.len(), total), (1, 2));
        assert!(r.is_refused("b:1"));
    }
}
