//! The projectors: a live tailer and a partition-parallel replay, both folding through the same
//! version guard and differing only in where events come from and how results are batched.

/// The guide to writing a projection (`docs/PROJECTIONS.md`); its example is compiled and run
/// as a doc test of this crate.
#[doc = include_str!("../../../docs/PROJECTIONS.md")]
pub mod guide {}

pub mod adaptive;
mod error;
mod locks;
pub mod partition_fold;
pub mod priority;
mod ratelimit;
mod repair;
mod replay;
mod snapshot;
mod source;
pub mod spill;
mod tail;
mod verify;

pub use adaptive::{AdaptiveConfig, AdaptiveReport, LatencySource};
pub use error::{BadEvent, Error};
pub use locks::{bulk_lock_key, lock_version, lock_version_shared, take_over, PARTITION_LOCK, PARTITION_UNLOCK};
pub use priority::CpuPriority;
pub use ratelimit::RateLimiter;
pub use repair::{repair, RepairReport};
pub use replay::{current_rss_bytes, peak_rss_bytes, replay, reset_peak_rss, ReplayConfig, ReplayReport};
pub use snapshot::{build_snapshots, SnapshotConfig, SnapshotReport};
pub use source::{PgLog, Read, Source};
pub use tail::{
    run_live, run_tail_on, LiveConfig, LiveReport, StallWatch, StepOutcome, TailOptions, Tailer, DEFAULT_RETIRED_WINDOW,
};
pub use verify::{compare_with_fold, fold_log_at, verify_against_log, LogDiff, LogVerifyReport};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Metric names, in one place so dashboards and docs can rely on them.
pub mod metric {
    /// Counter: events applied (label `version`, `phase` = tail|bulk).
    pub const EVENTS_APPLIED: &str = "reproject_projector_events_applied_total";
    /// Counter: events read from the log, applied or not (label `version`, `phase`).
    pub const EVENTS_READ: &str = "reproject_projector_events_read_total";
    /// Counter: bytes read from the log (label `version`, `phase`).
    pub const BYTES_READ: &str = "reproject_projector_read_bytes_total";
    /// Histogram: events per committed tail batch (label `version`).
    pub const BATCH_EVENTS: &str = "reproject_projector_batch_events";
    /// Histogram: seconds to commit a batch or a bulk partition (label `version`, `phase`).
    pub const WRITE_SECONDS: &str = "reproject_projector_write_duration_seconds";
    /// Counter: bulk partitions finished (label `version`).
    pub const PARTITIONS_DONE: &str = "reproject_replay_partitions_done_total";
    /// Gauge: events held behind a version gap (label `version`).
    pub const HELD_EVENTS: &str = "reproject_projector_held_events";
    /// Gauge: the replay's current rate limit, set by the adaptive controller (label `version`).
    pub const RATE_LIMIT: &str = "reproject_replay_rate_limit_events_per_second";
    /// Counter: events dead-lettered (label `version`).
    pub const DEAD_LETTERS: &str = "reproject_projector_dead_letters_total";
    /// Gauge: seconds since the tail last had everything below the boundary applied; 0 while
    /// it keeps up (label `version`).
    pub const LAG_SECONDS: &str = "reproject_projector_lag_seconds";
    /// Gauge: the share of one log partition the bulk phase has read, 0..=1 (labels `version`,
    /// `partition`), against the partition's size estimated at the start of the bulk phase.
    pub const PARTITION_PROGRESS: &str = "reproject_replay_partition_progress_ratio";
    /// Gauge: the share of the bulk phase done, 0..=1 (label `version`); 1 from catch-up on.
    pub const BUILD_PROGRESS: &str = "reproject_build_progress_ratio";
    /// Gauge: seconds until the bulk phase ends at the rate measured so far (label `version`).
    pub const BUILD_ETA: &str = "reproject_build_eta_seconds";
    /// Gauge: the live p99 the adaptive controller measured in its last decision (label
    /// `version`).
    pub const LIVE_P99: &str = "reproject_replay_live_p99_seconds";
    /// Gauge: the p99 above which the adaptive controller halves the rate (label `version`).
    pub const LIVE_P99_THRESHOLD: &str = "reproject_replay_live_p99_threshold_seconds";
    /// Counter: events of a type the projection does not know, skipped (their version counted)
    /// (labels `version`, `type`, `phase`).
    pub const EVENTS_SKIPPED: &str = "reproject_projector_events_skipped_total";
}

/// Counts one event of a type `version`'s projection does not know (skipped).
pub(crate) fn count_skipped(version: &'static str, event_type: &str, phase: &'static str) {
    metrics::counter!(metric::EVENTS_SKIPPED, "version" => version, "type" => event_type.to_owned(), "phase" => phase)
        .increment(1);
}
