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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::ratelimit::RateLimiter;
use crate::{metric, Result};

/// How often the controller decides.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// How many baseline measurements (the first, then one per pause) pool into the baseline.
pub const BASELINE_SETS: usize = 3;
/// A baseline measurement with fewer reads than this is left out (the API was idle).
const MIN_BASELINE_READS: usize = 10;
/// How long the baseline is measured, before the replay starts.
pub const BASELINE: Duration = Duration::from_secs(3);
/// Probe requests per second (one in flight at a time).
pub const PROBES_PER_SECOND: f64 = 50.0;
/// The ceiling when the replay has no `rate_limit` of its own (events per second).
pub const DEFAULT_CEILING: f64 = 1_000_000.0;
/// The rate never falls below this (events per second): a replay that is slowed, not stopped.
pub const FLOOR: f64 = 1_000.0;
/// A probe that takes longer than this counts as one sample of this latency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The API's request-latency histogram (`api::telemetry::REQUEST_SECONDS`, a test in the api
/// crate keeps the two equal) and the route of the live point read.
pub const LIVE_LATENCY_METRIC: &str = "reproject_api_request_duration_seconds";
const LIVE_ROUTE: &str = "/aggregate/{id}";
/// At most this many samples stand for one window's histogram.
const MAX_WINDOW_SAMPLES: u64 = 20_000;

/// Cumulative counts of the live route's latency buckets: `(upper bound in seconds, count)`,
/// ascending, summed over the read path's answers (200 and 404).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, u64)>);

impl Buckets {
    /// Reads the live route's buckets out of a Prometheus text exposition.
    pub fn parse(exposition: &str) -> Buckets {
        let prefix = format!("{LIVE_LATENCY_METRIC}_bucket{{");
        let route = format!("route=\"{LIVE_ROUTE}\"");
        let mut sums: Vec<(f64, u64)> = Vec::new();
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else { continue };
            let Some((labels, value)) = rest.rsplit_once('}') else { continue };
            if !labels.contains(&route) || !(labels.contains("status=\"200\"") || labels.contains("status=\"404\"")) {
                continue;
            }
            let Some(le) = labels.split("le=\"").nth(1).and_then(|t| t.split('"').next()) else { continue };
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
            let Ok(count) = value.trim().parse::<f64>() else { continue };
            if bound.is_nan() {
                continue;
            }
            match sums.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, c)) => *c += count as u64,
                None => sums.push((bound, count as u64)),
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(sums)
    }

    /// The observations between `earlier` and `self` as latency samples: each bucket's new
    /// observations spread evenly over the bucket (as `histogram_quantile` interpolates), those
    /// past the last bound at that bound; scaled down to at most [`MAX_WINDOW_SAMPLES`].
    pub fn samples_since(&self, earlier: &Buckets) -> Vec<Duration> {
        let count_at = |b: &Buckets, bound: f64| b.0.iter().find(|(x, _)| *x == bound).map_or(0, |(_, c)| *c);
        let mut deltas = Vec::with_capacity(self.0.len());
        let mut below = (0.0, 0u64);
        for &(bound, cumulative) in &self.0 {
            let new = cumulative.saturating_sub(count_at(earlier, bound));
            deltas.push((below.0, bound, new.saturating_sub(below.1)));
            below = (if bound.is_finite() { bound } else { below.0 }, new);
        }
        let total: u64 = deltas.iter().map(|d| d.2).sum();
        let keep = |n: u64| if total > MAX_WINDOW_SAMPLES { (n * MAX_WINDOW_SAMPLES).div_ceil(total) } else { n };
        let mut samples = Vec::new();
        for (lo, hi, n) in deltas {
            let n = keep(n);
            for i in 0..n {
                let seconds = if hi.is_finite() { lo + (hi - lo) * (i + 1) as f64 / n as f64 } else { lo };
                samples.push(Duration::from_secs_f64(seconds));
            }
        }
        samples
    }
}

/// The HTTP client of both latency sources: a request slower than [`PROBE_TIMEOUT`] gives up.
fn probe_client() -> Result<reqwest::Client> {
    reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().map_err(|e| Error::Probe(format!("http client: {e}")))
}

/// Reads the live p99 from the API's `/metrics`: each window is the difference of two scrapes.
#[derive(Debug)]
pub struct MetricsProbe {
    http: reqwest::Client,
    url: String,
    last: Option<Buckets>,
}

impl MetricsProbe {
    /// A reader of the metrics of the API at `api_url`.
    pub fn new(api_url: &str) -> Result<MetricsProbe> {
        let http = probe_client()?;
        Ok(MetricsProbe { http, url: format!("{}/metrics", api_url.trim_end_matches('/')), last: None })
    }

