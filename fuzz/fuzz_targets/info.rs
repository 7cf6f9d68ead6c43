//! INFO text through the parser and the renderer: no panic, every parsed
//! number finite, and a well-formed exposition without NaN or Inf.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use redis_vitals::expose::render_observation;
use redis_vitals::parse::info::parse_info;
use redis_vitals::expose::state::Observation;
use redis_vitals_fuzz::{check_exposition, skip_known_bugs};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let info = parse_info(&text);
    for (k, v) in info.numeric_fields() {
        assert!(v.is_finite(), "{k}");
    }
    for l in info.latencies.iter() {
        assert!(l.percentiles.iter().all(|(_, v)| v.is_finite()));
    }
    // The daemon takes the client limit from INFO itself (6.2+).
    let mut maxclients = info.u64("maxclients");
    if skip_known_bugs() {
        // Known: derive::clients_saturation adds these as u64 unchecked.
        let sum = [
            "connected_clients",
            "connected_slaves",
            "cluster_connections",
        ]
        .iter()
        .try_fold(0u64, |acc, k| acc.checked_add(info.u64(k).unwrap_or(0)));
        if sum.is_none() {
            maxclients = None;
        }
    }
    let obs = Observation {
        at: Instant::now(),
        asked_at: Instant::now(),
        info,
        maxclients,
        cluster_info: None,
        cluster_nodes: None,
        denied: vec!["config|get"],
    };
    let out = render_observation(&obs, "127.0.0.1:6379", "fuzz");
    check_exposition(&out);
    assert!(out.contains("redis_up{"));
});
