//! `bench isolation` (experiment 3): the live reads' latency beside replays at each kind of
//! backpressure, and the printing of its figures.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{workers, LogArgs};
use crate::cli::parse_duration;
use crate::cli::project::parse_fraction;

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

/// `bench isolation`, validated.
pub(super) struct IsolationPlan {
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

impl IsolationArgs {
    pub(super) fn validate(self) -> Result<IsolationPlan> {
        let (live_cpus, replay_cpus) = match self.cpu_split {
            true => bench::split_cores().map_err(anyhow::Error::msg)?,
            false => (0, 0),
        };
        let curve = self.curve.iter().map(|f| parse_fraction("--curve", f)).collect::<Result<Vec<f64>>>()?;
        if curve.iter().any(|f| *f > 1.0) {
            bail!("--curve fractions are of the full-speed rate: at most 100%");
        }
        let max_live_p99_increase = parse_fraction("--max-live-p99-increase", &self.max_live_p99_increase)?;
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

pub(super) async fn isolation(url: String, out: &Path, p: IsolationPlan) -> Result<()> {
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
    let mut svg = vec!["isolation.svg", "isolation_adaptive_blocks.svg", "isolation_presence_blocks.svg"];
    if !r.curve.is_empty() {
        csv.push("isolation_curve.csv");
        svg.push("isolation_curve.svg");
    }
    println!("csv: {}  plots: {}", files(&csv).join(" "), files(&svg).join(" "));
}
