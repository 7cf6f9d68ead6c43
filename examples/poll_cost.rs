//! A poll's CPU work on the master fixture, repeated: parse the INFO reply
//! of a plain poll (no command or latency stats), and render the node's
//! text reusing the command lines of a detail poll. For A/B comparisons in
//! instruction counts, which a shared, noisy machine does not blur the way
//! it blurs timings (BENCHMARKS.md):
//!
//!     cargo build --release --example poll_cost
//!     valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!         target/release/examples/poll_cost 1000
//!
//! The "Collected" instruction count divided by the iterations is the cost
//! of one poll's parse and render.

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/info/redis-7.0.15-master-2-replicas.txt"
    );
    let detail = std::fs::read_to_string(path).expect("fixture");
    // A plain poll's reply: the same without the detail sections' lines.
    let plain: String = detail
        .lines()
        .filter(|l| !l.starts_with("cmdstat_") && !l.starts_with("latency_percentiles_usec_"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let first = redis_vitals::expose::state::Observation::from_info(
        redis_vitals::parse::info::parse_info(&detail),
    );
    let mut prev = redis_vitals::expose::render_node(&first, "127.0.0.1:6379", "");
    let mut bytes = 0;
    for _ in 0..iterations {
        let mut info = redis_vitals::parse::info::parse_info(std::hint::black_box(&plain));
        // Carried forward, as the poller does between detail polls.
        info.commands = first.info.commands.clone();
        info.latencies = first.info.latencies.clone();
        let obs = redis_vitals::expose::state::Observation::from_info(info);
        let text = redis_vitals::expose::render_node_with(&obs, "127.0.0.1:6379", "", Some(&prev));
        bytes += text.segments().iter().map(|(_, s)| s.len()).sum::<usize>();
        prev = text;
    }
    println!(
        "{iterations} polls, {} bytes of text each",
        bytes / iterations.max(1)
    );
}
