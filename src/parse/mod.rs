//! Pure parsers of Redis replies: `INFO` and the `CLUSTER` commands. No
//! I/O; every function is total (never panics) and tested on fixtures.

pub mod cluster;
pub mod info;
