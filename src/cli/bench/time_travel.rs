//! `bench time-travel`: as-of latency over HTTP, without and with snapshots.

use std::path::Path;

use anyhow::Result;
use clap::Args;

use super::{print_files, LogArgs};

/// The flags of `bench time-travel`.
#[derive(Debug, Args)]
pub struct TimeTravelArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Requests per history-length class (and per pass: without, then with snapshots).
    #[arg(long, default_value_t = 300)]
    pub requests: u64,
    /// Snapshot interval of the second pass (versions).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..))]
    pub snapshot_every: i32,
}

/// `bench time-travel`, validated.
pub(super) struct TimeTravelPlan {
    requests: u64,
    snapshot_every: i32,
}

impl TimeTravelArgs {
    pub(super) fn validate(self) -> TimeTravelPlan {
        TimeTravelPlan { requests: self.requests, snapshot_every: self.snapshot_every }
    }
}

pub(super) async fn time_travel(url: &str, out: &Path, p: TimeTravelPlan) -> Result<()> {
    let t = bench::time_travel_bench(url, p.requests, p.snapshot_every, out).await?;
    println!(
        "snapshots every {} versions: {} rows, {:.1} MB, built in {:.1}s",
        t.snapshot.every,
        t.snapshot.total_rows,
        t.snapshot.table_bytes as f64 / 1e6,
        t.snapshot.seconds
    );
    for c in &t.classes {
        println!(
            "{:<12} ~{:>6} events (aggregate {} has {}): p50 {:.2} ms, p99 {:.2} ms, {:.0} events read, {} requests",
            c.mode, c.target_events, c.aggregate_id, c.events, c.p50_ms, c.p99_ms, c.mean_events_read, c.requests
        );
    }
    println!(
        "1k-event aggregate p99: {:.2} ms with snapshots vs {:.2} ms without ({:.2}x)",
        t.p99_ms_1k, t.p99_ms_1k_no_snapshots, t.p99_ratio_1k
    );
    print_files(out, "time_travel.csv", "time_travel.svg");
    println!("{}", serde_json::to_string(&t)?);
    Ok(())
}
