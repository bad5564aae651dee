//! `reproject bench ...`: benchmarks as commands. Each prints its figures, writes CSV and an
//! SVG plot under --out, and ends with one JSON line.

mod adopt;
mod converge;
mod cutover;
mod isolation;
#[cfg(feature = "kafka")]
mod kafka;
mod plot;
mod produce;
mod replay;
mod store;
mod sweep;
mod tiers;
mod time_travel;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{database_url, Global};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where CSV files and plots go.
    #[arg(long, global = true, default_value = "results")]
    pub out: PathBuf,
    #[command(subcommand)]
    pub which: Which,
}

/// The log a benchmark runs on: seeded here unless an identical one is already there.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Events in the benchmark log.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Aggregates in the benchmark log.
    #[arg(long, default_value_t = 1_000_000)]
    pub aggregates: u64,
    /// Hash partitions of the log.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Reseed even when the database already holds this log.
    #[arg(long)]
    pub reseed: bool,
}

#[derive(Debug, Subcommand)]
pub enum Which {
    /// Raw COPY TO scan vs. full replay (bulk + barrier) vs. naive projector, on one log.
    Replay(replay::ReplayArgs),
    /// Experiment 1: tail-path throughput vs. write batch size (1, 100, 1k, 10k, 50k).
    BatchSweep(sweep::BatchSweepArgs),
    /// Experiment 2: load on the API, v3 live and active, v4 replayed beside it and caught up,
    /// cutover under load; failed reads, switch latency, and the frozen-position diff.
    Cutover(cutover::CutoverArgs),
    /// Experiment 3: live read p50/p99 with no replay, then beside a full-speed replay, a replay
    /// at a fixed rate limit, and an adaptive one (AIMD on the live p99); replay events/s of each.
    /// Last, a presence check: blocks with a stopped replay process against blocks with none.
    Isolation(isolation::IsolationArgs),
    /// as-of latency over HTTP for aggregates with about 1, 100, 1k and 10k events.
    TimeTravel(time_travel::TimeTravelArgs),
    /// The producer's ceiling: unpaced, alone for --duration, then for --duration beside
    /// full-speed replays of v4 on the same log; conflicts and retries per second.
    Produce(produce::ProduceArgs),
    /// Adopting an app's events table: the app's insert cost (adopted vs an identical control
    /// table, alternating, the feed running) and the replay from the adopted log vs the native
    /// one (`app_insert_overhead`, `replay_vs_native`), in a database of its own.
    Adopt(adopt::AdoptArgs),
    /// Experiment 4: replay from 0 while writers append at each --ingest rate; lag over time,
    /// convergence time, margin, and the crossover where it no longer converges.
    Converge(converge::ConvergeArgs),
    /// Experiment 7, compaction vs. completeness: one history in the event store, in a compacted
    /// topic of deltas and in a compacted topic of state-carrying events; diffs against the
    /// true state, time travel, log size before/after compaction. Uses --topic's cluster (two
    /// topics named after it) or a throwaway tansu broker; rebuilds the read side. (Builds
    /// with the `kafka` feature.)
    #[cfg(feature = "kafka")]
    Compaction(kafka::CompactionArgs),
    /// The Kafka log: replay of v4 from a topic vs a raw consume of it (`replay_vs_consume`),
    /// then the live projector's lag on the topic while `produce` appends. Uses --topic or a
    /// throwaway tansu broker; rebuilds the read side. (Builds with the `kafka` feature.)
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaArgs),
    /// Experiment 8, the store is a choice: v4 replayed into PostgreSQL and into a throwaway
    /// Redis beside the raw COPY scan, the Redis rows verified against the log, and rebuilds
    /// into a fresh Redis from snapshots at --snapshot-at cuts against the rebuild from offset 0.
    Store(store::StoreArgs),
    /// The replay across scale tiers: reads the JSON lines of `bench replay` runs (one file per
    /// tier), prints the table, plots events/s against the log's size, and extrapolates to 1B
    /// events. Touches no database.
    Tiers(tiers::TiersArgs),
    /// Redraws plots from their CSV files: each `NAME.csv` of --data that a benchmark writes
    /// becomes `NAME.svg` in --svg; by default the committed data of docs/plots/data redraws
    /// docs/plots. Touches no database.
    Plot(plot::PlotArgs),
}

impl LogArgs {
    /// Checks the log's shape before anything is seeded.
    fn validate(&self) -> Result<()> {
        if self.aggregates == 0 || self.aggregates > self.events {
            bail!("--aggregates must be positive and at most --events");
        }
        Ok(())
    }
}

