//! Micro-benchmarks of the two hot paths: parsing an INFO reply (every poll
//! of every node) and rendering the exposition (every scrape).

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
        b.iter(|| redis_vitals::info::parse_info(std::hint::black_box(&text)))
    });
}

fn render(c: &mut Criterion) {
    let info = redis_vitals::info::parse_info(&fixture());
    let obs = redis_vitals::state::Observation {
        at: std::time::Instant::now(),
        maxclients: info.u64("maxclients"),
        info,
        cluster_info: None,
        cluster_nodes: None,
        denied: Vec::new(),
    };
    c.bench_function("render_observation/redis-7.0.15-master", |b| {
        b.iter(|| {
            redis_vitals::exposition::render_observation(
                std::hint::black_box(&obs),
                "127.0.0.1:6379",
                "",
            )
        })
    });
}

criterion_group!(benches, parse, render);
criterion_main!(benches);
