//! redis-vitals: a Prometheus exporter that polls every Redis node in the
//! background and serves the latest snapshot, with derived cache-health
//! signals. One module per concern; see README.md for the map.
#![forbid(unsafe_code)]

pub mod clock;
pub mod cluster_parse;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod derive;
pub mod discovery;
pub mod error;
pub mod exposition;
pub mod info;
pub mod logging;
pub mod poller;
pub mod process;
pub mod resp;
pub mod schedule;
pub mod state;
pub mod target;
pub mod tls;
pub mod topology;
pub mod web;

/// The web config (`--web.config.file`), kept at its old path for users of
/// the library.
pub use web::config as webconfig;
