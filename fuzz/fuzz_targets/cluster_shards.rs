//! CLUSTER SHARDS replies through the parser. The first byte picks how the
//! rest becomes a `redis::Value`: even, decoded as RESP2/RESP3 bytes by the
//! redis crate (what the daemon receives); odd, a structured tree built
//! from the bytes (reaches shapes the RESP decoder cannot express, and
//! deep trees without long inputs).
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use redis_vitals::parse::cluster::parse_cluster_shards;
use redis_vitals_fuzz::{arb_value, check_shards};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let value = if mode % 2 == 0 {
        match redis::parse_redis_value(rest) {
            Ok(v) => v,
            Err(_) => return,
        }
    } else {
        let mut u = Unstructured::new(rest);
        match arb_value(&mut u, 0) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    check_shards(&parse_cluster_shards(&value));
});
