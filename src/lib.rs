//! redis-vitals: a Prometheus exporter that polls every Redis node in the
//! background and serves the latest snapshot, with derived cache-health
//! signals.
//!
//! The data flows Redis -> parse -> collect -> signals -> expose -> web.
//! Each layer is a folder, and a module imports only from layers below it
//! (`tests/architecture.rs` checks that no import, between files or between
//! layers, goes in a circle). From the bottom:
//!
//! - `clock.rs`, `error.rs`: time and the fixed failure-reason labels;
//! - `redis/`: targets, TLS, RESP, connections, CIDR (I/O, no metrics);
//! - `parse/`: INFO and CLUSTER replies (pure);
//! - `signals/`: derived values: hit ratio, lag, counters (pure);
//! - `expose/`: node snapshots, the metric catalogue, text rendering;
//! - `web/`: HTTP, the web config, shared pages; it reads the exporter only
//!   through the `web::Site` trait;
//! - `config.rs`: flags, environment and the TOML file;
//! - `collect/`: pollers, schedule, discovery and topology; it writes
//!   snapshots, and reaches the node registry only through
//!   `collect::topology::Fleet`;
//! - `daemon.rs`: the wiring (implements both traits); `main.rs`: thin.
//!
//! docs/architecture.md tells why each piece is the way it is.
#![forbid(unsafe_code)]

pub mod clock;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod error;
pub mod expose;
pub mod logging;
pub mod parse;
pub mod redis;
pub mod signals;
pub mod web;
