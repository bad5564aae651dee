//! The figures of `bench isolation`: per phase, per point of the rate curve, and the whole run's.

use serde::Serialize;

/// One phase: the live latency and what the replay beside it achieved.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationPhase {
    pub phase: String,
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The replay's limit in this phase (none: full speed or no replay).
    pub rate_limit: Option<f64>,
    /// Events the replay read and folded during the phase.
    pub replay_events: u64,
    /// `replay_events` over the time the replay ran.
    pub replay_events_per_s: f64,
    /// The replay finished its bulk phase before the phase ended (the log is too small for the
    /// phase: part of the phase ran without a replay).
    pub replay_finished_early: bool,
    /// The replay process's CPU priority (also its PostgreSQL backends'), as
    /// [`CpuPriority::describe`](projector::CpuPriority::describe) puts it; none: no replay.
    pub replay_priority: Option<String>,
}

/// One point of the rate curve: a replay at a fixed fraction of its full-speed rate, paused
/// and running in alternating blocks, as the adaptive replay is.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub fraction_of_full_speed: f64,
    pub rate_limit: f64,
    /// Events over the time the replay was not paused.
    pub replay_events_per_s: f64,
    /// The p99 of the running blocks' reads over that of the paused blocks' reads.
    pub p99_ratio: f64,
    pub p99_ratio_ci90: [f64; 2],
    pub p50_ratio: f64,
}

/// Figures of `bench isolation`.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationBench {
    pub aggregates: i64,
    pub log_events: i64,
    pub phase_seconds: f64,
    pub request_rate: f64,
    pub concurrency: usize,
    pub workers: usize,
    pub baseline_p50_ms: f64,
    pub baseline_p99_ms: f64,
    pub p99_ratio_full_speed: f64,
    pub p99_ratio_fixed_limit: f64,
    /// The p99 of the requests of the blocks the adaptive replay ran over the p99 of those of
    /// the blocks it was paused in.
    pub p99_ratio_adaptive: f64,
    /// The same ratio per round (a paused block and the running block after it).
    pub p99_ratio_adaptive_rounds: Vec<f64>,
    /// A 90% bootstrap interval of `p99_ratio_adaptive`: its rounds drawn with replacement.
    pub p99_ratio_adaptive_ci90: [f64; 2],
    /// The p99 of the adaptive phase's paused blocks against the first no-replay phase.
    pub p99_ratio_paused_vs_no_replay: f64,
    /// A last no-replay phase, after every replay has exited, against the first: how far the
    /// machine drifted over the run.
    pub p99_ratio_no_replay_after: f64,
    /// The presence check: the p99 of the blocks with a stopped replay process over that of the
    /// blocks with none (interleaved, as many of each as adaptive rounds).
    pub p99_ratio_stopped_vs_absent: f64,
    /// The same ratio per round (a stopped block and the absent block after it).
    pub p99_ratio_presence_rounds: Vec<f64>,
    /// A 90% bootstrap interval of `p99_ratio_stopped_vs_absent`, as the adaptive one's.
    pub p99_ratio_stopped_vs_absent_ci90: [f64; 2],
    pub p50_ratio_stopped_vs_absent: f64,
    pub p50_ratio_full_speed: f64,
    pub p50_ratio_fixed_limit: f64,
    pub p50_ratio_adaptive: f64,
    pub replay_events_per_s_full_speed: f64,
    pub replay_events_per_s_fixed_limit: f64,
    pub replay_events_per_s_adaptive: f64,
    pub fixed_rate_limit: f64,
    pub max_live_p99_increase: f64,
    pub adaptive_rounds: usize,
    pub adaptive_block_seconds: f64,
    /// The adaptive controller's baseline, threshold and rates.
    pub adaptive: Option<projector::AdaptiveReport>,
    pub failed_reads: u64,
    /// The rate curve (`--curve`), in the order measured.
    pub curve: Vec<CurvePoint>,
    /// The cores the live path was kept on (`--cpu-split`); none: not pinned.
    pub live_cores: Option<String>,
    pub phases: Vec<IsolationPhase>,
    /// Caveats of this run (a replay that finished before its phase ended).
    pub notes: Vec<String>,
}
