//! Throughput measurements, ignored by default. Run in release mode, for example:
//! `LAB_BENCH_EVENTS=10000000 cargo test --release -p lab --test it bench -- --ignored --nocapture`.

use std::time::Duration;

use lab::{ProduceConfig, SeedConfig};

use crate::support::fresh;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn bench_seed_and_produce() {
    let events = env_u64("LAB_BENCH_EVENTS", 2_000_000);
    let (url, _client) = fresh().await;
    let report = lab::seed::run(&url, SeedConfig::new(events, (events / 10).max(1), 1)).await.unwrap();
    println!("{}", report.render());
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let writers = env_u64("LAB_BENCH_WRITERS", 8) as u32;
    let cfg = ProduceConfig { writers, ..ProduceConfig::new(0.0, Some(Duration::from_secs(5)), 1) };
    let produced = lab::produce::run(&url, cfg, stop).await.unwrap();
    println!("unpaced, {writers} writers: {}", produced.render());
}
