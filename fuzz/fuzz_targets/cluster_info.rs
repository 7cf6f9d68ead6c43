//! CLUSTER INFO text through the parser, then the renderer: no panic,
//! bounded message-type labels, fixed error messages, a clean exposition;
//! the lenient form (the poller's) agrees and its partial result renders.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use redis_vitals::parse::cluster::{parse_cluster_info, parse_cluster_info_lenient};
use redis_vitals::expose::render_observation;
use redis_vitals::parse::info::Info;
use redis_vitals::expose::state::Observation;
use redis_vitals_fuzz::{check_error, check_exposition};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match (parse_cluster_info_lenient(&text), parse_cluster_info(&text)) {
        (Ok((ci, errors)), strict) => {
            assert_eq!(strict.err().as_ref(), errors.first());
            errors.iter().for_each(check_error);
            let obs = Observation {
                at: Instant::now(),
                asked_at: Instant::now(),
                info: Info::default(),
                maxclients: None,
                cluster_info: Some(ci),
                cluster_nodes: None,
                denied: Vec::new(),
            };
            check_exposition(&render_observation(&obs, "h:1", "c"));
        }
        (Err(e), strict) => assert_eq!(Err(e), strict.map(|_| ())),
    }
    match parse_cluster_info(&text) {
        Ok(ci) => {
            assert!(text.contains("cluster_state"));
            for (t, _) in ci.messages_sent.iter().chain(&ci.messages_received) {
                assert!(!t.is_empty() && t.len() <= 32);
                assert!(t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
            let obs = Observation {
                at: Instant::now(),
                asked_at: Instant::now(),
                info: Info::default(),
                maxclients: None,
                cluster_info: Some(ci),
                cluster_nodes: None,
                denied: Vec::new(),
            };
            check_exposition(&render_observation(&obs, "h:1", "c"));
        }
        Err(e) => check_error(&e),
    }
});
