//! Adaptive backpressure: an AIMD controller that sets the replay's rate limit from the live read
//! path's latency, so a rebuild takes what the live API can spare and no more.
//!
//! The live p99 comes from the API's own request histogram (`GET /metrics`, differenced
//! between scrapes: the latency the API measured for the live reads it served in the window),
//! or from the controller's own probes ([`LatencySource`]). The metrics are the better signal:
//! they see the real traffic, measured inside the API's process, while a probe sent from the
//! (niced) replay process also measures its own scheduling delays.
//!
//! The controller first measures the live p99 with the replay not yet started (the baseline).
//! Then, every [`Timing::interval`], it pools the reads of the last [`Timing::decide_over`]
//! windows and compares their p99 with `baseline * (1 + max_live_p99_increase)`: above it, the
//! rate halves (multiplicative decrease, down to a floor); at or below it, the rate grows by a
//! fixed step (additive increase, up to a ceiling). The decision itself is [`Aimd::step`], a
//! pure function of the pooled reads, so it is tested without a clock or a server.
//!
//! The baseline does not stay the one measured at the start: the same machine's live p99, with
//! no replay at all, drifts by more than 10% over minutes (measured in `bench isolation`). A
//! baseline that drifted below the truth pins the rate at the floor; one that drifted above it
//! lets the replay hurt the reads. So every [`Timing::rebase_every`] the controller pauses the
//! replay (rate 0), lets the work in flight settle, and measures the live p99 again; the
//! baseline is the p99 of the last [`BASELINE_SETS`] such measurements pooled ([`Baselines`]).
//! The pauses cost the replay about an eighth of its time.
//!
//! One module per part: `config` (what a replay asks for, the clock), `buckets` (the API's
//! latency histogram out of its Prometheus text), `probe` (the two latency sources and the
//! p99), `aimd` (the decision), `baseline` (the pooled no-replay measurements) and
//! `controller` (the loop that runs them against the replay's limiter).

mod aimd;
mod baseline;
mod buckets;
mod config;
mod controller;
mod probe;

pub use aimd::{Aimd, AimdParams, Decision, DEFAULT_CEILING, FLOOR};
pub use baseline::{measure_baseline, Baselines, BASELINE, BASELINE_SETS};
pub use buckets::{Buckets, LIVE_LATENCY_METRIC};
pub use config::{AdaptiveConfig, LatencySource, Timing, INTERVAL};
pub use controller::AdaptiveReport;
pub(crate) use controller::Controller;
pub use probe::{p99, HttpProbe, MetricsProbe, Probe, PROBES_PER_SECOND};
