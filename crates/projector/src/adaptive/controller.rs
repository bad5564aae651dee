//! The running controller: it measures the baseline, then drives the replay's [`RateLimiter`]
//! window by window, pausing the replay now and then to measure the baseline again, and
//! reports what it did ([`AdaptiveReport`]).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::aimd::{Aimd, AimdParams, Decision, DEFAULT_CEILING};
use super::baseline::{measure_baseline, Baselines, Pooled};
use super::config::{AdaptiveConfig, LatencySource, Timing};
use super::probe::{p99, HttpProbe, MetricsProbe, Probe};
use crate::error::Error;
use crate::ratelimit::RateLimiter;
use crate::{metric, Result};

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

/// A running controller driving a shared limiter; aborted if dropped before [`Controller::finish`].
pub(crate) struct Controller {
    pub(crate) limiter: Arc<RateLimiter>,
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<AdaptiveReport>>,
}

impl Controller {
    /// Measures the baseline (the replay has not started), then starts deciding every
    /// [`super::INTERVAL`], pausing the replay every [`Timing::DEFAULT`]`.rebase_every`.
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
        let control = ControlLoop::new(aimd, baselines, probe, limiter.clone(), version, Timing::DEFAULT);
        let handle = tokio::spawn(control.run(stop_rx));
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

/// The gauges the controller keeps (label `version`).
struct Gauges {
    rate: metrics::Gauge,
    live_p99: metrics::Gauge,
    threshold: metrics::Gauge,
}

/// The control loop's state from one step to the next.
struct ControlLoop {
    aimd: Aimd,
    baselines: Baselines,
    probe: Box<dyn Probe>,
    limiter: Arc<RateLimiter>,
    version: &'static str,
    timing: Timing,
    gauges: Gauges,
    /// The reads of the last windows, the next decision's.
    pooled: Pooled,
    /// Running time since the last pause.
    since_rebase: Duration,
    /// The rate times the seconds it held, and the seconds, for the time-weighted mean.
    weighted: f64,
    seconds: f64,
    report: AdaptiveReport,
}

impl ControlLoop {
    /// The loop at its start: the limiter at the controller's first rate.
    fn new(
        aimd: Aimd,
        baselines: Baselines,
        probe: Box<dyn Probe>,
        limiter: Arc<RateLimiter>,
        version: &'static str,
        timing: Timing,
    ) -> ControlLoop {
        let report = AdaptiveReport {
            baseline_p99_ms: aimd.baseline_p99().as_secs_f64() * 1e3,
            threshold_ms: aimd.threshold().as_secs_f64() * 1e3,
            ceiling_events_per_s: aimd.ceiling(),
            min_rate_events_per_s: aimd.rate(),
            ..AdaptiveReport::default()
        };
        let gauges = Gauges {
            rate: metrics::gauge!(metric::RATE_LIMIT, "version" => version),
            live_p99: metrics::gauge!(metric::LIVE_P99, "version" => version),
            threshold: metrics::gauge!(metric::LIVE_P99_THRESHOLD, "version" => version),
        };
        gauges.threshold.set(aimd.threshold().as_secs_f64());
        let run = ControlLoop {
            aimd,
            baselines,
            probe,
            limiter,
            version,
            timing,
            gauges,
            pooled: Pooled::new(timing.decide_over),
            since_rebase: Duration::ZERO,
            weighted: 0.0,
            seconds: 0.0,
            report,
        };
        run.set_rate(run.aimd.rate());
        run
    }

    /// Runs the controller until `stop` says so (or its sender is gone): a pause to measure the
    /// baseline again when one is due, else a window of reads and, once enough are pooled, a
    /// decision.
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> AdaptiveReport {
        while !*stop.borrow() {
            let flow = if self.rebase_due() {
                self.pause_and_rebase(&mut stop).await
            } else {
                self.run_window(&mut stop).await
            };
            if flow.is_break() {
                break;
            }
        }
        self.finish()
    }

    /// Sets the limiter and its gauge.
    fn set_rate(&self, rate: f64) {
        self.limiter.set_rate(rate);
        self.gauges.rate.set(rate);
    }

    fn rebase_due(&self) -> bool {
        self.since_rebase >= self.timing.rebase_every
    }

    /// Pauses the replay (rate 0), measures the live p99 once the work in flight has settled,
    /// takes it into the baseline, and lets the replay go on at the rate it had.
    async fn pause_and_rebase(&mut self, stop: &mut watch::Receiver<bool>) -> ControlFlow<()> {
        self.since_rebase = Duration::ZERO;
        self.pooled.clear();
        self.set_rate(0.0);
        let t0 = Instant::now();
        let measured = tokio::select! {
            m = measure_paused(self.probe.as_mut(), self.timing) => m,
            _ = stop.changed() => return ControlFlow::Break(()),
        };
        let paused = t0.elapsed().as_secs_f64();
        self.seconds += paused;
        self.report.paused_seconds += paused;
        self.take_baseline(measured);
        self.gauges.threshold.set(self.aimd.threshold().as_secs_f64());
        self.set_rate(self.aimd.rate());
        ControlFlow::Continue(())
    }

