//! The interleaved phases' statistics: their seconds pooled into blocks and sides, the ratio
//! per round, and a bootstrap interval of the pooled ratio.

use projector::CpuPriority;

use super::IsolationPhase;

/// What an interleaved phase (the adaptive one, the presence check) measured.
pub(super) struct Interleaved {
    /// The requests of the first block of every round, pooled (paused; stopped).
    pub(super) first: IsolationPhase,
    /// The requests of the second block of every round, pooled (running; absent).
    pub(super) second: IsolationPhase,
    /// Per round: the ratio of the two blocks' p99s, as the phase's figure puts it.
    pub(super) ratios: Vec<f64>,
    /// A 90% bootstrap interval of the phase's figure ([`bootstrap_p99_ratio`]).
    pub(super) ci90: [f64; 2],
    /// Per block: index, state, requests, p99 (ms).
    pub(super) blocks: Vec<(usize, &'static str, u64, f64)>,
    pub(super) report: Option<projector::AdaptiveReport>,
    /// Caveats (a replay slow to exit in the presence check).
    pub(super) notes: Vec<String>,
}

/// The names of an interleaved phase's two sides (as phases) and of their blocks.
#[derive(Clone, Copy)]
pub(super) struct Labels {
    pub(super) sides: [&'static str; 2],
    pub(super) blocks: [&'static str; 2],
}

/// The adaptive phase: the replay paused, then running.
pub(super) const ADAPTIVE_LABELS: Labels =
    Labels { sides: ["adaptive_paused", "adaptive"], blocks: ["paused", "running"] };

/// A point of the rate curve: the replay paused, then running.
pub(super) const CURVE_LABELS: Labels =
    Labels { sides: ["curve_paused", "curve_running"], blocks: ["paused", "running"] };

/// The presence check: a stopped replay process, then none.
pub(super) const PRESENCE_LABELS: Labels =
    Labels { sides: ["presence_stopped", "presence_absent"], blocks: ["stopped", "absent"] };

/// Pools an interleaved phase's seconds: block `k` holds seconds `[k * block_s, (k + 1) *
/// block_s)`, of the first side when `k` is even, of the second when odd. Returns both sides and
/// every block. The first second of a block holds the switch, so its latencies count nowhere,
/// nor do those of seconds past the last block; their failed reads count all the same (to the
/// last block, past it).
pub(super) fn pool_blocks(
    seconds: &[loadgen::Second],
    block_s: u64,
    blocks: u32,
    labels: Labels,
) -> ([Side; 2], Vec<Side>) {
    let mut sides = labels.sides.map(Side::new);
    let mut per_block: Vec<Side> = (0..blocks).map(|k| Side::new(labels.blocks[(k % 2) as usize])).collect();
    for second in seconds {
        let k = second.second / block_s;
        let counted = k < u64::from(blocks) && second.second % block_s != 0;
        let k = k.min(u64::from(blocks) - 1);
        for side in [&mut sides[(k % 2) as usize], &mut per_block[k as usize]] {
            side.failed += second.failed;
            if counted {
                side.hist.add(&second.latency_us).expect("the load driver's histograms share their bounds");
            }
        }
    }
    (sides, per_block)
}

/// Which block of a round is over which in an interleaved phase's figure: `[numerator,
/// denominator]`, 0 the first block of the round, 1 the second.
pub(super) type Orientation = [usize; 2];

/// The adaptive phase and the curve: the running block (second) over the paused one (first).
pub(super) const RUNNING_OVER_PAUSED: Orientation = [1, 0];

/// The presence check: the stopped block (first) over the absent one (second).
pub(super) const STOPPED_OVER_ABSENT: Orientation = [0, 1];

/// Per round, the ratio of its two blocks' p99s, oriented as `pair`.
pub(super) fn round_ratios(per_block: &[Side], pair: Orientation) -> Vec<f64> {
    per_block.chunks_exact(2).map(|round| round[pair[0]].p99_ms() / round[pair[1]].p99_ms()).collect()
}

/// Resamples of [`bootstrap_p99_ratio`].
const RESAMPLES: usize = 2_000;

/// A 90% bootstrap interval of an interleaved phase's figure: the p99 of the pooled reads of
/// one block of every round (`pair[0]`: 0 the first, 1 the second) over that of the other's.
/// The rounds are drawn with replacement, [`RESAMPLES`] times, and each draw is pooled as the
/// figure pools them; the interval runs from the 5th to the 95th percentile of the draws'
/// ratios. A round (two adjacent blocks) is the unit drawn, so a drift of the machine that
/// spans both its blocks stays paired. Seeded: the same blocks give the same interval.
pub(super) fn bootstrap_p99_ratio(per_block: &[Side], pair: Orientation) -> [f64; 2] {
    use rand::{Rng, SeedableRng};
    let rounds: Vec<&[Side]> = per_block.chunks_exact(2).collect();
    if rounds.is_empty() {
        return [f64::NAN; 2];
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let [mut num, mut den] = [Side::new("num"), Side::new("den")];
            for _ in 0..rounds.len() {
                let round = rounds[rng.gen_range(0..rounds.len())];
                num.hist.add(&round[pair[0]].hist).expect("the load driver's histograms share their bounds");
                den.hist.add(&round[pair[1]].hist).expect("the load driver's histograms share their bounds");
            }
            num.p99_ms() / den.p99_ms()
        })
        .filter(|r| r.is_finite())
        .collect();
    if ratios.is_empty() {
        return [f64::NAN; 2];
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    [at(0.05), at(0.95)]
}

/// Per block: index, state, requests, p99 (ms).
pub(super) fn block_rows(per_block: &[Side]) -> Vec<(usize, &'static str, u64, f64)> {
    per_block.iter().enumerate().map(|(k, b)| (k, b.name, b.hist.len(), b.p99_ms())).collect()
}

/// The seconds of one side (or block) of an interleaved phase, pooled.
pub(super) struct Side {
    name: &'static str,
    hist: hdrhistogram::Histogram<u64>,
    failed: u64,
}

impl Side {
    fn new(name: &'static str) -> Side {
        Side { name, hist: loadgen::new_hist(), failed: 0 }
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1e3
        }
    }

    fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    pub(super) fn phase(
        &self,
        priority: Option<CpuPriority>,
        events: u64,
        events_per_s: f64,
        finished_early: bool,
    ) -> IsolationPhase {
        IsolationPhase {
            phase: self.name.to_owned(),
            requests: self.hist.len(),
            failed: self.failed,
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.p99_ms(),
            rate_limit: None,
            replay_events: events,
            replay_events_per_s: events_per_s,
            replay_finished_early: finished_early,
            replay_priority: priority.map(CpuPriority::describe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second of the load whose requests all took `ms`.
    fn second(at: u64, ms: u64, requests: u64) -> loadgen::Second {
        let mut latency_us = loadgen::new_hist();
        latency_us.record_n(ms * 1000, requests).unwrap();
        loadgen::Second {
            second: at,
            ok: requests,
            failed: 0,
            p50_ms: ms as f64,
            p99_ms: ms as f64,
            versions: vec![],
            served: Default::default(),
            latency_us,
        }
    }

    #[test]
    fn blocks_alternate_paused_and_running_and_their_switch_seconds_count_nowhere() {
        // Two rounds of 3 s blocks over 13 s: paused 0-2, running 3-5, paused 6-8, running 9-11.
        // Switch seconds (0, 3, 6, 9) take 100 ms, paused seconds 1 ms, running ones 2 ms, and
        // second 12 (past the last block) 50 ms.
        let mut seconds: Vec<_> = (0..13)
            .map(|s| {
                let ms = match s {
                    12 => 50,
                    s if s % 3 == 0 => 100,
                    s if (s / 3) % 2 == 0 => 1,
                    _ => 2,
                };
                second(s, ms, 10)
            })
            .collect();
        seconds[3].failed = 2;
        seconds[12].failed = 1;
        let ([paused, running], blocks) = pool_blocks(&seconds, 3, 4, ADAPTIVE_LABELS);
        assert_eq!((paused.hist.len(), running.hist.len()), (40, 40));
        assert_eq!((paused.hist.max(), running.hist.max()), (1000, 2000), "no switch second, nothing past the end");
        assert_eq!(
            blocks.iter().map(|b| (b.name, b.hist.len())).collect::<Vec<_>>(),
            [("paused", 20), ("running", 20), ("paused", 20), ("running", 20)]
        );
        assert!((running.p99_ms() / paused.p99_ms() - 2.0).abs() < 0.01);
        assert_eq!((paused.name, running.name), ("adaptive_paused", "adaptive"));
        // Failed reads count wherever they fall: a switch second's in its block, a late one's in
        // the last block.
        assert_eq!((paused.failed, running.failed), (0, 3));
        assert_eq!(blocks.iter().map(|b| b.failed).collect::<Vec<_>>(), [0, 2, 0, 1]);
    }

    /// Blocks of 100 reads at `ms[k]` each, plus `extra[k]` reads at 5 ms.
    fn blocks_of(ms: &[u64], extra: &[u64]) -> Vec<Side> {
        ms.iter()
            .zip(extra)
            .map(|(&ms, &extra)| {
                let mut side = Side::new("block");
                side.hist.record_n(ms * 1000, 100).unwrap();
                if extra > 0 {
                    side.hist.record_n(5000, extra).unwrap();
                }
                side
            })
            .collect()
    }

    #[test]
    fn the_bootstrap_interval_of_a_steady_ratio_is_that_ratio_in_the_direction_asked() {
        let blocks = blocks_of(&[1, 2, 1, 2, 1, 2, 1, 2], &[0; 8]);
        let [lo, hi] = bootstrap_p99_ratio(&blocks, [1, 0]);
        assert!((lo - 2.0).abs() < 0.01 && (hi - 2.0).abs() < 0.01, "{lo} {hi}");
        let [lo, hi] = bootstrap_p99_ratio(&blocks, [0, 1]);
        assert!((lo - 0.5).abs() < 0.01 && (hi - 0.5).abs() < 0.01, "{lo} {hi}");
    }

    #[test]
    fn one_slow_round_out_of_ten_spreads_the_interval_from_none_to_its_whole_weight() {
        // Every block 100 reads at 1 ms; the second block of round 3 also 30 reads at 5 ms. Pooled,
        // the second side's p99 is 5 ms (30 of 1030 reads), so the figure is 5; a third of the
        // draws leave round 3 out (0.9^10) and give 1.
        let mut extra = [0; 20];
        extra[7] = 30;
        let blocks = blocks_of(&[1; 20], &extra);
        let [lo, hi] = bootstrap_p99_ratio(&blocks, [1, 0]);
        assert!((lo - 1.0).abs() < 0.01, "lower bound {lo}");
        assert!((hi - 5.0).abs() < 0.01, "upper bound {hi}");
        assert_eq!(bootstrap_p99_ratio(&blocks, [1, 0]), [lo, hi], "seeded: the same blocks, the same interval");
    }
}
