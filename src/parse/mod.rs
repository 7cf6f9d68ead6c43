//! Pure parsers of Redis replies: `INFO`, the `CLUSTER` and `SENTINEL` commands. No
//! I/O; every function is total (never panics) and tested on fixtures.

pub mod cluster;
pub mod info;
pub mod sentinel;