    async fn scrape(&self) -> Option<Buckets> {
        let resp = self.http.get(&self.url).send().await.ok()?;
        if !resp.status().is_success() {
            debug!(status = %resp.status(), url = %self.url, "metrics scrape answered with an error");
            return None;
        }
        Some(Buckets::parse(&resp.text().await.ok()?))
    }
}

impl Probe for MetricsProbe {
    fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>> {
        Box::pin(async move {
            let start = match self.last.take() {
                Some(b) => Some(b),
                None => self.scrape().await,
            };
            tokio::time::sleep(window).await;
            let end = self.scrape().await;
            let samples = match (&start, &end) {
                (Some(a), Some(b)) => b.samples_since(a),
                _ => Vec::new(),
            };
            self.last = end;
            samples
        })
    }
}

/// A source of live read-path latency samples.
pub trait Probe: Send {
    /// Latency samples taken over about `window` (empty when nothing answered).
    fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>>;
}

/// Probes the live API over HTTP, measured client-side: sequential GETs of
/// `{api_url}/aggregate/{id}` at [`PROBES_PER_SECOND`], ids cycling through `1..=aggregates`.
#[derive(Debug)]
pub struct HttpProbe {
    http: reqwest::Client,
    base: String,
    aggregates: u64,
    next: u64,
}

impl HttpProbe {
    /// A probe of the API at `api_url`.
    pub fn new(api_url: &str, aggregates: u64) -> Result<HttpProbe> {
        let http = probe_client()?;
        Ok(HttpProbe { http, base: api_url.trim_end_matches('/').to_owned(), aggregates: aggregates.max(1), next: 0 })
    }

    async fn one(&mut self) -> Option<Duration> {
        self.next = self.next % self.aggregates + 1;
        let t0 = Instant::now();
        let outcome = self.http.get(format!("{}/aggregate/{}", self.base, self.next)).send().await;
        match outcome {
            // A 404 is an answer of the read path (an id past the read model) like any other.
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 404 => {
                let _ = resp.bytes().await;
                Some(t0.elapsed())
            }
            Ok(resp) => {
                debug!(status = %resp.status(), "probe answered with an error");
                Some(t0.elapsed())
            }
            // A timed-out read is the slowest sample there is; a refused one says nothing about
            // latency.
            Err(e) if e.is_timeout() => Some(t0.elapsed()),
            Err(e) => {
                debug!(error = %e, "probe failed");
                None
            }
        }
    }
}

impl Probe for HttpProbe {
    fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + window;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / PROBES_PER_SECOND));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut samples = Vec::new();
            loop {
                tick.tick().await;
                if tokio::time::Instant::now() >= deadline {
                    return samples;
                }
                samples.extend(self.one().await);
            }
        })
    }
}

/// The 99th percentile (nearest rank) of `samples`, if any.
pub fn p99(samples: &[Duration]) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((samples.len() as f64) * 0.99).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Tuning of the AIMD controller, in events per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AimdParams {
    /// How much the live p99 may rise over the baseline (0.10 = 10%).
    pub max_increase: f64,
    /// The rate never falls below this.
    pub floor: f64,
    /// The rate never rises above this.
    pub ceiling: f64,
    /// Additive increase per good window.
    pub step: f64,
    /// Multiplicative decrease per bad window (0.5 halves).
    pub decrease: f64,
    /// The rate right after the baseline.
    pub initial: f64,
}

impl AimdParams {
    /// The defaults for a ceiling: floor 1000 ev/s (or the ceiling), step 1% of the ceiling,
    /// halve on a bad window, start at 5% of the ceiling. The small step keeps the rate near
    /// the knee: at 5% a full-speed ceiling put the replay back into the damaging range within
    /// a second of each halving (measured in `bench isolation`).
    pub fn new(max_increase: f64, ceiling: f64) -> AimdParams {
        let floor = FLOOR.min(ceiling);
        AimdParams {
            max_increase,
            floor,
            ceiling,
            step: ceiling * 0.01,
            decrease: 0.5,
            initial: (ceiling * 0.05).max(floor),
        }
    }
}

/// What one window made the controller do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The window's p99 was over the threshold: the rate went down.
    Decrease { from: f64, to: f64, p99: Duration },
    /// The window was within the threshold: the rate went up.
    Increase { from: f64, to: f64, p99: Duration },
    /// No change: no samples, already at a bound, or the replay is not using its allowance.
    Hold,
}

/// The AIMD state: the baseline, the threshold derived from it, and the current rate.
#[derive(Debug, Clone)]
pub struct Aimd {
    params: AimdParams,
    baseline_p99: Duration,
    threshold: Duration,
    rate: f64,
}

