//! `bench batch-sweep` (experiment 1): the tail path's throughput against its write batch size.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{print_files, LogArgs};
use crate::cli::parse_duration;

/// The flags of `bench batch-sweep`.
#[derive(Debug, Args)]
pub struct BatchSweepArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Batch sizes to try.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000,50000")]
    pub batches: Vec<usize>,
    /// Each point stops after this many events...
    #[arg(long, default_value_t = 1_000_000)]
    pub max_events: u64,
    /// ...or this long.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub max_time: Duration,
    /// Commit without waiting for the WAL flush (the embedded cluster's default is to wait
    /// in this benchmark, which is what a durable projector pays).
    #[arg(long)]
    pub async_commit: bool,
}

/// `bench batch-sweep`, validated.
pub(super) struct SweepPlan {
    batches: Vec<usize>,
    max_events: u64,
    max_time: Duration,
    synchronous_commit: bool,
}

impl BatchSweepArgs {
    pub(super) fn validate(self) -> Result<SweepPlan> {
        if self.batches.is_empty() || self.batches.contains(&0) {
            bail!("--batches must be positive sizes");
        }
        Ok(SweepPlan {
            batches: self.batches,
            max_events: self.max_events,
            max_time: self.max_time,
            synchronous_commit: !self.async_commit,
        })
    }
}

pub(super) async fn batch_sweep(url: String, out: &Path, p: SweepPlan) -> Result<()> {
    let (max_events, max_time) = (p.max_events, p.max_time);
    let config = bench::SweepConfig {
        database_url: url,
        batches: p.batches,
        max_events,
        max_time,
        synchronous_commit: p.synchronous_commit,
        out_dir: out.to_owned(),
    };
    let s = bench::batch_sweep(&config).await?;
    println!(
        "scale: {} events in the log; each point <= {max_events} events or {max_time:?}; synchronous_commit={}",
        s.log_events, s.synchronous_commit
    );
    println!(
        "{:>7} {:>11} {:>9} {:>12} {:>10} {:>9} {:>11}",
        "batch", "events/s", "commits", "rebuild_s", "WAL B/ev", "fsyncs", "fsync_ms"
    );
    for p in &s.points {
        println!(
            "{:>7} {:>11.0} {:>9} {:>12.0} {:>10.0} {:>9} {:>11.1}",
            p.batch, p.events_per_s, p.commits, p.rebuild_seconds, p.wal_bytes_per_event, p.wal_syncs, p.wal_sync_ms
        );
    }
    println!("knee: batch {} (smallest within 90% of the best, {:.0} events/s)", s.knee_batch, s.best_events_per_s);
    print_files(out, "batch_sweep.csv", "batch_sweep.svg");
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}
