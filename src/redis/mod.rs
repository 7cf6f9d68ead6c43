//! Talking to Redis: target addresses and credentials, TLS, RESP framing
//! and one connection per node. The lowest layer: it knows nothing of
//! metrics.

pub mod cidr;
pub mod conn;
pub mod resp;
pub mod target;
pub mod tls;