impl Aimd {
    /// A controller at `params.initial` against `baseline_p99`.
    pub fn new(params: AimdParams, baseline_p99: Duration) -> Aimd {
        let threshold = baseline_p99.mul_f64(1.0 + params.max_increase);
        Aimd { params, baseline_p99, threshold, rate: params.initial.clamp(params.floor, params.ceiling) }
    }

    /// The rate the limiter should run at now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The live p99 measured before the replay started.
    pub fn baseline_p99(&self) -> Duration {
        self.baseline_p99
    }

    /// The p99 above which the rate goes down.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Takes a new baseline (measured with the replay paused); the rate stays.
    pub fn rebase(&mut self, baseline_p99: Duration) {
        self.baseline_p99 = baseline_p99;
        self.threshold = baseline_p99.mul_f64(1.0 + self.params.max_increase);
    }

    /// Decides on one window of latency samples. `observed` is the rate (events/s) the replay
    /// actually took in that window, if known: a decrease halves whichever is lower (the limit
    /// or the use), so it bites at once even when the limit was far above the use; and the rate
    /// is not raised while less than half of it is used (an idle allowance would otherwise climb
    /// to the ceiling and take several halvings to bite).
    pub fn step(&mut self, window: &[Duration], observed: Option<f64>) -> Decision {
        let Some(p99) = p99(window) else { return Decision::Hold };
        let from = self.rate;
        if p99 > self.threshold {
            let base = observed.map_or(from, |o| o.min(from));
            self.rate = (base * self.params.decrease).max(self.params.floor);
            if self.rate == from {
                return Decision::Hold;
            }
            return Decision::Decrease { from, to: self.rate, p99 };
        }
        if observed.is_some_and(|o| o < from * 0.5) {
            return Decision::Hold;
        }
        self.rate = (from + self.params.step).min(self.params.ceiling);
        if self.rate == from {
            return Decision::Hold;
        }
        Decision::Increase { from, to: self.rate, p99 }
    }
}

/// The reads of the last few windows (or measurements), pooled: a decision's reads, and the
/// baseline's.
#[derive(Debug, Clone)]
struct Pooled {
    windows: VecDeque<Vec<Duration>>,
    size: usize,
}

impl Pooled {
    fn new(size: usize) -> Pooled {
        Pooled { windows: VecDeque::with_capacity(size + 1), size: size.max(1) }
    }

    /// Adds a window, dropping the oldest once there are more than `size`.
    fn push(&mut self, window: Vec<Duration>) {
        self.windows.push_back(window);
        while self.windows.len() > self.size {
            self.windows.pop_front();
        }
    }

    /// Whether a decision can be made: `size` windows since the last [`Pooled::clear`].
    fn full(&self) -> bool {
        self.windows.len() == self.size
    }

    fn clear(&mut self) {
        self.windows.clear();
    }

    fn samples(&self) -> Vec<Duration> {
        self.windows.iter().flatten().copied().collect()
    }
}

/// The live p99 with no replay running: the reads of the last [`BASELINE_SETS`] measurements
/// (the one before the replay started, then one per pause), pooled.
#[derive(Debug, Clone)]
pub struct Baselines(Pooled);

impl Default for Baselines {
    fn default() -> Baselines {
        Baselines(Pooled::new(BASELINE_SETS))
    }
}

impl Baselines {
    /// Adds a measurement, dropping the oldest past [`BASELINE_SETS`]; one of fewer than 10
    /// reads says nothing and is left out. Returns whether it was kept.
    pub fn push(&mut self, reads: Vec<Duration>) -> bool {
        if reads.len() < MIN_BASELINE_READS {
            return false;
        }
        self.0.push(reads);
        true
    }

    /// The p99 of the pooled measurements, if any.
    pub fn p99(&self) -> Option<Duration> {
        p99(&self.0.samples())
    }
}

/// What the controller did over a replay.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AdaptiveReport {
    /// The baseline measured before the replay started, and the threshold it gave.
    pub baseline_p99_ms: f64,
    pub threshold_ms: f64,
    /// The baseline at the end, after the last pause.
    pub last_baseline_p99_ms: f64,
    pub ceiling_events_per_s: f64,
    /// Time-weighted mean of the rate the limiter allowed (0 while paused).
    pub mean_rate_events_per_s: f64,
    pub final_rate_events_per_s: f64,
    pub min_rate_events_per_s: f64,
    pub windows: u64,
    pub decreases: u64,
    pub increases: u64,
    /// Windows that took over three times their length (the process was stopped or starved),
    /// left out of every decision; a pause with such a window measures nothing.
    pub skipped_windows: u64,
    /// Pauses whose measurement became part of the baseline.
    pub rebases: u64,
    /// Time spent in those pauses (and in pauses that measured nothing).
    pub paused_seconds: f64,
}

