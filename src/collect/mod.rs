//! Collection: one poller per node on a shared schedule, Redis Cluster
//! discovery and the merged topology, discovery through Redis Sentinel,
//! and the trust rules for discovered addresses. It writes node snapshots (`expose::state`) and renders each
//! node's text once per poll; it never serves anything.

pub mod discovery;
pub mod insight;
pub mod poller;
pub mod schedule;
pub mod sentinel;
pub mod shard;
pub mod topology;