/// Seeds the benchmark log unless an identical one is there.
async fn ensure_log(url: &str, log: &LogArgs) -> Result<()> {
    let client = eventlog::connect(url).await.context("connecting")?;
    if !log.reseed && eventlog::exists(&client).await? {
        let have: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
        let parts = eventlog::partition_count(&client).await?;
        if have as u64 == log.events && parts == log.partitions {
            tracing::info!(events = have, "reusing the benchmark log");
            return Ok(());
        }
    }
    let mut seed = lab::SeedConfig::new(log.events, log.aggregates, 42);
    seed.partitions = log.partitions;
    seed.reset = true;
    seed.progress = true;
    let report = lab::seed::run(url, seed).await.context("seeding the benchmark log")?;
    println!("{}", report.render());
    Ok(())
}

/// Runs one benchmark: its flags validated first (a bad one fails before the database is
/// touched), then the log seeded if it is not there, then the benchmark.
pub async fn run(g: &Global, a: BenchArgs) -> Result<ExitCode> {
    let which = match a.which {
        Which::Tiers(t) => return tiers::tiers(&a.out, t).map(|()| ExitCode::SUCCESS),
        Which::Plot(p) => return plot::plot(p).map(|()| ExitCode::SUCCESS),
        other => other,
    };
    let (log, bench) = Bench::validate(which)?;
    let url = database_url(g)?;
    ensure_log(&url, &log).await?;
    let out = a.out.as_path();
    match bench {
        Bench::Replay(p) => replay::replay(url, out, p).await?,
        Bench::BatchSweep(p) => sweep::batch_sweep(url, out, p).await?,
        Bench::Cutover(p) => cutover::cutover(url, out, p).await?,
        Bench::Isolation(p) => isolation::isolation(url, out, p).await?,
        Bench::TimeTravel(p) => time_travel::time_travel(&url, out, p).await?,
        Bench::Produce(p) => produce::produce(url, out, p).await?,
        Bench::Converge(p) => converge::converge(url, out, p).await?,
        Bench::Adopt(p) => adopt::adopt(url, out, p).await?,
        Bench::Store(p) => store::store(url, out, p).await?,
        #[cfg(feature = "kafka")]
        Bench::Compaction(a) => kafka::compaction(url, out, a, g.topic()?).await?,
        #[cfg(feature = "kafka")]
        Bench::Kafka(a) => kafka::kafka(url, out, a, g.topic()?).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench ...` with its flags validated into typed configurations (ripgrep's low-args to
/// high-args): defaults that depend on the machine resolved, fractions parsed, every check done.
enum Bench {
    Replay(replay::ReplayPlan),
    BatchSweep(sweep::SweepPlan),
    Cutover(cutover::CutoverPlan),
    Isolation(isolation::IsolationPlan),
    TimeTravel(time_travel::TimeTravelPlan),
    Produce(produce::ProducePlan),
    Converge(converge::ConvergePlan),
    Adopt(adopt::AdoptPlan),
    Store(store::StorePlan),
    #[cfg(feature = "kafka")]
    Compaction(kafka::CompactionArgs),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaArgs),
}

impl Bench {
    /// Validates the flags of one benchmark and of its log; nothing is touched yet.
    fn validate(which: Which) -> Result<(LogArgs, Bench)> {
        let (log, bench) = match which {
            Which::Replay(a) => (a.log.clone(), Bench::Replay(a.validate()?)),
            Which::BatchSweep(a) => (a.log.clone(), Bench::BatchSweep(a.validate()?)),
            Which::Cutover(a) => (a.log.clone(), Bench::Cutover(a.validate()?)),
            Which::Isolation(a) => (a.log.clone(), Bench::Isolation(a.validate()?)),
            Which::TimeTravel(a) => (a.log.clone(), Bench::TimeTravel(a.validate())),
            Which::Produce(a) => (a.log.clone(), Bench::Produce(a.validate()?)),
            Which::Converge(a) => (a.log.clone(), Bench::Converge(a.validate()?)),
            Which::Adopt(a) => (a.log.clone(), Bench::Adopt(a.validate()?)),
            Which::Store(a) => (a.log.clone(), Bench::Store(a.validate()?)),
            #[cfg(feature = "kafka")]
            Which::Compaction(a) => (a.log(), Bench::Compaction(a)),
            Which::Tiers(_) | Which::Plot(_) => unreachable!("bench tiers and bench plot run before any log is seeded"),
            #[cfg(feature = "kafka")]
            Which::Kafka(a) => {
                a.validate()?;
                (a.log(), Bench::Kafka(a))
            }
        };
        log.validate()?;
        Ok((log, bench))
    }
}

/// `--workers`, or the cores.
pub(super) fn workers(flag: Option<usize>) -> Result<usize> {
    match flag {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(2, |n| n.get())),
    }
}

/// `csv: A  plot: B` for the files a benchmark wrote under --out.
pub(super) fn print_files(out: &Path, csv: &str, plot: &str) {
    println!("csv: {}  plot: {}", out.join(csv).display(), out.join(plot).display());
}