/// Measures the live p99 over [`BASELINE`], before the replay starts; fails if the API did not
/// answer.
pub async fn measure_baseline(probe: &mut dyn Probe) -> Result<Baselines> {
    let samples = probe.sample(BASELINE).await;
    let seen = samples.len();
    let mut baselines = Baselines::default();
    if !baselines.push(samples) {
        return Err(Error::Probe(format!("{seen} live reads seen in {BASELINE:?}: is the live api up?")));
    }
    Ok(baselines)
}

/// One window of `length`: its reads, or `None` if it took over three times as long (the
/// process was stopped or starved through it, so its reads span that gap).
async fn window(probe: &mut dyn Probe, length: Duration) -> Option<Vec<Duration>> {
    let t0 = Instant::now();
    let reads = probe.sample(length).await;
    (t0.elapsed() <= length * 3).then_some(reads)
}

/// The reads of a pause, once the work in flight has settled; `None` if a window was overlong.
async fn measure_paused(probe: &mut dyn Probe, timing: Timing) -> Option<Vec<Duration>> {
    for _ in 0..timing.settle_windows {
        window(probe, timing.interval).await?;
    }
    window(probe, timing.interval * timing.measure_windows).await
}

/// A running controller driving a shared limiter; aborted if dropped before [`Controller::finish`].
pub(crate) struct Controller {
    pub(crate) limiter: Arc<RateLimiter>,
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<AdaptiveReport>>,
}

impl Controller {
    /// Measures the baseline (the replay has not started), then starts deciding every
    /// [`INTERVAL`], pausing the replay every [`Timing::DEFAULT`]`.rebase_every`.
    pub(crate) async fn start(
        config: &AdaptiveConfig,
        ceiling: Option<f64>,
        version: &'static str,
    ) -> Result<Controller> {
        let mut probe: Box<dyn Probe> = match config.source {
            LatencySource::Metrics => Box::new(MetricsProbe::new(&config.api_url)?),
            LatencySource::Probe => Box::new(HttpProbe::new(&config.api_url, config.probe_aggregates)?),
        };
        let baselines = measure_baseline(probe.as_mut()).await.map_err(|e| match (config.source, e) {
            (LatencySource::Metrics, Error::Probe(m)) => Error::Probe(format!(
                "{m} (read from {}/metrics: the live API must be serving reads, or use the probe source)",
                config.api_url
            )),
            (_, e) => e,
        })?;
        let params = AimdParams::new(config.max_live_p99_increase, ceiling.unwrap_or(DEFAULT_CEILING));
        let aimd = Aimd::new(params, baselines.p99().expect("a kept measurement has reads"));
        info!(
            version,
            source = ?config.source,
            baseline_p99_ms = aimd.baseline_p99().as_secs_f64() * 1e3,
            threshold_ms = aimd.threshold().as_secs_f64() * 1e3,
            initial = aimd.rate(),
            ceiling = params.ceiling,
            "adaptive backpressure: baseline measured"
        );
        let limiter = Arc::new(RateLimiter::new(aimd.rate()));
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(control(aimd, baselines, probe, limiter.clone(), version, Timing::DEFAULT, stop_rx));
        Ok(Controller { limiter, stop, handle: Some(handle) })
    }

