//! `reproject bench ...`: benchmarks as commands. Each prints its figures, writes CSV and an
//! SVG plot under --out, and ends with one JSON line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{database_url, parse_duration, Global};

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
    Replay(ReplayArgs),
    /// Experiment 1: tail-path throughput vs. write batch size (1, 100, 1k, 10k, 50k).
    BatchSweep(BatchSweepArgs),
    /// Experiment 2: load on the API, v3 live and active, v4 replayed beside it and caught up,
    /// cutover under load; failed reads, switch latency, and the frozen-position diff.
    Cutover(CutoverArgs),
    /// Experiment 3: live read p50/p99 with no replay, then beside a full-speed replay, a replay
    /// at a fixed rate limit, and an adaptive one (AIMD on the live p99); replay events/s of each.
    /// Last, a presence check: blocks with a stopped replay process against blocks with none.
    Isolation(IsolationArgs),
    /// as-of latency over HTTP for aggregates with about 1, 100, 1k and 10k events.
    TimeTravel(TimeTravelArgs),
    /// The producer's ceiling: unpaced, alone for --duration, then for --duration beside
    /// full-speed replays of v4 on the same log; conflicts and retries per second.
    Produce(ProduceArgs),
    /// Experiment 4: replay from 0 while writers append at each --ingest rate; lag over time,
    /// convergence time, margin, and the crossover where it no longer converges.
    Converge(ConvergeArgs),
    /// Experiment 7, compaction vs. completeness: one history in the event store, in a compacted
    /// topic of deltas and in a compacted topic of state-carrying events; diffs against the
    /// true state, time travel, log size before/after compaction. Uses --topic's cluster (two
    /// topics named after it) or a throwaway tansu broker; rebuilds the read side.
    Compaction(super::bench_kafka::CompactionArgs),
    /// The Kafka log: replay of v4 from a topic vs a raw consume of it (`replay_vs_consume`),
    /// then the live projector's lag on the topic while `produce` appends. Uses --topic or a
    /// throwaway tansu broker; rebuilds the read side.
    Kafka(super::bench_kafka::KafkaArgs),
    /// The replay across scale tiers: reads the JSON lines of `bench replay` runs (one file per
    /// tier), prints the table, plots events/s against the log's size, and extrapolates to 1B
    /// events. Touches no database.
    Tiers(super::bench_tiers::TiersArgs),
}

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

/// The flags of `bench isolation`.
#[derive(Debug, Args)]
pub struct IsolationArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Length of each phase but the adaptive one.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub duration: Duration,
    /// Length of each block of the adaptive phase (whole seconds, at least 2s).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub block: Duration,
    /// Live reads per second, the same in every phase.
    #[arg(long, default_value_t = 500.0)]
    pub request_rate: f64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The fixed-limit phase's rate (events/s); default: a quarter of the full-speed rate.
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub fixed_rate_limit: Option<f64>,
    /// The adaptive phase's allowance over the baseline p99 (`10%` or `0.1`).
    #[arg(long, default_value = "10%", value_name = "FRACTION")]
    pub max_live_p99_increase: String,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pairs of (paused, running) blocks of the adaptive phase: one adaptive replay, paused
    /// and resumed; its figure is the p99 of the running blocks' requests over that of the
    /// paused blocks' requests. The presence check has as many pairs of (stopped, absent).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// CPU priority of the protected replays (fixed limit, adaptive, presence check) and of
    /// their PostgreSQL backends: `nice` (nice 19) or `idle` (SCHED_IDLE and nice 19: a core
    /// only when nothing else wants it). Full speed always runs at normal priority.
    #[arg(long, value_enum, default_value_t = ProtectedPriority::Nice)]
    pub replay_priority: ProtectedPriority,
    /// Split the cores: the live path (this process, with the API and the load, and the
    /// embedded PostgreSQL server) on the first half, the protected replays and their
    /// backends on the rest (on 2 cores: core 0 and core 1). Full speed may use every core.
    /// The server is put back on every core at the end; if the bench is killed, it stays
    /// pinned until restarted (`reproject db stop`, then any command).
    #[arg(long)]
    pub cpu_split: bool,
    /// After the other phases, the rate curve: a replay at each of these fixed fractions of
    /// the full-speed rate (`1%,5%,25%`), measured paused and running like the adaptive
    /// replay, each with a 90% bootstrap interval: what each rate costs the live p99.
    #[arg(long, value_delimiter = ',', value_name = "FRACTIONS")]
    pub curve: Vec<String>,
    /// Pairs of (paused, running) blocks of each point of the curve.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub curve_rounds: u32,
}

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

