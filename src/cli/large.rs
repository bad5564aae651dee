//! `reproject lab large`: the large tier (100M events over 10M aggregates by default) as one
//! resumable command; the steps live in `bench::large`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{database_url, parse_duration, Global};

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub which: LabWhich,
}

#[derive(Debug, Subcommand)]
pub enum LabWhich {
    /// Seed, build the live v3, rebuild v4 with catch-up under a producer and readers, cut
    /// over with 0 failed reads, verify v4 (0 diffs) and v3 (its bug set only). Rerun it after
    /// a crash: finished steps are skipped, the step in flight resumes. Checks free disk first.
    Large(LargeArgs),
}

#[derive(Debug, Args)]
pub struct LargeArgs {
    /// Events to seed.
    #[arg(long, default_value_t = 100_000_000)]
    pub events: u64,
    /// Aggregates to seed.
    #[arg(long, default_value_t = 10_000_000)]
    pub aggregates: u64,
    /// Log partitions (default: from the memory arithmetic, so a worker's map fits --fold-memory-mb).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Memory one replay worker's hash map may take (MB).
    #[arg(long, default_value_t = 1024)]
    pub fold_memory_mb: u64,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The producer's rate during the rebuild (events/s).
    #[arg(long, default_value_t = 5_000.0)]
    pub ingest: f64,
    /// A cap on the v4 rebuild's events per second (bulk and catch-up), so the producer and the
    /// readers keep their share of the cores (on 2 cores a full-speed replay leaves the producer
    /// a tenth of its rate). Default: full speed.
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub replay_rate_limit: Option<f64>,
    /// Readers during the rebuild and cutover.
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// How long readers go on after the cutover.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub after_cutover: Duration,
    /// WAL ceiling for the run (`max_wal_size`, MB; 0 leaves the server's setting).
    #[arg(long, default_value_t = 2_048)]
    pub max_wal_mb: u64,
    /// The state file (one entry per finished step).
    #[arg(long, default_value = ".reproject/large-state.json")]
    pub state: PathBuf,
    /// Start over: drop the log and read side, forget the state file.
    #[arg(long)]
    pub reset: bool,
}

pub async fn run(g: &Global, a: LabArgs) -> Result<ExitCode> {
    match a.which {
        LabWhich::Large(a) => large(g, a).await,
    }
}

async fn large(g: &Global, a: LargeArgs) -> Result<ExitCode> {
    if a.events == 0 || a.aggregates == 0 || a.aggregates > a.events {
        bail!("--events and --aggregates must be positive, with --aggregates at most --events");
    }
    if let Some(p) = a.partitions {
        if !(1..=1024).contains(&p) {
            bail!("--partitions must be between 1 and 1024");
        }
    }
    if a.readers == 0 {
        bail!("--readers must be at least 1");
    }
    if !(a.ingest.is_finite() && a.ingest > 0.0) {
        bail!("--ingest must be a positive number of events per second");
    }
    if a.replay_rate_limit.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--replay-rate-limit must be a positive number of events per second");
    }
    if a.fold_memory_mb == 0 {
        bail!("--fold-memory-mb must be positive");
    }
    let config = bench::large::LargeConfig {
        database_url: database_url(g)?,
        events: a.events,
        aggregates: a.aggregates,
        partitions: a.partitions,
        workers: a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        fold_memory_bytes: a.fold_memory_mb * 1_000_000,
        ingest: a.ingest,
        readers: a.readers,
        replay_rate_limit: a.replay_rate_limit,
        after_cutover: a.after_cutover,
        max_wal_mb: (a.max_wal_mb > 0).then_some(a.max_wal_mb),
        state_path: a.state,
        out_dir: PathBuf::from("results/large"),
        reset: a.reset,
    };
    let state = bench::large::run(&config).await.context("lab large")?;
    println!("{}", serde_json::to_string(&state)?);
    Ok(ExitCode::SUCCESS)
}
