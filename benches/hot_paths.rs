//! Micro-benchmarks of the hot paths: parsing an INFO reply and rendering a
//! node's text (every poll of every node), and rendering the exposition
//! (every scrape; `render` collects the chunks HTTP streams).

use criterion::{criterion_group, criterion_main, Criterion};

fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/info/redis-7.0.15-master-2-replicas.txt"
    );
    std::fs::read_to_string(path).expect("fixture")
}

fn parse(c: &mut Criterion) {
    let text = fixture();
    c.bench_function("parse_info/redis-7.0.15-master", |b| {
        b.iter(|| redis_vitals::parse::info::parse_info(std::hint::black_box(&text)))
    });
}

fn render(c: &mut Criterion) {
    let info = redis_vitals::parse::info::parse_info(&fixture());
    let obs = redis_vitals::expose::state::Observation::from_info(info);
    c.bench_function("render_observation/redis-7.0.15-master", |b| {
        b.iter(|| {
            redis_vitals::expose::render_observation(
                std::hint::black_box(&obs),
                "127.0.0.1:6379",
                "",
            )
        })
    });
    // What a poll pre-renders: from scratch (a detail poll), and reusing the
    // previous text's command lines (a poll that carried the lists forward).
    c.bench_function("render_node/redis-7.0.15-master", |b| {
        b.iter(|| {
            redis_vitals::expose::render_node(std::hint::black_box(&obs), "127.0.0.1:6379", "")
        })
    });
    let prev = redis_vitals::expose::render_node(&obs, "127.0.0.1:6379", "");
    c.bench_function("render_node/redis-7.0.15-master-cached", |b| {
        b.iter(|| {
            redis_vitals::expose::render_node_with(
                std::hint::black_box(&obs),
                "127.0.0.1:6379",
                "",
                Some(&prev),
            )
        })
    });
}

/// A full /metrics render of `n` nodes, each holding the master fixture.
fn render_fleet(c: &mut Criterion) {
    use std::sync::Arc;
    let info = redis_vitals::parse::info::parse_info(&fixture());
    let obs = Arc::new(redis_vitals::expose::state::Observation::from_info(info));
    for n in [100usize, 500] {
        let nodes: Vec<Arc<redis_vitals::expose::state::NodeState>> = (0..n)
            .map(|i| {
                let target = redis_vitals::redis::target::Target {
                    endpoint: redis_vitals::redis::target::Endpoint::Tcp {
                        host: "127.0.0.1".into(),
                        port: 10000 + i as u16,
                    },
                    addr: format!("127.0.0.1:{}", 10000 + i),
                    db: 0,
                    user: None,
                    password: None,
                    cluster: String::new(),
                    maxclients_override: None,
                    config_command: None,
                    discovered: false,
                    insight: None,
                    from_sentinel: false,
                    tls: None,
                };
                let text = redis_vitals::expose::render_node(&obs, &target.addr, "");
                let node = Arc::new(redis_vitals::expose::state::NodeState::new(target));
                node.status().last = Some(obs.clone());
                node.status().rendered = Some(Arc::new(text));
                node
            })
            .collect();
        let ctx = redis_vitals::expose::RenderContext {
            clock: redis_vitals::clock::Clock::new(),
            hit_window: 60.0,
            poll_interval: 5.0,
            only_addr: None,
            topology: Arc::new(Vec::new()),
            process: None,
            tasks: None,
            web_reload: None,
            stale_after: None,
            discovery_refused: Vec::new(),
            shard: None,
            sentinels: Default::default(),
        };
        // What a scrape does: snapshot, then render chunk by chunk, each
        // dropped once written (as hyper does).
        c.bench_function(&format!("render/{n}-nodes"), |b| {
            b.iter(|| {
                let mut page = redis_vitals::expose::Page::new(std::hint::black_box(&nodes), &ctx);
                let mut bytes = 0;
                while let Some(chunk) = page.next_chunk() {
                    bytes += std::hint::black_box(chunk).len();
                }
                bytes
            })
        });
    }
}

criterion_group!(benches, parse, render, render_fleet);
criterion_main!(benches);