/// The flags of `bench produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Writer connections (each owns a range of the aggregates).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub writers: u32,
    /// Most commands per transaction.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// How long each phase produces.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Replay workers of the second phase (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Only the producer alone (no phase beside a replay).
    #[arg(long)]
    pub no_replay: bool,
}

/// The flags of `bench converge`.
#[derive(Debug, Args)]
pub struct ConvergeArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Ingest rates (events/s), one run each.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000")]
    pub ingest: Vec<f64>,
    /// The run whose figures head the JSON line (the first run if no run has this rate).
    #[arg(long, default_value_t = 20_000.0)]
    pub headline: f64,
    /// Past the listed rates, double the ingest until a run does not converge (the
    /// crossover) or the producer falls short of its target (its ceiling).
    #[arg(long)]
    pub beyond: bool,
    /// Producer writer connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub writers: u32,
    /// Cap the replay's catch-up (events/s) so the crossover falls within the writers' reach.
    #[arg(long)]
    pub replay_rate_limit: Option<f64>,
    /// Run the replay's PostgreSQL backends at this niceness (0-19), so the producer's keep
    /// the cores they need and the rebuild takes what the writers leave: on a machine whose
    /// cores the replay fills, the producer then reaches a rate it cannot reach beside it.
    /// The replay is not capped. 0: the same priority as the producer.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub replay_nice: i32,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Give up converging after this long.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    pub max_time: Duration,
    /// After converging, watch the lag this long.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub settle: Duration,
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
    if let Which::Tiers(t) = a.which {
        super::bench_tiers::tiers(&a.out, t)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (log, bench) = Bench::validate(a.which)?;
    let url = database_url(g)?;
    ensure_log(&url, &log).await?;
    let out = a.out.as_path();
    match bench {
        Bench::Replay(p) => replay(url, out, p).await?,
        Bench::BatchSweep(p) => batch_sweep(url, out, p).await?,
        Bench::Cutover(p) => cutover(url, out, p).await?,
        Bench::Isolation(p) => isolation(url, out, p).await?,
        Bench::TimeTravel(p) => time_travel(&url, out, p).await?,
        Bench::Produce(p) => produce(url, out, p).await?,
        Bench::Converge(p) => converge(url, out, p).await?,
        Bench::Compaction(a) => super::bench_kafka::compaction(url, out, a, g.topic.clone()).await?,
        Bench::Kafka(a) => super::bench_kafka::kafka(url, out, a, g.topic.clone()).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench ...` with its flags validated into typed configurations (ripgrep's low-args to
/// high-args): defaults that depend on the machine resolved, fractions parsed, every check done.
enum Bench {
    Replay(ReplayPlan),
    BatchSweep(SweepPlan),
    Cutover(CutoverPlan),
    Isolation(IsolationPlan),
    TimeTravel(TimeTravelPlan),
    Produce(ProducePlan),
    Converge(ConvergePlan),
    Compaction(super::bench_kafka::CompactionArgs),
    Kafka(super::bench_kafka::KafkaArgs),
}

/// `bench replay`, validated.
struct ReplayPlan {
    workers: usize,
    naive_events: i64,
    naive_time: Duration,
    held_limit: Option<usize>,
}

/// `bench batch-sweep`, validated.
struct SweepPlan {
    batches: Vec<usize>,
    max_events: u64,
    max_time: Duration,
    synchronous_commit: bool,
}

/// `bench cutover`, validated.
struct CutoverPlan {
    ingest: f64,
    concurrency: usize,
    duration: Duration,
    workers: usize,
}

/// `bench isolation`, validated.
struct IsolationPlan {
    workers: usize,
    duration: Duration,
    block: Duration,
    request_rate: f64,
    concurrency: usize,
    fixed_rate_limit: Option<f64>,
    max_live_p99_increase: f64,
    rounds: usize,
    protected_priority: projector::CpuPriority,
    live_cpus: u64,
    curve: Vec<f64>,
    curve_rounds: usize,
}

/// `bench time-travel`, validated.
struct TimeTravelPlan {
    requests: u64,
    snapshot_every: i32,
}

/// `bench produce`, validated.
struct ProducePlan {
    writers: u32,
    batch: u32,
    duration: Duration,
    workers: usize,
    no_replay: bool,
}

/// `bench converge`, validated.
struct ConvergePlan {
    ingest: Vec<f64>,
    headline: f64,
    beyond: bool,
    writers: u32,
    replay_rate_limit: Option<f64>,
    replay_nice: i32,
    workers: usize,
    max_time: Duration,
    settle: Duration,
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
            Which::Compaction(a) => (a.log(), Bench::Compaction(a)),
            Which::Tiers(_) => unreachable!("bench tiers runs before any log is seeded"),
            Which::Kafka(a) => {
                a.validate()?;
                (a.log(), Bench::Kafka(a))
            }
        };
        log.validate()?;
        Ok((log, bench))
    }
}

impl ReplayArgs {
    fn validate(self) -> Result<ReplayPlan> {
        Ok(ReplayPlan {
            workers: workers(self.workers)?,
            naive_events: self.naive_events,
            naive_time: self.naive_time,
            held_limit: (self.held_limit > 0).then_some(self.held_limit),
        })
    }
}

impl BatchSweepArgs {
    fn validate(self) -> Result<SweepPlan> {
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

impl CutoverArgs {
    fn validate(self) -> Result<CutoverPlan> {
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

impl IsolationArgs {
    fn validate(self) -> Result<IsolationPlan> {
        let (live_cpus, replay_cpus) = match self.cpu_split {
            true => bench::split_cores().map_err(anyhow::Error::msg)?,
            false => (0, 0),
        };
        let curve =
            self.curve.iter().map(|f| super::project::parse_fraction("--curve", f)).collect::<Result<Vec<f64>>>()?;
        if curve.iter().any(|f| *f > 1.0) {
            bail!("--curve fractions are of the full-speed rate: at most 100%");
        }
        let max_live_p99_increase =
            super::project::parse_fraction("--max-live-p99-increase", &self.max_live_p99_increase)?;
        if !self.request_rate.is_finite() || self.request_rate <= 0.0 {
            bail!("--request-rate must be a positive number of requests per second");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.fixed_rate_limit.is_some_and(|r| !r.is_finite() || r <= 0.0) {
            bail!("--fixed-rate-limit must be a positive number of events per second");
        }
        if self.duration < Duration::from_secs(2) {
            bail!("--duration must be at least 2s (each phase needs several controller windows)");
        }
        if self.block < Duration::from_secs(2) || self.block.subsec_nanos() != 0 {
            bail!("--block must be a whole number of seconds, at least 2s (its first second is not counted)");
        }
        Ok(IsolationPlan {
            workers: workers(self.workers)?,
            duration: self.duration,
            block: self.block,
            request_rate: self.request_rate,
            concurrency: self.concurrency,
            fixed_rate_limit: self.fixed_rate_limit,
            max_live_p99_increase,
            rounds: self.rounds as usize,
            protected_priority: projector::CpuPriority { cpus: replay_cpus, ..self.replay_priority.priority() },
            live_cpus,
            curve,
            curve_rounds: self.curve_rounds as usize,
        })
    }
}

impl TimeTravelArgs {
    fn validate(self) -> TimeTravelPlan {
        TimeTravelPlan { requests: self.requests, snapshot_every: self.snapshot_every }
    }
}

impl ProduceArgs {
    fn validate(self) -> Result<ProducePlan> {
        Ok(ProducePlan {
            writers: self.writers,
            batch: self.batch,
            duration: self.duration,
            workers: workers(self.workers)?,
            no_replay: self.no_replay,
        })
    }
}

impl ConvergeArgs {
    fn validate(self) -> Result<ConvergePlan> {
        if self.ingest.is_empty() || self.ingest.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            bail!("--ingest must be positive rates");
        }
        if self.replay_rate_limit.is_some_and(|r| !r.is_finite() || r <= 0.0) {
            bail!("--replay-rate-limit must be a positive number of events per second");
        }
        Ok(ConvergePlan {
            ingest: self.ingest,
            headline: self.headline,
            beyond: self.beyond,
            writers: self.writers,
            replay_rate_limit: self.replay_rate_limit,
            replay_nice: self.replay_nice,
            workers: workers(self.workers)?,
            max_time: self.max_time,
            settle: self.settle,
        })
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

async fn replay(url: String, out: &Path, p: ReplayPlan) -> Result<()> {
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

async fn batch_sweep(url: String, out: &Path, p: SweepPlan) -> Result<()> {
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

async fn cutover(url: String, out: &Path, p: CutoverPlan) -> Result<()> {
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

async fn isolation(url: String, out: &Path, p: IsolationPlan) -> Result<()> {
    let config = bench::IsolationConfig {
        database_url: url,
        workers: p.workers,
        duration: p.duration,
        request_rate: p.request_rate,
        concurrency: p.concurrency,
        fixed_rate_limit: p.fixed_rate_limit,
        max_live_p99_increase: p.max_live_p99_increase,
        rounds: p.rounds,
        block: p.block,
        protected_priority: p.protected_priority,
        live_cpus: p.live_cpus,
        curve: p.curve,
        curve_rounds: p.curve_rounds,
        out_dir: out.to_owned(),
    };
    let r = bench::isolation_bench(&config).await?;
    println!(
        "scale: {} events, {} aggregates; {}/s reads by {} readers; {:?} per phase; {} replay workers",
        r.log_events, r.aggregates, config.request_rate, config.concurrency, config.duration, r.workers
    );
    print_isolation_phases(&r);
    print_isolation_ratios(&r, config.block);
    print_isolation_replays(&r);
    print_isolation_files(&r, out);
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// The phases of `bench isolation`, against the first no-replay phase.
fn print_isolation_phases(r: &bench::IsolationBench) {
    println!(
        "{:>15} {:>9} {:>9} {:>9} {:>9} {:>14} {:>14}",
        "phase", "p50_ms", "p99_ms", "p50_x", "p99_x", "limit/s", "replay ev/s"
    );
    for p in &r.phases {
        println!(
            "{:>15} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>14} {:>14.0}{}",
            p.phase,
            p.p50_ms,
            p.p99_ms,
            p.p50_ms / r.baseline_p50_ms,
            p.p99_ms / r.baseline_p99_ms,
            p.rate_limit.map_or("-".into(), |l| format!("{l:.0}")),
            p.replay_events_per_s,
            if p.replay_finished_early { "  (replay finished early)" } else { "" }
        );
    }
}

/// The paused-and-running figures of `bench isolation`: the adaptive replay, the presence
/// check, the controller.
fn print_isolation_ratios(r: &bench::IsolationBench, block: Duration) {
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    println!(
        "adaptive p99, its {} running blocks against its {} paused blocks ({:?} each): {:.2} \
         (90% bootstrap interval {:.2} to {:.2}); per round: {}; \
         the paused blocks against the first no-replay phase: {:.2}; the last no-replay phase against the first: {:.2}",
        r.adaptive_rounds,
        r.adaptive_rounds,
        block,
        r.p99_ratio_adaptive,
        r.p99_ratio_adaptive_ci90[0],
        r.p99_ratio_adaptive_ci90[1],
        list(&r.p99_ratio_adaptive_rounds),
        r.p99_ratio_paused_vs_no_replay,
        r.p99_ratio_no_replay_after
    );
    println!(
        "presence: a stopped replay process against none, {} blocks of each: p99 {:.2} \
         (90% bootstrap interval {:.2} to {:.2}), p50 {:.2}; per round: {}",
        r.adaptive_rounds,
        r.p99_ratio_stopped_vs_absent,
        r.p99_ratio_stopped_vs_absent_ci90[0],
        r.p99_ratio_stopped_vs_absent_ci90[1],
        r.p50_ratio_stopped_vs_absent,
        list(&r.p99_ratio_presence_rounds)
    );
    if let Some(ad) = &r.adaptive {
        println!(
            "adaptive controller: baseline p99 {:.2} ms (threshold {:.2} ms), {:.2} ms after {} pauses ({:.1} s); \
             mean limit {:.0}/s, final {:.0}/s, {} decreases, {} increases in {} windows, {} skipped",
            ad.baseline_p99_ms,
            ad.threshold_ms,
            ad.last_baseline_p99_ms,
            ad.rebases,
            ad.paused_seconds,
            ad.mean_rate_events_per_s,
            ad.final_rate_events_per_s,
            ad.decreases,
            ad.increases,
            ad.windows,
            ad.skipped_windows
        );
    }
}

/// How the replays of `bench isolation` ran, the rate curve, and the notes.
fn print_isolation_replays(r: &bench::IsolationBench) {
    let priorities: Vec<String> = r
        .phases
        .iter()
        .filter_map(|p| p.replay_priority.as_ref().map(|priority| format!("{} ({priority})", p.phase)))
        .collect();
    println!(
        "replay: a child process (projector --mode replay); CPU priority, with its postgres backends: {}",
        priorities.join(", ")
    );
    for p in &r.curve {
        println!(
            "curve: {:.1}% of full speed ({:.0} events/s kept): p99 {:.2} (90% bootstrap interval {:.2} to {:.2}), p50 {:.2}, running vs. paused",
            p.fraction_of_full_speed * 100.0,
            p.replay_events_per_s,
            p.p99_ratio,
            p.p99_ratio_ci90[0],
            p.p99_ratio_ci90[1],
            p.p50_ratio
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}

/// The files `bench isolation` wrote under --out.
fn print_isolation_files(r: &bench::IsolationBench, out: &Path) {
    let files = |names: &[&str]| names.iter().map(|n| out.join(n).display().to_string()).collect::<Vec<_>>();
    let mut csv = vec!["isolation.csv", "isolation_adaptive_blocks.csv", "isolation_presence_blocks.csv"];
    let mut svg =
        vec!["isolation.svg", "isolation_replay.svg", "isolation_adaptive_blocks.svg", "isolation_presence_blocks.svg"];
    if !r.curve.is_empty() {
        csv.push("isolation_curve.csv");
        svg.push("isolation_curve.svg");
    }
    println!("csv: {}  plots: {}", files(&csv).join(" "), files(&svg).join(" "));
}

async fn time_travel(url: &str, out: &Path, p: TimeTravelPlan) -> Result<()> {
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

async fn produce(url: String, out: &Path, p: ProducePlan) -> Result<()> {
    let config = bench::ProduceBenchConfig {
        database_url: url,
        produce: lab::ProduceConfig { writers: p.writers, batch: p.batch, ..lab::ProduceConfig::new(0.0, None, 3) },
        duration: p.duration,
        replay_workers: p.workers,
        skip_replay: p.no_replay,
        out_dir: out.to_owned(),
    };
    let r = bench::produce_bench(&config).await?;
    println!(
        "scale: {} events, {} aggregates in the log at start; {} writers, batches of up to {} commands, {:?} per phase",
        r.log_events_at_start, r.aggregates_at_start, r.writers, r.batch, p.duration
    );
    for phase in &r.phases {
        println!("{}: {}", phase.phase, phase.report.render());
        if let Some(rate) = phase.replay_events_per_s {
            println!("  beside {} full-speed replays of v4 (bulk {rate:.0} events/s on average)", phase.replays);
        }
    }
    println!("slowest whole second alone: {:.0} events/s", r.min_second_events_per_s);
    print_files(out, "produce.csv", "produce.svg");
    let mut json = serde_json::to_value(&r)?;
    if let Some(phases) = json.get_mut("phases").and_then(|r| r.as_array_mut()) {
        for ph in phases {
            ph.get_mut("report").and_then(|r| r.as_object_mut()).map(|o| o.remove("per_second"));
        }
    }
    println!("{json}");
    Ok(())
}

async fn converge(url: String, out: &Path, p: ConvergePlan) -> Result<()> {
    let config = bench::ConvergeConfig {
        database_url: url,
        ingest: p.ingest,
        workers: p.workers,
        replay_rate_limit: p.replay_rate_limit,
        max_time: p.max_time,
        settle: p.settle,
        headline_ingest: p.headline,
        beyond: p.beyond,
        writers: p.writers,
        replay_nice: p.replay_nice,
        out_dir: out.to_owned(),
    };
    let c = bench::converge(&config).await?;
    println!(
        "scale: {} events in the log at start; replay cap {:?}; replay backends at nice {}",
        c.log_events, c.replay_rate_limit, c.replay_nice
    );
    println!(
        "{:>12} {:>12} {:>10} {:>14} {:>12} {:>12} {:>12} {:>16}",
        "target/s", "ingest/s", "converged", "convergence_s", "replay/s", "margin/s", "catch_up/s", "max_lag_after"
    );
    for r in &c.runs {
        println!(
            "{:>12.0} {:>12.0} {:>10} {:>14} {:>12.0} {:>12.0} {:>12} {:>16}",
            r.target_ingest_events_per_s,
            r.ingest_events_per_s,
            r.converged,
            r.convergence_s.map_or("-".into(), |s| format!("{s:.1}")),
            r.replay_events_per_s,
            r.margin_events_per_s,
            r.catch_up_events_per_s.map_or("-".into(), |s| format!("{s:.0}")),
            r.max_lag_after_converged.map_or("-".into(), |l| l.to_string())
        );
    }
    match c.crossover_ingest_events_per_s {
        Some(x) => println!("crossover: no convergence from {x:.0} events/s of ingest"),
        None => println!("crossover: not reached (every ingest rate tried converged)"),
    }
    if let Some(x) = c.producer_ceiling_events_per_s {
        println!("producer ceiling: it reached {x:.0} events/s, short of its target");
    }
    println!(
        "headline ({:.0}/s of ingest): converged {}, margin {:.0} events/s = {:.1}x the ingest",
        c.headline_ingest_events_per_s, c.converged, c.margin_events_per_s, c.margin_over_ingest
    );
    print_files(out, "converge.csv", "converge.svg");
    let mut json = serde_json::to_value(&c)?;
    if let Some(runs) = json.get_mut("runs").and_then(|r| r.as_array_mut()) {
        for r in runs {
            r.as_object_mut().map(|o| o.remove("samples"));
        }
    }
    println!("{json}");
    Ok(())
}

/// The CPU priority of `bench isolation`'s protected replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtectedPriority {
    /// SCHED_IDLE and nice 19.
    Idle,
    /// Nice 19 only.
    Nice,
}

impl ProtectedPriority {
    fn priority(self) -> projector::CpuPriority {
        projector::CpuPriority { nice: 19, idle: self == ProtectedPriority::Idle, cpus: 0 }
    }
}
