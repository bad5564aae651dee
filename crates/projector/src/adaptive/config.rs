//! What a replay asks of its adaptive controller ([`AdaptiveConfig`], [`LatencySource`]) and the
//! controller's clock ([`Timing`]).

use std::time::Duration;

/// How often the controller decides.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Adaptive backpressure of a replay: the live API to watch and how much slower it may get.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConfig {
    /// Base URL of the live read API (loopback), probed with `GET {api_url}/aggregate/{id}`.
    pub api_url: String,
    /// How much the live p99 may rise over its baseline: 0.10 is 10%.
    pub max_live_p99_increase: f64,
    /// Probes cycle through aggregate ids `1..=probe_aggregates`.
    pub probe_aggregates: u64,
    /// Where the live p99 comes from.
    pub source: LatencySource,
}

/// Where the adaptive controller reads the live p99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencySource {
    /// The API's request-latency histogram for `GET /aggregate/{id}` (its live traffic).
    #[default]
    Metrics,
    /// The controller's own sequential `GET /aggregate/{id}` requests, timed client-side.
    Probe,
}

impl LatencySource {
    /// The value of `--live-p99-from` that selects this source.
    pub fn as_str(self) -> &'static str {
        match self {
            LatencySource::Metrics => "metrics",
            LatencySource::Probe => "probe",
        }
    }
}

/// The controller's clock: how long a window is, how many windows a decision pools, and when
/// and for how long the replay pauses so that the baseline is measured again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// One window of reads; the controller decides once per window.
    pub interval: Duration,
    /// The reads of this many last windows make one decision (a window of ~250 reads has too
    /// noisy a p99 to tell 10% apart).
    pub decide_over: usize,
    /// Running time between two baseline pauses.
    pub rebase_every: Duration,
    /// Windows at the start of a pause that are left out: the work already let through is
    /// still running.
    pub settle_windows: u32,
    /// Windows of a pause whose reads are the new baseline measurement.
    pub measure_windows: u32,
}

impl Timing {
    /// 500 ms windows, decisions on the last 2 s, a 1.5 s pause (1 s measured) every 10 s.
    pub const DEFAULT: Timing = Timing {
        interval: INTERVAL,
        decide_over: 4,
        rebase_every: Duration::from_secs(10),
        settle_windows: 1,
        measure_windows: 2,
    };
}
