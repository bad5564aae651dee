//! The configuration of `bench isolation`.

use std::path::PathBuf;
use std::time::Duration;

use projector::CpuPriority;

/// Configuration of `bench isolation`.
#[derive(Debug, Clone)]
pub struct IsolationConfig {
    pub database_url: String,
    /// Replay workers.
    pub workers: usize,
    /// Length of each phase but the adaptive one.
    pub duration: Duration,
    /// Pairs of (paused, running) blocks of the adaptive phase.
    pub rounds: usize,
    /// Length of each block of the adaptive phase.
    pub block: Duration,
    /// Live reads per second, fixed across phases.
    pub request_rate: f64,
    /// Concurrent readers.
    pub concurrency: usize,
    /// The fixed-limit phase's rate (events/s); default a quarter of the full-speed rate.
    pub fixed_rate_limit: Option<f64>,
    /// The adaptive phase's allowance over the baseline p99 (0.10 = 10%).
    pub max_live_p99_increase: f64,
    /// The CPU priority of the protected replays (fixed limit, adaptive, presence check, curve).
    pub protected_priority: CpuPriority,
    /// The cores of the live path (this process: the API and the load; the PostgreSQL server's
    /// processes), one bit per core; 0: not pinned. The protected replays' cores are in
    /// `protected_priority.cpus`.
    pub live_cpus: u64,
    /// The rate curve: fixed rates as fractions of the full-speed rate, each measured paused
    /// and running like the adaptive phase (none: no curve).
    pub curve: Vec<f64>,
    /// Pairs of (paused, running) blocks of each point of the curve.
    pub curve_rounds: usize,
    pub out_dir: PathBuf,
}
