//! Sharding a fleet across exporter replicas (`--shard.index`,
//! `--shard.count`; issue 18). Pure.
//!
//! Every replica discovers the whole topology but polls and serves only the
//! units of sharding it owns. A unit is what must stay on one replica:
//!
//! * a Redis Cluster node's unit is its master+replicas group,
//!   `cluster/<name>/<shard>`, where `shard` is `TopoNode::shard` (the
//!   master's first slot range, which a failover hands to the new master
//!   unchanged): replication lag in seconds joins a replica with its master,
//!   so both must be polled by the same process;
//! * any other node's unit is its address, `addr/<host:port>`.
//!
//! Units go to replicas by rendezvous (highest-random-weight) hashing: each
//! replica `i` scores the unit with `weight(unit, i)` and the highest score
//! wins. No replica needs to know another's state (only `shard.count`), a
//! new unit (a node joining) moves nothing else, and going from N to N+1
//! replicas moves only the units the new replica now wins, about 1/(N+1) of
//! them; nothing moves between the old replicas.
//!
//! The hash is FNV-1a 64 of the unit key, mixed with the replica index
//! through the MurmurHash3 64-bit finalizer (FNV-1a alone mixes its last
//! bytes poorly, which would skew rendezvous). Both are fixed, written out
//! below: every replica, whatever Rust version or platform built it, must
//! compute the same owner, and std's `DefaultHasher` (SipHash with
//! unspecified keys and algorithm) is documented as not stable across
//! releases. Changing this function reshuffles every fleet; the unit tests
//! pin some values.

pub use crate::config::ShardSettings;

/// Whether the replica `s` describes owns `unit`.
pub fn owns(s: &ShardSettings, unit: &str) -> bool {
    !s.enabled() || owner(unit, s.count) == s.index
}

/// The unit of a Redis Cluster node: its cluster and master+replicas group.
pub fn cluster_unit(cluster: &str, shard: &str) -> String {
    format!("cluster/{cluster}/{shard}")
}

/// The unit of a node outside any known cluster: its address.
pub fn addr_unit(addr: &str) -> String {
    format!("addr/{addr}")
}

/// FNV-1a, 64 bits (offset basis and prime from the FNV reference).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: a bijection where every input bit flips
/// about half the output bits.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Replica `replica`'s score for `unit`.
pub fn weight(unit: &str, replica: u32) -> u64 {
    let r = fmix64(u64::from(replica).wrapping_add(0x9e37_79b9_7f4a_7c15));
    fmix64(fnv1a64(unit.as_bytes()) ^ r)
}

/// The replica (0..count) that owns `unit`: the highest weight, ties to the
/// lower index. `count` 0 is treated as 1.
pub fn owner(unit: &str, count: u32) -> u32 {
    (0..count.max(1))
        .map(|i| (weight(unit, i), i))
        // max_by_key keeps the last maximum; reverse the index so that a
        // tie goes to the lower one.
        .max_by_key(|&(w, i)| (w, u32::MAX - i))
        .map(|(_, i)| i)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| cluster_unit("10.0.0.1:7000", &format!("{}-{}", i * 16, i * 16 + 15)))
            .chain((0..n).map(|i| addr_unit(&format!("10.1.{}.{}:6379", i / 250, i % 250))))
            .collect()
    }

    #[test]
    fn pinned_values() {
        // FNV-1a 64 reference vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // The owners of a few units: a change here reshuffles every
        // sharded fleet on upgrade, so it must be deliberate.
        let got: Vec<u32> = [
            "addr/a:1",
            "addr/b:1",
            "cluster/c/0-5460",
            "cluster/c/5461-10922",
        ]
        .iter()
        .map(|u| owner(u, 3))
        .collect();
        assert_eq!(got, PINNED, "rendezvous owners changed");
    }
    const PINNED: [u32; 4] = [0, 1, 1, 1];

    #[test]
    fn one_replica_owns_everything() {
        let s = ShardSettings::default();
        assert!(!s.enabled());
        for k in keys(100) {
            assert!(owns(&s, &k));
            assert_eq!(owner(&k, 1), 0);
        }
    }

    #[test]
    fn balance_over_many_keys() {
        let ks = keys(5000);
        for count in [2u32, 3, 5, 8] {
            let mut per = vec![0usize; count as usize];
            for k in &ks {
                per[owner(k, count) as usize] += 1;
            }
            let mean = ks.len() as f64 / f64::from(count);
            for (i, &n) in per.iter().enumerate() {
                let dev = (n as f64 - mean).abs() / mean;
                assert!(
                    dev < 0.08,
                    "count {count}: replica {i} has {n}, mean {mean}: {per:?}"
                );
            }
        }
    }

    #[test]
    fn stable_and_exactly_one_owner() {
        for k in keys(500) {
            let o = owner(&k, 4);
            assert_eq!(o, owner(&k, 4));
            let owners: Vec<u32> = (0..4)
                .filter(|&i| owns(&ShardSettings { index: i, count: 4 }, &k))
                .collect();
            assert_eq!(owners, vec![o]);
        }
    }

    #[test]
    fn growing_the_count_moves_only_to_the_new_replica() {
        let ks = keys(5000);
        for count in [1u32, 2, 3, 7] {
            let mut moved = 0;
            for k in &ks {
                let (a, b) = (owner(k, count), owner(k, count + 1));
                if a != b {
                    assert_eq!(b, count, "{k} moved between old replicas {a} -> {b}");
                    moved += 1;
                }
            }
            let share = moved as f64 / ks.len() as f64;
            let expect = 1.0 / f64::from(count + 1);
            assert!(
                (share - expect).abs() < 0.03,
                "{count} -> {}: {share:.3} moved, expected about {expect:.3}",
                count + 1
            );
        }
    }
}
