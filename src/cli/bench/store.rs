//! `bench store` (experiment 8): the replay into PostgreSQL and into Redis beside the raw scan,
//! the Redis rows verified, and rebuilds into a fresh Redis from snapshots at several cuts.

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;

use super::{workers, LogArgs};

/// The flags of `bench store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Snapshot points: fractions of the log's events below the snapshot's cut.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.9, 0.99])]
    pub snapshot_at: Vec<f64>,
}

/// `bench store`, validated.
pub(super) struct StorePlan {
    workers: usize,
    snapshot_at: Vec<f64>,
}

impl StoreArgs {
    pub(super) fn validate(self) -> Result<StorePlan> {
        if let Some(bad) = self.snapshot_at.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
            bail!("--snapshot-at {bad}: each point is a fraction of the log, between 0 and 1 (exclusive)");
        }
        Ok(StorePlan { workers: workers(self.workers)?, snapshot_at: self.snapshot_at })
    }
}

pub(super) async fn store(url: String, out: &Path, p: StorePlan) -> Result<()> {
    let config = bench::StoreBenchConfig {
        database_url: url,
        workers: p.workers,
        snapshot_points: p.snapshot_at,
        out_dir: out.to_owned(),
    };
    let r = bench::store_bench(&config).await?;
    println!(
        "scale: {} events, {} aggregates, {} partitions, {} workers; log {:.0} MB",
        r.scale_events,
        r.scale_aggregates,
        r.partitions,
        r.workers,
        r.log_bytes as f64 / 1e6
    );
    println!("scan (COPY TO):          {:>10.0} events/s", r.scan_events_per_s);
    println!("replay into PostgreSQL:  {:>10.0} events/s  ({:.2}s)", r.pg_events_per_s, r.pg_seconds);
    println!(
        "replay into Redis:       {:>10.0} events/s  ({:.2}s; redis/scan {:.2}, redis/pg {:.2})",
        r.redis_events_per_s, r.offset0_seconds, r.redis_vs_scan, r.redis_vs_pg
    );
    println!(
        "redis: {} rows, {} diffs against the log (verify {:.1}s), {:.0} B of used_memory per aggregate, AOF {:.0} MB",
        r.redis_rows,
        r.redis_diffs,
        r.redis_verify_seconds,
        r.redis_bytes_per_aggregate,
        r.redis_aof_bytes as f64 / 1e6
    );
    for s in &r.snapshots {
        println!(
            "snapshot at {:.1}% (asked {:.0}%): {:.1} MB, taken in {:.2}s; rebuild {:.2}s vs {:.2}s from offset 0 \
             ({} events after the cut), {} diffs",
            s.fraction * 100.0,
            s.asked * 100.0,
            s.bytes as f64 / 1e6,
            s.take_seconds,
            s.rebuild_seconds,
            r.offset0_seconds,
            s.events_after,
            s.diffs
        );
    }
    println!(
        "csv: {}  plots: {} {}",
        out.join("store.csv").display(),
        out.join("store_rates.svg").display(),
        out.join("store_rebuild.svg").display()
    );
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
