//! `bench cutover` (experiment 2): a cutover under load, with v4 replayed beside the active v3.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{print_files, workers, LogArgs};
use crate::cli::parse_duration;

/// The flags of `bench cutover`.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Live ingest during the run (events/s).
    #[arg(long, default_value_t = 500.0)]
    pub ingest: f64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How long the load runs (the cutover happens once v4 is ready, after a third of it).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// `bench cutover`, validated.
pub(super) struct CutoverPlan {
    ingest: f64,
    concurrency: usize,
    duration: Duration,
    workers: usize,
}

impl CutoverArgs {
    pub(super) fn validate(self) -> Result<CutoverPlan> {
        if !self.ingest.is_finite() || self.ingest < 0.0 {
            bail!("--ingest must be a number of events per second, at least 0");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        Ok(CutoverPlan {
            ingest: self.ingest,
            concurrency: self.concurrency,
            duration: self.duration,
            workers: workers(self.workers)?,
        })
    }
}

pub(super) async fn cutover(url: String, out: &Path, p: CutoverPlan) -> Result<()> {
    let config = bench::CutoverBenchConfig {
        database_url: url,
        ingest: p.ingest,
        concurrency: p.concurrency,
        duration: p.duration,
        workers: p.workers,
        out_dir: out.to_owned(),
        reuse_active_v3: false,
    };
    let c = bench::cutover_bench(&config).await?;
    println!(
        "scale: {} aggregates; {} readers for {:?}; ingest {}/s",
        c.aggregates, p.concurrency, p.duration, p.ingest
    );
    println!(
        "reads: {} ({} not found), failed: {}, version regressions: {}, served: {:?}",
        c.requests, c.not_found, c.failed_reads, c.version_regressions, c.versions_served
    );
    println!("latency: p50 {:.2} ms, p99 {:.2} ms", c.p50_ms, c.p99_ms);
    println!(
        "switch: {:.2} ms in the transaction, {:.2} ms round trip, after {} refusals while v4 caught up",
        c.switch_ms, c.switch_request_ms, c.refused_attempts
    );
    println!(
        "frozen at X = {}: v4 vs v3 differ on {} aggregates, {} not explained by the v3 fee bug; v4 vs expected: {} diffs",
        c.frozen_position, c.diffs_total, c.diffs, c.diffs_v4_vs_expected
    );
    print_files(out, "cutover_load.csv", "cutover.svg");
    println!("{}", serde_json::to_string(&c)?);
    Ok(())
}
