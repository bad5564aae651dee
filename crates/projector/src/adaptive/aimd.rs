//! The decision: additive increase, multiplicative decrease of the replay's rate against a
//! threshold over the baseline p99. A pure function of the pooled reads, tested without a clock
//! or a server.

use std::time::Duration;

use super::probe::p99;

/// The ceiling when the replay has no `rate_limit` of its own (events per second).
pub const DEFAULT_CEILING: f64 = 1_000_000.0;
/// The rate never falls below this (events per second): a replay that is slowed, not stopped.
pub const FLOOR: f64 = 1_000.0;

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

    /// The rate it never rises above.
    pub fn ceiling(&self) -> f64 {
        self.params.ceiling
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::adaptive) fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    /// Baseline 10 ms, 10% allowed: the threshold is 11 ms. Ceiling 100k: step 5k, floor 1k,
    /// initial 10k (round numbers for the arithmetic below, not the defaults).
    pub(in crate::adaptive) fn controller() -> Aimd {
        let params = AimdParams { step: 5_000.0, initial: 10_000.0, ..AimdParams::new(0.10, 100_000.0) };
        Aimd::new(params, Duration::from_millis(10))
    }

    #[test]
    fn the_defaults_start_low_and_climb_in_small_steps() {
        let p = AimdParams::new(0.10, 500_000.0);
        assert_eq!((p.floor, p.initial, p.step, p.decrease), (FLOOR, 25_000.0, 5_000.0, 0.5));
        assert_eq!(AimdParams::new(0.10, 500.0).floor, 500.0, "a ceiling under the floor is the floor");
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
