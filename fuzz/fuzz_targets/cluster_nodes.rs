//! CLUSTER NODES text through the parser: no panic, valid and disjoint slot
//! ranges on every accepted node, errors naming a real line number; the
//! lenient form (the poller's) keeps or reports every non-blank line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_vitals::parse::cluster::{parse_cluster_nodes, parse_cluster_nodes_lenient};
use redis_vitals_fuzz::{check_error, check_nodes};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_nodes(&text, &parse_cluster_nodes(&text));
    let (nodes, errors) = parse_cluster_nodes_lenient(&text);
    let lines = text.split('\n').filter(|l| !l.trim().is_empty()).count();
    assert_eq!(nodes.len() + errors.len(), lines);
    for e in &errors {
        check_error(e);
    }
});