    /// Takes a pause's reads into the baseline, unless the pause had an overlong window
    /// (`None`) or too few reads.
    fn take_baseline(&mut self, measured: Option<Vec<Duration>>) {
        let version = self.version;
        match measured.map(|reads| self.baselines.push(reads)) {
            Some(true) => {
                let before = self.aimd.baseline_p99();
                self.aimd.rebase(self.baselines.p99().expect("a kept measurement has reads"));
                self.report.rebases += 1;
                debug!(
                    version,
                    from_ms = before.as_secs_f64() * 1e3,
                    to_ms = self.aimd.baseline_p99().as_secs_f64() * 1e3,
                    "live p99 measured with the replay paused: baseline updated"
                );
            }
            Some(false) => debug!(version, "too few live reads in the pause: baseline kept"),
            None => {
                self.report.skipped_windows += 1;
                debug!(version, "an overlong window in the pause: baseline kept");
            }
        }
    }

    /// One window with the replay running: its reads pooled, and a decision once the pool is
    /// full. An overlong window is left out and empties the pool.
    async fn run_window(&mut self, stop: &mut watch::Receiver<bool>) -> ControlFlow<()> {
        let acquired_before = self.limiter.acquired();
        let t0 = Instant::now();
        let reads = tokio::select! {
            w = window(self.probe.as_mut(), self.timing.interval) => w,
            _ = stop.changed() => return ControlFlow::Break(()),
        };
        let Some(reads) = reads else {
            // This process did not run for most of the window (it was stopped, or starved of
            // the CPU): the window's reads span that gap, not what the replay did to them.
            self.report.skipped_windows += 1;
            self.pooled.clear();
            debug!(version = self.version, seconds = t0.elapsed().as_secs_f64(), "overlong window skipped");
            return ControlFlow::Continue(());
        };
        let observed = self.count_window(t0.elapsed(), acquired_before);
        self.pooled.push(reads);
        if self.pooled.full() {
            self.decide(observed);
        }
        ControlFlow::Continue(())
    }

    /// Counts a window's time toward the mean rate and the next pause; returns the rate
    /// (events/s) the replay took in it.
    fn count_window(&mut self, took: Duration, acquired_before: u64) -> f64 {
        let elapsed = took.as_secs_f64().max(1e-3);
        self.since_rebase += took;
        self.weighted += self.aimd.rate() * elapsed;
        self.seconds += elapsed;
        self.report.windows += 1;
        self.limiter.acquired().saturating_sub(acquired_before) as f64 / elapsed
    }

    /// Decides on the pooled reads and sets the limiter to the rate decided.
    fn decide(&mut self, observed: f64) {
        let version = self.version;
        let samples = self.pooled.samples();
        if let Some(measured) = p99(&samples) {
            self.gauges.live_p99.set(measured.as_secs_f64());
        }
        match self.aimd.step(&samples, Some(observed)) {
            Decision::Decrease { from, to, p99 } => {
                self.report.decreases += 1;
                // The next decision waits for reads taken at the lower rate.
                self.pooled.clear();
                info!(
                    version,
                    from,
                    to,
                    observed,
                    p99_ms = p99.as_secs_f64() * 1e3,
                    threshold_ms = self.aimd.threshold().as_secs_f64() * 1e3,
                    "live p99 over the threshold: replay rate decreased"
                );
            }
            Decision::Increase { from, to, p99 } => {
                self.report.increases += 1;
                debug!(version, from, to, observed, p99_ms = p99.as_secs_f64() * 1e3, "replay rate increased");
            }
            Decision::Hold => {}
        }
        self.set_rate(self.aimd.rate());
        self.report.min_rate_events_per_s = self.report.min_rate_events_per_s.min(self.aimd.rate());
    }

    /// The report, with the figures only the end knows.
    fn finish(self) -> AdaptiveReport {
        let rate = self.aimd.rate();
        AdaptiveReport {
            last_baseline_p99_ms: self.aimd.baseline_p99().as_secs_f64() * 1e3,
            final_rate_events_per_s: rate,
            mean_rate_events_per_s: if self.seconds > 0.0 { self.weighted / self.seconds } else { rate },
            ..self.report
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;

    use super::*;
    use crate::adaptive::aimd::tests::controller;
    use crate::adaptive::aimd::FLOOR;
    use crate::adaptive::baseline::tests::first_baseline;
    use crate::adaptive::INTERVAL;

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

    /// Runs the control loop on `probe` for `windows` windows and returns its report.
    async fn control_for(probe: Slow, windows: u32) -> AdaptiveReport {
        let aimd = controller();
        let limiter = Arc::new(RateLimiter::new(aimd.rate()));
        let (stop, stop_rx) = watch::channel(false);
        let took = probe.took;
        let control = ControlLoop::new(aimd, first_baseline(), Box::new(probe), limiter, "v9", Timing::DEFAULT);
        let handle = tokio::spawn(control.run(stop_rx));
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
        let report =
            ControlLoop::new(aimd, first_baseline(), Box::new(probe), limiter, "v9", timing).run(stop_rx).await;
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
}