    /// Stops the controller and returns what it did.
    pub(crate) async fn finish(mut self) -> AdaptiveReport {
        self.stop.send(true).ok();
        match self.handle.take() {
            Some(h) => h.await.unwrap_or_else(|e| {
                warn!(error = %e, "adaptive controller failed");
                AdaptiveReport::default()
            }),
            None => AdaptiveReport::default(),
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

async fn control(
    mut aimd: Aimd,
    mut baselines: Baselines,
    mut probe: Box<dyn Probe>,
    limiter: Arc<RateLimiter>,
    version: &'static str,
    timing: Timing,
    mut stop: watch::Receiver<bool>,
) -> AdaptiveReport {
    let mut report = AdaptiveReport {
        baseline_p99_ms: aimd.baseline_p99().as_secs_f64() * 1e3,
        threshold_ms: aimd.threshold().as_secs_f64() * 1e3,
        ceiling_events_per_s: aimd.params.ceiling,
        min_rate_events_per_s: aimd.rate(),
        ..AdaptiveReport::default()
    };
    let gauge = metrics::gauge!(metric::RATE_LIMIT, "version" => version);
    let p99_gauge = metrics::gauge!(metric::LIVE_P99, "version" => version);
    let threshold_gauge = metrics::gauge!(metric::LIVE_P99_THRESHOLD, "version" => version);
    threshold_gauge.set(aimd.threshold().as_secs_f64());
    let apply = |rate: f64| {
        limiter.set_rate(rate);
        gauge.set(rate);
    };
    apply(aimd.rate());
    let mut pooled = Pooled::new(timing.decide_over);
    let mut since_rebase = Duration::ZERO;
    let mut weighted = 0.0;
    let mut seconds = 0.0;
    loop {
        if *stop.borrow() {
            break;
        }
        if since_rebase >= timing.rebase_every {
            since_rebase = Duration::ZERO;
            pooled.clear();
            apply(0.0);
            let t0 = Instant::now();
            let measured = tokio::select! {
                m = measure_paused(probe.as_mut(), timing) => m,
                _ = stop.changed() => break,
            };
            let paused = t0.elapsed().as_secs_f64();
            seconds += paused;
            report.paused_seconds += paused;
            match measured.map(|reads| baselines.push(reads)) {
                Some(true) => {
                    let before = aimd.baseline_p99();
                    aimd.rebase(baselines.p99().expect("a kept measurement has reads"));
                    report.rebases += 1;
                    debug!(
                        version,
                        from_ms = before.as_secs_f64() * 1e3,
                        to_ms = aimd.baseline_p99().as_secs_f64() * 1e3,
                        "live p99 measured with the replay paused: baseline updated"
                    );
                }
                Some(false) => debug!(version, "too few live reads in the pause: baseline kept"),
                None => {
                    report.skipped_windows += 1;
                    debug!(version, "an overlong window in the pause: baseline kept");
                }
            }
            threshold_gauge.set(aimd.threshold().as_secs_f64());
            apply(aimd.rate());
            continue;
        }
        let before = limiter.acquired();
        let t0 = Instant::now();
        let reads = tokio::select! {
            w = window(probe.as_mut(), timing.interval) => w,
            _ = stop.changed() => break,
        };
        let Some(reads) = reads else {
            // This process did not run for most of the window (it was stopped, or starved of
            // the CPU): the window's reads span that gap, not what the replay did to them.
            report.skipped_windows += 1;
            pooled.clear();
            debug!(version, seconds = t0.elapsed().as_secs_f64(), "overlong window skipped");
            continue;
        };
        let elapsed = t0.elapsed().as_secs_f64().max(1e-3);
        since_rebase += t0.elapsed();
        weighted += aimd.rate() * elapsed;
        seconds += elapsed;
        let observed = limiter.acquired().saturating_sub(before) as f64 / elapsed;
        report.windows += 1;
        pooled.push(reads);
        if !pooled.full() {
            continue;
        }
        let samples = pooled.samples();
        if let Some(measured) = p99(&samples) {
            p99_gauge.set(measured.as_secs_f64());
        }
        match aimd.step(&samples, Some(observed)) {
            Decision::Decrease { from, to, p99 } => {
                report.decreases += 1;
                // The next decision waits for reads taken at the lower rate.
                pooled.clear();
                info!(
                    version,
                    from,
                    to,
                    observed,
                    p99_ms = p99.as_secs_f64() * 1e3,
                    threshold_ms = aimd.threshold().as_secs_f64() * 1e3,
                    "live p99 over the threshold: replay rate decreased"
                );
            }
            Decision::Increase { from, to, p99 } => {
                report.increases += 1;
                debug!(version, from, to, observed, p99_ms = p99.as_secs_f64() * 1e3, "replay rate increased");
            }
            Decision::Hold => {}
        }
        apply(aimd.rate());
        report.min_rate_events_per_s = report.min_rate_events_per_s.min(aimd.rate());
    }
    report.last_baseline_p99_ms = aimd.baseline_p99().as_secs_f64() * 1e3;
    report.final_rate_events_per_s = aimd.rate();
    report.mean_rate_events_per_s = if seconds > 0.0 { weighted / seconds } else { aimd.rate() };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    fn controller() -> Aimd {
        // Baseline 10 ms, 10% allowed: the threshold is 11 ms. Ceiling 100k: step 5k, floor 1k,
        // initial 10k (round numbers for the arithmetic below, not the defaults).
        let params = AimdParams { step: 5_000.0, initial: 10_000.0, ..AimdParams::new(0.10, 100_000.0) };
        Aimd::new(params, Duration::from_millis(10))
    }

    #[test]
    fn the_defaults_start_low_and_climb_in_small_steps() {
        let p = AimdParams::new(0.10, 500_000.0);
        assert_eq!((p.floor, p.initial, p.step, p.decrease), (FLOOR, 25_000.0, 5_000.0, 0.5));
        assert_eq!(AimdParams::new(0.10, 500.0).floor, 500.0, "a ceiling under the floor is the floor");
    }

    /// An exposition as the API's exporter writes it: two statuses of the live route, and a
    /// route the controller must ignore.
    fn exposition(ok: [u64; 4], not_found: [u64; 4], other: [u64; 4]) -> String {
        let mut text = String::from("# TYPE reproject_api_request_duration_seconds histogram\n");
        for (route, status, counts) in
            [("/aggregate/{id}", "200", ok), ("/aggregate/{id}", "404", not_found), ("/projections", "200", other)]
        {
            for (le, c) in ["0.0005", "0.001", "0.002", "+Inf"].iter().zip(counts) {
                text.push_str(&format!(
                    "reproject_api_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"{le}\"}} {c}\n"
                ));
            }
            text.push_str(&format!(
                "reproject_api_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} {}\n",
                counts[3]
            ));
        }
        text
    }

    #[test]
    fn the_live_routes_buckets_are_summed_over_its_answers() {
        let b = Buckets::parse(&exposition([10, 20, 30, 31], [1, 2, 2, 2], [500, 500, 500, 500]));
        assert_eq!(b.0, vec![(0.0005, 11), (0.001, 22), (0.002, 32), (f64::INFINITY, 33)]);
        assert_eq!(Buckets::parse("no metrics here\n"), Buckets::default());
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes_spread_over_its_buckets() {
        let before = Buckets::parse(&exposition([10, 20, 30, 30], [0; 4], [0; 4]));
        // 100 new reads: 98 under 0.5 ms, 1 in (1, 2] ms, 1 past the last bound.
        let after = Buckets::parse(&exposition([108, 118, 129, 130], [0; 4], [7; 4]));
        let samples = after.samples_since(&before);
        assert_eq!(samples.len(), 100);
        assert_eq!(samples.iter().filter(|d| **d <= Duration::from_micros(500)).count(), 98);
        assert_eq!(samples.iter().filter(|d| **d > Duration::from_millis(1)).count(), 2);
        // The 99th of 100 is the one in (1, 2] ms, at its upper end.
        assert_eq!(p99(&samples), Some(Duration::from_millis(2)));
        assert!(after.samples_since(&after).is_empty(), "no reads, no samples");
    }

    #[test]
    fn a_busy_window_is_scaled_down_keeping_its_shape() {
        let before = Buckets::parse(&exposition([0; 4], [0; 4], [0; 4]));
        let after = Buckets::parse(&exposition([990_000, 990_000, 1_000_000, 1_000_000], [0; 4], [0; 4]));
        let samples = after.samples_since(&before);
        assert!(samples.len() as u64 <= MAX_WINDOW_SAMPLES + 4, "{}", samples.len());
        let slow = samples.iter().filter(|d| **d > Duration::from_millis(1)).count() as f64;
        assert!((slow / samples.len() as f64 - 0.01).abs() < 0.001, "1% stays 1%: {slow}");
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        assert_eq!(p99(&[]), None);
        assert_eq!(p99(&ms(&[7])), Some(Duration::from_millis(7)));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(p99(&ms(&hundred)), Some(Duration::from_millis(99)));
        let many: Vec<u64> = (1..=200).rev().collect();
        assert_eq!(p99(&ms(&many)), Some(Duration::from_millis(198)));
    }

    #[test]
    fn a_window_within_the_threshold_adds_a_step_up_to_the_ceiling() {
        let mut c = controller();
        assert_eq!(c.threshold(), Duration::from_millis(11));
        assert_eq!(c.rate(), 10_000.0);
        let calm = ms(&[5, 6, 7, 11]);
        assert!(
            matches!(c.step(&calm, None), Decision::Increase { from, to, .. } if from == 10_000.0 && to == 15_000.0)
        );
        for _ in 0..100 {
            c.step(&calm, None);
        }
        assert_eq!(c.rate(), 100_000.0);
        assert_eq!(c.step(&calm, None), Decision::Hold);
    }

    #[test]
    fn a_window_over_the_threshold_halves_the_rate_down_to_the_floor() {
        let mut c = controller();
        let calm = ms(&[5; 20]);
        for _ in 0..6 {
            c.step(&calm, None);
        }
        assert_eq!(c.rate(), 40_000.0);
        let slow = ms(&[5, 5, 5, 12]);
        assert!(
            matches!(c.step(&slow, None), Decision::Decrease { from, to, .. } if from == 40_000.0 && to == 20_000.0)
        );
        for _ in 0..10 {
            c.step(&slow, None);
        }
        assert_eq!(c.rate(), 1_000.0);
        assert_eq!(c.step(&slow, None), Decision::Hold);
        // And it recovers additively.
        c.step(&calm, None);
        assert_eq!(c.rate(), 6_000.0);
    }

    #[test]
    fn an_empty_window_changes_nothing() {
        let mut c = controller();
        assert_eq!(c.step(&[], None), Decision::Hold);
        assert_eq!(c.rate(), 10_000.0);
    }

    #[test]
    fn a_decrease_halves_the_use_when_it_is_below_the_limit() {
        let mut c = controller();
        let slow = ms(&[30; 25]);
        assert!(matches!(c.step(&slow, Some(4_000.0)), Decision::Decrease { to, .. } if to == 2_000.0));
    }

    #[test]
    fn an_unused_allowance_is_not_raised() {
        let mut c = controller();
        let calm = ms(&[5; 25]);
        assert_eq!(c.step(&calm, Some(1_000.0)), Decision::Hold);
        assert_eq!(c.rate(), 10_000.0);
        assert!(matches!(c.step(&calm, Some(9_500.0)), Decision::Increase { to, .. } if to == 15_000.0));
    }

    /// A probe whose windows take `took` and always see reads far over any threshold.
    struct Slow {
        took: Duration,
    }

    impl Probe for Slow {
        fn sample(&mut self, _window: Duration) -> BoxFuture<'_, Vec<Duration>> {
            Box::pin(async move {
                tokio::time::sleep(self.took).await;
                vec![Duration::from_secs(1); 50]
            })
        }
    }

    /// The first baseline of [`controller`] as a measurement: 10 ms reads.
    fn first_baseline() -> Baselines {
        let mut b = Baselines::default();
        assert!(b.push(ms(&[10; 50])));
        b
    }

    /// Runs the control loop on `probe` for `windows` windows and returns its report.
    async fn control_for(probe: Slow, windows: u32) -> AdaptiveReport {
        let aimd = controller();
        let limiter = Arc::new(RateLimiter::new(aimd.rate()));
        let (stop, stop_rx) = watch::channel(false);
        let took = probe.took;
        let handle =
            tokio::spawn(control(aimd, first_baseline(), Box::new(probe), limiter, "v9", Timing::DEFAULT, stop_rx));
        // Stop in the middle of the window after the last one counted.
        tokio::time::sleep(took * windows + took / 2).await;
        stop.send(true).unwrap();
        handle.await.unwrap()
    }

    #[tokio::test]
    async fn a_window_the_process_was_stopped_through_decides_nothing() {
        let windows = Timing::DEFAULT.decide_over as u32;
        // As after SIGSTOP / SIGCONT: each window lasts four intervals.
        let report = control_for(Slow { took: INTERVAL * 4 }, windows).await;
        assert_eq!((report.skipped_windows, report.decreases, report.windows), (windows as u64, 0, 0), "{report:?}");
        assert_eq!(report.final_rate_events_per_s, 10_000.0);
        // The same reads in windows of the asked length cut the rate: to the floor at once, as
        // nothing used the allowance (a decrease halves the use when it is below the limit).
        let report = control_for(Slow { took: INTERVAL }, windows).await;
        assert_eq!((report.skipped_windows, report.decreases, report.windows), (0, 1, windows as u64), "{report:?}");
        assert_eq!(report.final_rate_events_per_s, FLOOR);
    }

    #[test]
    fn a_decision_waits_for_its_windows_and_pools_them() {
        let mut pooled = Pooled::new(3);
        pooled.push(ms(&[1]));
        pooled.push(ms(&[2]));
        assert!(!pooled.full());
        pooled.push(ms(&[3]));
        pooled.push(ms(&[4, 5]));
        assert!(pooled.full());
        assert_eq!(pooled.samples(), ms(&[2, 3, 4, 5]), "the oldest window left");
        pooled.clear();
        assert!(!pooled.full());
    }

    #[test]
    fn the_baseline_pools_the_last_measurements_and_ignores_an_idle_one() {
        let mut b = first_baseline();
        assert_eq!(b.p99(), Some(Duration::from_millis(10)));
        assert!(!b.push(ms(&[50; 9])), "9 reads say nothing");
        assert_eq!(b.p99(), Some(Duration::from_millis(10)));
        assert!(b.push(ms(&[5; 50])));
        assert!(b.push(ms(&[5; 50])));
        assert_eq!(b.p99(), Some(Duration::from_millis(10)), "the first is still pooled");
        assert!(b.push(ms(&[5; 50])));
        assert_eq!(b.p99(), Some(Duration::from_millis(5)), "the first fell out");
    }

    /// A live path whose latency depends on the replay's rate: `paused` while the limiter is
    /// at its paused rate, else `running(rate)`. It asks the loop to stop after `windows`.
    struct RateBound {
        limiter: Arc<RateLimiter>,
        paused: Duration,
        running: fn(f64) -> Duration,
        windows: u32,
        stop: watch::Sender<bool>,
    }

    impl Probe for RateBound {
        fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>> {
            Box::pin(async move {
                let rate = self.limiter.rate();
                tokio::time::sleep(window).await;
                self.windows = self.windows.saturating_sub(1);
                if self.windows == 0 {
                    self.stop.send(true).ok();
                }
                let latency = if rate < 1.0 { self.paused } else { (self.running)(rate) };
                vec![latency; 25]
            })
        }
    }

    /// The loop with 10 ms windows, decisions on 2, a pause every 100 ms, beside a consumer that
    /// takes every event the limiter lets through.
    async fn control_rate_bound(paused: Duration, running: fn(f64) -> Duration, rebase: bool) -> AdaptiveReport {
        let timing = Timing {
            interval: Duration::from_millis(10),
            decide_over: 2,
            rebase_every: if rebase { Duration::from_millis(100) } else { Duration::MAX },
            settle_windows: 1,
            measure_windows: 1,
        };
        let aimd = controller();
        let limiter = Arc::new(RateLimiter::new(aimd.rate()));
        let (stop, stop_rx) = watch::channel(false);
        let probe = RateBound { limiter: limiter.clone(), paused, running, windows: 200, stop };
        let consumer = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                loop {
                    limiter.acquire(10).await;
                }
            })
        };
        let report = control(aimd, first_baseline(), Box::new(probe), limiter, "v9", timing, stop_rx).await;
        consumer.abort();
        report
    }

