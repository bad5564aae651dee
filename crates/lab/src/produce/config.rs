//! How to produce: the producer's configuration and its checks.

use std::time::Duration;

use crate::{Error, Result};

/// Commits per second a paced writer aims at (the batch shrinks at low rates to keep it).
const PACED_COMMITS_PER_S: f64 = 100.0;

/// How to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    /// Target events per second across all writers; 0 or less means as fast as possible.
    pub rate: f64,
    /// Concurrent writer connections, each owning one range of the aggregates.
    pub writers: u32,
    /// Most commands per transaction (a paced writer uses fewer at low rates).
    pub batch: u32,
    /// Stop after this long (else only on the stop signal).
    pub duration: Option<Duration>,
    pub seed: u64,
    /// Share of an open account's actions that are transfers (two aggregates, one transaction).
    pub transfer_ratio: f64,
    /// Share of transfers whose receiver belongs to another writer's range.
    pub cross_range_ratio: f64,
    /// Share of commands that open a new aggregate.
    pub new_aggregate_ratio: f64,
    /// Zipf exponent of aggregate popularity.
    pub zipf: f64,
    /// Time a transaction with cross-range transfers spends between writing its own events and
    /// reading the receivers (a fraud check, say). It widens the window in which a receiver's
    /// next version can commit with a newer transaction id than the transfer's, so projectors
    /// meet that case often.
    pub transfer_pause: Duration,
    /// How long a writer accepts the database being unreachable (reconnects failing) before it
    /// gives up with an error.
    pub max_outage: Duration,
}

impl ProduceConfig {
    /// A config with the defaults: 4 writers, batches of up to 100 commands, transfers 5% (a
    /// quarter of them across ranges), new aggregates 2%, Zipf 1.1, a 2 ms pause before
    /// cross-range transfers.
    pub fn new(rate: f64, duration: Option<Duration>, seed: u64) -> ProduceConfig {
        ProduceConfig {
            rate,
            writers: 4,
            batch: 100,
            duration,
            seed,
            transfer_ratio: 0.05,
            cross_range_ratio: 0.25,
            new_aggregate_ratio: 0.02,
            zipf: 1.1,
            transfer_pause: Duration::from_millis(2),
            max_outage: eventlog::DEFAULT_MAX_OUTAGE,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.writers == 0 {
            return Err(Error::Config("writers must be at least 1".into()));
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(Error::Config(format!("batch must be within 1..=100000, got {}", self.batch)));
        }
        for (name, v) in [("transfer_ratio", self.transfer_ratio), ("new_aggregate_ratio", self.new_aggregate_ratio)] {
            if !(0.0..=0.9).contains(&v) {
                return Err(Error::Config(format!("{name} must be within 0..=0.9, got {v}")));
            }
        }
        if !(0.0..=1.0).contains(&self.cross_range_ratio) {
            return Err(Error::Config(format!(
                "cross_range_ratio must be within 0..=1, got {}",
                self.cross_range_ratio
            )));
        }
        if !(self.zipf.is_finite() && self.zipf > 0.0) {
            return Err(Error::Config(format!("zipf exponent must be positive, got {}", self.zipf)));
        }
        if self.rate.is_nan() {
            return Err(Error::Config("rate must be a number".into()));
        }
        Ok(())
    }

    /// Commands per transaction of each writer.
    pub(super) fn batch_size(&self) -> usize {
        let max = self.batch as usize;
        if self.rate > 0.0 && self.rate.is_finite() {
            let per_writer = self.rate / f64::from(self.writers);
            ((per_writer / PACED_COMMITS_PER_S).ceil() as usize).clamp(1, max)
        } else {
            max
        }
    }
}
