//! `reproject bench ...`: benchmarks as commands. Each prints its figures, writes CSV and an
//! SVG plot under --out, and ends with one JSON line.

use std::path::PathBuf;
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
    Replay {
        #[command(flatten)]
        log: LogArgs,
        /// Replay workers (default: the cores).
        #[arg(long)]
        workers: Option<usize>,
        /// The naive projector runs on at most this many events...
        #[arg(long, default_value_t = 20_000)]
        naive_events: i64,
        /// ...and for at most this long.
        #[arg(long, value_parser = parse_duration, default_value = "15s")]
        naive_time: Duration,
    },
    /// Experiment 1: tail-path throughput vs. write batch size (1, 100, 1k, 10k, 50k).
    BatchSweep {
        #[command(flatten)]
        log: LogArgs,
        /// Batch sizes to try.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000,50000")]
        batches: Vec<usize>,
        /// Each point stops after this many events...
        #[arg(long, default_value_t = 1_000_000)]
        max_events: u64,
        /// ...or this long.
        #[arg(long, value_parser = parse_duration, default_value = "20s")]
        max_time: Duration,
        /// Commit without waiting for the WAL flush (the embedded cluster's default is to wait
        /// in this benchmark, which is what a durable projector pays).
        #[arg(long)]
        async_commit: bool,
    },
    /// Experiment 2: load on the API, v3 live and active, v4 replayed beside it and caught up,
    /// cutover under load; failed reads, switch latency, and the frozen-position diff.
    Cutover {
        #[command(flatten)]
        log: LogArgs,
        /// Live ingest during the run (events/s).
        #[arg(long, default_value_t = 500.0)]
        ingest: f64,
        /// Concurrent readers.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// How long the load runs (the cutover happens once v4 is ready, after a third of it).
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        duration: Duration,
        /// Replay workers (default: the cores).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Experiment 3: live read p50/p99 with no replay, then beside a full-speed replay, a replay
    /// at a fixed rate limit, and an adaptive one (AIMD on the live p99); replay events/s of each.
    /// Last, a presence check: blocks with a stopped replay process against blocks with none.
    Isolation {
        #[command(flatten)]
        log: LogArgs,
        /// Length of each phase but the adaptive one.
        #[arg(long, value_parser = parse_duration, default_value = "15s")]
        duration: Duration,
        /// Length of each block of the adaptive phase (whole seconds, at least 2s).
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        block: Duration,
        /// Live reads per second, the same in every phase.
        #[arg(long, default_value_t = 500.0)]
        request_rate: f64,
        /// Concurrent readers.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// The fixed-limit phase's rate (events/s); default: a quarter of the full-speed rate.
        #[arg(long, value_name = "EVENTS_PER_S")]
        fixed_rate_limit: Option<f64>,
        /// The adaptive phase's allowance over the baseline p99 (`10%` or `0.1`).
        #[arg(long, default_value = "10%", value_name = "FRACTION")]
        max_live_p99_increase: String,
        /// Replay workers (default: the cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Pairs of (paused, running) blocks of the adaptive phase: one adaptive replay, paused
        /// and resumed; its figure is the p99 of the running blocks' requests over that of the
        /// paused blocks' requests. The presence check has as many pairs of (stopped, absent).
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
        /// CPU priority of the protected replays (fixed limit, adaptive, presence check) and of
        /// their PostgreSQL backends: `nice` (nice 19) or `idle` (SCHED_IDLE and nice 19: a core
        /// only when nothing else wants it). Full speed always runs at normal priority.
        #[arg(long, value_enum, default_value_t = ProtectedPriority::Nice)]
        replay_priority: ProtectedPriority,
        /// Split the cores: the live path (this process, with the API and the load, and the
        /// embedded PostgreSQL server) on the first half, the protected replays and their
        /// backends on the rest (on 2 cores: core 0 and core 1). Full speed may use every core.
        /// The server is put back on every core at the end; if the bench is killed, it stays
        /// pinned until restarted (`reproject db stop`, then any command).
        #[arg(long)]
        cpu_split: bool,
        /// After the other phases, the rate curve: a replay at each of these fixed fractions of
        /// the full-speed rate (`1%,5%,25%`), measured paused and running like the adaptive
        /// replay, each with a 90% bootstrap interval: what each rate costs the live p99.
        #[arg(long, value_delimiter = ',', value_name = "FRACTIONS")]
        curve: Vec<String>,
        /// Pairs of (paused, running) blocks of each point of the curve.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
        curve_rounds: u32,
    },
    /// as-of latency over HTTP for aggregates with about 1, 100, 1k and 10k events.
    TimeTravel {
        #[command(flatten)]
        log: LogArgs,
        /// Requests per history-length class (and per pass: without, then with snapshots).
        #[arg(long, default_value_t = 300)]
        requests: u64,
        /// Snapshot interval of the second pass (versions).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..))]
        snapshot_every: i32,
    },
    /// The producer's ceiling: unpaced, alone for --duration, then for --duration beside
    /// full-speed replays of v4 on the same log; conflicts and retries per second.
    Produce {
        #[command(flatten)]
        log: LogArgs,
        /// Writer connections (each owns a range of the aggregates).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        writers: u32,
        /// Most commands per transaction.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
        /// How long each phase produces.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        duration: Duration,
        /// Replay workers of the second phase (default: the cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Only the producer alone (no phase beside a replay).
        #[arg(long)]
        no_replay: bool,
    },
    /// Experiment 4: replay from 0 while writers append at each --ingest rate; lag over time,
    /// convergence time, margin, and the crossover where it no longer converges.
    Converge {
        #[command(flatten)]
        log: LogArgs,
        /// Ingest rates (events/s), one run each.
        #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000")]
        ingest: Vec<f64>,
        /// The run whose figures head the JSON line (the first run if no run has this rate).
        #[arg(long, default_value_t = 20_000.0)]
        headline: f64,
        /// Past the listed rates, double the ingest until a run does not converge (the
        /// crossover) or the producer falls short of its target (its ceiling).
        #[arg(long)]
        beyond: bool,
        /// Producer writer connections.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        writers: u32,
        /// Cap the replay's catch-up (events/s) so the crossover falls within the writers' reach.
        #[arg(long)]
        replay_rate_limit: Option<f64>,
        /// Replay workers (default: the cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Give up converging after this long.
        #[arg(long, value_parser = parse_duration, default_value = "90s")]
        max_time: Duration,
        /// After converging, watch the lag this long.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        settle: Duration,
    },
}