    #[tokio::test]
    async fn a_machine_slower_than_the_first_baseline_is_measured_again_and_the_rate_climbs() {
        // The live path now takes 20 ms with no replay, 40 ms past 30k events/s; the first
        // baseline said 10 ms.
        let running = |rate: f64| Duration::from_millis(if rate > 30_000.0 { 40 } else { 20 });
        let report = control_rate_bound(Duration::from_millis(20), running, true).await;
        assert!(report.rebases >= 3, "{report:?}");
        assert_eq!(report.last_baseline_p99_ms, 20.0, "{report:?}");
        assert!(report.increases >= 5 && report.mean_rate_events_per_s > 5_000.0, "{report:?}");
        // With the first baseline kept, every window is over its threshold.
        let stale = control_rate_bound(Duration::from_millis(20), running, false).await;
        assert_eq!((stale.rebases, stale.increases, stale.final_rate_events_per_s), (0, 0, FLOOR), "{stale:?}");
    }

    #[tokio::test]
    async fn a_machine_faster_than_the_first_baseline_is_measured_again_and_the_rate_falls() {
        // The live path now takes 5 ms with no replay and 9 ms beside it at any rate: under the
        // first threshold (11 ms), but 80% over the live p99 of today.
        let running = |_rate: f64| Duration::from_millis(9);
        let report = control_rate_bound(Duration::from_millis(5), running, true).await;
        assert_eq!(report.last_baseline_p99_ms, 5.0, "{report:?}");
        assert!(report.decreases > 0, "{report:?}");
        assert_eq!(report.final_rate_events_per_s, FLOOR, "{report:?}");
        let stale = control_rate_bound(Duration::from_millis(5), running, false).await;
        assert_eq!((stale.decreases, stale.final_rate_events_per_s), (0, 100_000.0), "{stale:?}");
    }

    /// A synthetic probe: the live p99 rises with the replay's rate past a knee; the controller,
    /// stepped directly, settles around the knee and never stays above it.
    #[test]
    fn against_a_synthetic_live_path_the_rate_settles_below_the_knee() {
        let mut c = controller();
        let knee = 42_000.0;
        let latency = |rate: f64| Duration::from_micros(if rate > knee { 20_000 } else { 9_000 });
        let mut above = 0;
        let mut rates = Vec::new();
        for _ in 0..200 {
            let window = vec![latency(c.rate()); 25];
            c.step(&window, Some(c.rate()));
            rates.push(c.rate());
            if c.rate() > knee {
                above += 1;
            }
        }
        // Over the knee for at most one window at a time, never two in a row.
        assert!(rates.windows(2).all(|w| !(w[0] > knee && w[1] > knee)), "{rates:?}");
        assert!(above < 70, "{above} of 200 windows over the knee");
        let tail_mean = rates[100..].iter().sum::<f64>() / 100.0;
        assert!((20_000.0..=knee).contains(&tail_mean), "mean rate {tail_mean}");
    }
}
