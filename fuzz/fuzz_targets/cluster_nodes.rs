//! CLUSTER NODES text through the parser: no panic, valid and disjoint slot
//! ranges on every accepted node, errors naming a real line number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_vitals::cluster_parse::parse_cluster_nodes;
use redis_vitals_fuzz::check_nodes;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_nodes(&text, &parse_cluster_nodes(&text));
});
