//! The live p99 with no replay running, and the pooling of windows that both a decision and
//! the baseline rest on: a few hundred reads have too noisy a p99 to tell 10% apart.

use std::collections::VecDeque;
use std::time::Duration;

use super::probe::{p99, Probe};
use crate::error::Error;
use crate::Result;

/// How many baseline measurements (the first, then one per pause) pool into the baseline.
pub const BASELINE_SETS: usize = 3;
/// A baseline measurement with fewer reads than this is left out (the API was idle).
const MIN_BASELINE_READS: usize = 10;
/// How long the baseline is measured, before the replay starts.
pub const BASELINE: Duration = Duration::from_secs(3);

/// The reads of the last few windows (or measurements), pooled: a decision's reads, and the
/// baseline's.
#[derive(Debug, Clone)]
pub(super) struct Pooled {
    windows: VecDeque<Vec<Duration>>,
    size: usize,
}

impl Pooled {
    pub(super) fn new(size: usize) -> Pooled {
        Pooled { windows: VecDeque::with_capacity(size + 1), size: size.max(1) }
    }

    /// Adds a window, dropping the oldest once there are more than `size`.
    pub(super) fn push(&mut self, window: Vec<Duration>) {
        self.windows.push_back(window);
        while self.windows.len() > self.size {
            self.windows.pop_front();
        }
    }

    /// Whether a decision can be made: `size` windows since the last [`Pooled::clear`].
    pub(super) fn full(&self) -> bool {
        self.windows.len() == self.size
    }

    pub(super) fn clear(&mut self) {
        self.windows.clear();
    }

    pub(super) fn samples(&self) -> Vec<Duration> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::adaptive::aimd::tests::ms;

    /// The first baseline of [`crate::adaptive::aimd::tests::controller`] as a measurement:
    /// 10 ms reads.
    pub(in crate::adaptive) fn first_baseline() -> Baselines {
        let mut b = Baselines::default();
        assert!(b.push(ms(&[10; 50])));
        b
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
}