/// Seeds the benchmark log unless an identical one is there.
async fn ensure_log(url: &str, log: &LogArgs) -> Result<()> {
    if log.aggregates > log.events || log.events == 0 {
        bail!("--aggregates must be positive and at most --events");
    }
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

pub async fn run(g: &Global, a: BenchArgs) -> Result<ExitCode> {
    let url = database_url(g)?;
    match a.which {
        Which::Replay { log, workers, naive_events, naive_time } => {
            ensure_log(&url, &log).await?;
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let config = bench::ReplayBenchConfig {
                database_url: url,
                workers,
                naive_events,
                naive_time,
                out_dir: a.out.clone(),
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
                r.workers, r.replay_events_per_s, r.replay_mb_per_s, r.replay_seconds, r.replay_bulk_seconds, r.replay_barrier_seconds
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
                 at most {} at once",
                r.largest_partition_events, r.largest_partition_aggregates, r.held_total, r.held_peak
            );
            println!("csv: {}  plot: {}", a.out.join("replay.csv").display(), a.out.join("replay.svg").display());
            println!("{}", serde_json::to_string(&r)?);
        }
        Which::BatchSweep { log, batches, max_events, max_time, async_commit } => {
            if batches.is_empty() || batches.contains(&0) {
                bail!("--batches must be positive sizes");
            }
            ensure_log(&url, &log).await?;
            let config = bench::SweepConfig {
                database_url: url,
                batches,
                max_events,
                max_time,
                synchronous_commit: !async_commit,
                out_dir: a.out.clone(),
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
                    p.batch,
                    p.events_per_s,
                    p.commits,
                    p.rebuild_seconds,
                    p.wal_bytes_per_event,
                    p.wal_syncs,
                    p.wal_sync_ms
                );
            }
            println!(
                "knee: batch {} (smallest within 90% of the best, {:.0} events/s)",
                s.knee_batch, s.best_events_per_s
            );
            println!(
                "csv: {}  plot: {}",
                a.out.join("batch_sweep.csv").display(),
                a.out.join("batch_sweep.svg").display()
            );
            println!("{}", serde_json::to_string(&s)?);
        }
        Which::Cutover { log, ingest, concurrency, duration, workers } => {
            ensure_log(&url, &log).await?;
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let config = bench::CutoverBenchConfig {
                database_url: url,
                ingest,
                concurrency,
                duration,
                workers,
                out_dir: a.out.clone(),
                reuse_active_v3: false,
            };
            let c = bench::cutover_bench(&config).await?;
            println!("scale: {} aggregates; {} readers for {duration:?}; ingest {ingest}/s", c.aggregates, concurrency);
            println!(
                "reads: {} ({} not found), failed: {}, version regressions: {}, served: {:?}",
                c.requests, c.not_found, c.failed_reads, c.version_regressions, c.versions_served
            );
            println!("latency: p50 {:.2} ms, p99 {:.2} ms", c.p50_ms, c.p99_ms);
            println!(
                "switch: {:.2} ms in the transaction, {:.2} ms round trip, after {} refusals while v4 caught up",
                c.switch_ms, c.switch_request_ms, c.refused_attempts
            );
            println!("frozen at X = {}: v4 vs v3 differ on {} aggregates, {} not explained by the v3 fee bug; v4 vs expected: {} diffs", c.frozen_position, c.diffs_total, c.diffs, c.diffs_v4_vs_expected);
            println!(
                "csv: {}  plot: {}",
                a.out.join("cutover_load.csv").display(),
                a.out.join("cutover.svg").display()
            );
            println!("{}", serde_json::to_string(&c)?);
        }
        Which::Isolation {
            log,
            duration,
            block,
            request_rate,
            concurrency,
            fixed_rate_limit,
            max_live_p99_increase,
            workers,
            rounds,
            replay_priority,
            cpu_split,
            curve,
            curve_rounds,
        } => {
            let (live_cpus, replay_cpus) = match cpu_split {
                true => bench::split_cores().map_err(anyhow::Error::msg)?,
                false => (0, 0),
            };
            let curve =
                curve.iter().map(|f| super::project::parse_fraction("--curve", f)).collect::<Result<Vec<f64>>>()?;
            if curve.iter().any(|f| *f > 1.0) {
                bail!("--curve fractions are of the full-speed rate: at most 100%");
            }
            let max_live_p99_increase =
                super::project::parse_fraction("--max-live-p99-increase", &max_live_p99_increase)?;
            if !request_rate.is_finite() || request_rate <= 0.0 {
                bail!("--request-rate must be a positive number of requests per second");
            }
            if concurrency == 0 {
                bail!("--concurrency must be at least 1");
            }
            if fixed_rate_limit.is_some_and(|r| !r.is_finite() || r <= 0.0) {
                bail!("--fixed-rate-limit must be a positive number of events per second");
            }
            if duration < Duration::from_secs(2) {
                bail!("--duration must be at least 2s (each phase needs several controller windows)");
            }
            if block < Duration::from_secs(2) || block.subsec_nanos() != 0 {
                bail!("--block must be a whole number of seconds, at least 2s (its first second is not counted)");
            }
            if workers == Some(0) {
                bail!("--workers must be at least 1");
            }
            ensure_log(&url, &log).await?;
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let config = bench::IsolationConfig {
                database_url: url,
                workers,
                duration,
                request_rate,
                concurrency,
                fixed_rate_limit,
                max_live_p99_increase,
                rounds: rounds as usize,
                block,
                protected_priority: projector::CpuPriority { cpus: replay_cpus, ..replay_priority.priority() },
                live_cpus,
                curve,
                curve_rounds: curve_rounds as usize,
                out_dir: a.out.clone(),
            };
            let r = bench::isolation_bench(&config).await?;
            println!(
                "scale: {} events, {} aggregates; {request_rate}/s reads by {concurrency} readers; {duration:?} per phase; {} replay workers",
                r.log_events, r.aggregates, r.workers
            );
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
            let files = |names: &[&str]| names.iter().map(|n| a.out.join(n).display().to_string()).collect::<Vec<_>>();
            let mut csv = vec!["isolation.csv", "isolation_adaptive_blocks.csv", "isolation_presence_blocks.csv"];
            let mut svg = vec![
                "isolation.svg",
                "isolation_replay.svg",
                "isolation_adaptive_blocks.svg",
                "isolation_presence_blocks.svg",
            ];
            if !r.curve.is_empty() {
                csv.push("isolation_curve.csv");
                svg.push("isolation_curve.svg");
            }
            println!("csv: {}  plots: {}", files(&csv).join(" "), files(&svg).join(" "));
            println!("{}", serde_json::to_string(&r)?);
        }
        Which::TimeTravel { log, requests, snapshot_every } => {
            ensure_log(&url, &log).await?;
            let t = bench::time_travel_bench(&url, requests, snapshot_every, &a.out).await?;
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
            println!(
                "csv: {}  plot: {}",
                a.out.join("time_travel.csv").display(),
                a.out.join("time_travel.svg").display()
            );
            println!("{}", serde_json::to_string(&t)?);
        }
        Which::Produce { log, writers, batch, duration, workers, no_replay } => {
            ensure_log(&url, &log).await?;
            let config = bench::ProduceBenchConfig {
                database_url: url,
                produce: lab::ProduceConfig { writers, batch, ..lab::ProduceConfig::new(0.0, None, 3) },
                duration,
                replay_workers: workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                skip_replay: no_replay,
                out_dir: a.out.clone(),
            };
            let p = bench::produce_bench(&config).await?;
            println!(
                "scale: {} events, {} aggregates in the log at start; {} writers, batches of up to {} commands, {:?} per phase",
                p.log_events_at_start, p.aggregates_at_start, p.writers, p.batch, duration
            );
            for phase in &p.phases {
                println!("{}: {}", phase.phase, phase.report.render());
                if let Some(r) = phase.replay_events_per_s {
                    println!("  beside {} full-speed replays of v4 (bulk {r:.0} events/s on average)", phase.replays);
                }
            }
            println!("slowest whole second alone: {:.0} events/s", p.min_second_events_per_s);
            println!("csv: {}  plot: {}", a.out.join("produce.csv").display(), a.out.join("produce.svg").display());
            let mut json = serde_json::to_value(&p)?;
            if let Some(phases) = json.get_mut("phases").and_then(|r| r.as_array_mut()) {
                for ph in phases {
                    ph.get_mut("report").and_then(|r| r.as_object_mut()).map(|o| o.remove("per_second"));
                }
            }
            println!("{json}");
        }
        Which::Converge { log, ingest, headline, beyond, writers, replay_rate_limit, workers, max_time, settle } => {
            if ingest.is_empty() || ingest.iter().any(|r| !r.is_finite() || *r <= 0.0) {
                bail!("--ingest must be positive rates");
            }
            ensure_log(&url, &log).await?;
            let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let config = bench::ConvergeConfig {
                database_url: url,
                ingest,
                workers,
                replay_rate_limit,
                max_time,
                settle,
                headline_ingest: headline,
                beyond,
                writers,
                out_dir: a.out.clone(),
            };
            let c = bench::converge(&config).await?;
            println!("scale: {} events in the log at start; replay cap {:?}", c.log_events, c.replay_rate_limit);
            println!(
                "{:>12} {:>12} {:>10} {:>14} {:>12} {:>12} {:>16}",
                "target/s", "ingest/s", "converged", "convergence_s", "replay/s", "margin/s", "max_lag_after"
            );
            for r in &c.runs {
                println!(
                    "{:>12.0} {:>12.0} {:>10} {:>14} {:>12.0} {:>12.0} {:>16}",
                    r.target_ingest_events_per_s,
                    r.ingest_events_per_s,
                    r.converged,
                    r.convergence_s.map_or("-".into(), |s| format!("{s:.1}")),
                    r.replay_events_per_s,
                    r.margin_events_per_s,
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
            println!("csv: {}  plot: {}", a.out.join("converge.csv").display(), a.out.join("converge.svg").display());
            let mut json = serde_json::to_value(&c)?;
            if let Some(runs) = json.get_mut("runs").and_then(|r| r.as_array_mut()) {
                for r in runs {
                    r.as_object_mut().map(|o| o.remove("samples"));
                }
            }
            println!("{json}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
