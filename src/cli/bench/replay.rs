//! `bench replay`: the raw COPY scan, the replay and the naive projector on one log.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{print_files, workers, LogArgs};
use crate::cli::parse_duration;

/// The flags of `bench replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The naive projector runs on at most this many events...
    #[arg(long, default_value_t = 20_000)]
    pub naive_events: i64,
    /// ...and for at most this long.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub naive_time: Duration,
    /// The most events one partition's fold holds at once before it defers aggregates to a
    /// spill table (`projector --held-limit`). 0: no limit.
    #[arg(long, default_value_t = projector::spill::DEFAULT_HELD_LIMIT, value_name = "EVENTS")]
    pub held_limit: usize,
}

/// `bench replay`, validated.
pub(super) struct ReplayPlan {
    workers: usize,
    naive_events: i64,
    naive_time: Duration,
    held_limit: Option<usize>,
}

impl ReplayArgs {
    pub(super) fn validate(self) -> Result<ReplayPlan> {
        Ok(ReplayPlan {
            workers: workers(self.workers)?,
            naive_events: self.naive_events,
            naive_time: self.naive_time,
            held_limit: (self.held_limit > 0).then_some(self.held_limit),
        })
    }
}

pub(super) async fn replay(url: String, out: &Path, p: ReplayPlan) -> Result<()> {
    let config = bench::ReplayBenchConfig {
        database_url: url,
        workers: p.workers,
        naive_events: p.naive_events,
        naive_time: p.naive_time,
        held_limit: p.held_limit,
        out_dir: out.to_owned(),
    };
    let r = bench::replay_bench(&config).await?;
    println!(
        "scale: {} events, {} aggregates, {:.0} MB on the wire, payload {}",
        r.events,
        r.aggregates,
        r.log_bytes as f64 / 1e6,
        r.payload_type
    );
    println!(
        "scan (COPY TO, 1 stream):   {:>10.0} events/s  {:>7.1} MB/s  {:>7.2}s",
        r.scan_events_per_s, r.scan_mb_per_s, r.scan_seconds
    );
    println!(
        "replay ({} workers):          {:>10.0} events/s  {:>7.1} MB/s  {:>7.2}s (bulk {:.2}s + barrier {:.2}s)",
        r.workers,
        r.replay_events_per_s,
        r.replay_mb_per_s,
        r.replay_seconds,
        r.replay_bulk_seconds,
        r.replay_barrier_seconds
    );
    println!("naive (1 event/stmt/commit): {:>10.0} events/s (synchronous_commit=on)", r.naive_events_per_s);
    println!("naive, async commit:         {:>10.0} events/s", r.naive_async_events_per_s);
    println!(
        "replay_vs_scan = {:.2}   replay_vs_naive = {:.0}   peak RSS {} MB (scan {} MB, replay {} MB{})",
        r.replay_vs_scan,
        r.replay_vs_naive,
        r.peak_rss_bytes / 1_000_000,
        r.scan_peak_rss_bytes / 1_000_000,
        r.replay_peak_rss_bytes / 1_000_000,
        if r.rss_per_phase { "" } else { "; not reset between phases" }
    );
    println!(
        "fold: largest partition {} events, {} aggregates per worker map; {} events held at some point, \
         at most {} at once (limit {}); {} gap lookups applied {} events ahead of the stream; \
         {} evicted and read back ({} read); {} aggregates deferred, {} events folded from the spill",
        r.largest_partition_events,
        r.largest_partition_aggregates,
        r.held_total,
        r.held_peak,
        r.held_limit.map_or("none".to_owned(), |l| l.to_string()),
        r.gap_lookups,
        r.fetched,
        r.evicted,
        r.refetched,
        r.deferred_aggregates,
        r.spilled
    );
    print_files(out, "replay.csv", "replay.svg");
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
