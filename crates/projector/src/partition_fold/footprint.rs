//! What a partition's fold holds and has held: the figures the replay logs and reports.

use fold::Projection;

use super::PartitionFold;

/// What one partition's fold kept at most, for the replay's logs and report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FoldFootprint {
    /// Events offered.
    pub events: u64,
    /// Aggregates of the partition (one stream each).
    pub aggregates: u64,
    /// Events held at some point (read before their predecessor).
    pub held_total: u64,
    /// The most events held at once.
    pub held_peak: u64,
    /// Aggregates deferred to the spill (a held limit was reached).
    pub deferred_aggregates: u64,
    /// Events that went through the spill.
    pub spilled: u64,
    /// Gap lookups (the held limit reached), and the events they applied ahead of the stream.
    pub gap_lookups: u64,
    pub fetched: u64,
    /// Held events evicted at the limit (short runs), and the evicted events read back.
    pub evicted: u64,
    pub refetched: u64,
}

impl<P: Projection> PartitionFold<P> {
    /// Events held right now (raw copies kept).
    pub fn held(&self) -> usize {
        self.held_raw.len()
    }

    /// The most events held at once so far.
    pub fn held_peak(&self) -> usize {
        self.held_peak
    }

    /// Aggregates seen so far (one stream each).
    pub fn aggregates(&self) -> usize {
        self.streams.len()
    }

    /// What the fold kept at most, so far.
    pub fn footprint(&self) -> FoldFootprint {
        FoldFootprint {
            events: self.events,
            aggregates: self.streams.len() as u64,
            held_total: self.held_total,
            held_peak: self.held_peak as u64,
            deferred_aggregates: self.deferred.len() as u64,
            spilled: self.spilled,
            gap_lookups: self.gap_lookups,
            fetched: self.fetched,
            evicted: self.evicted_total,
            refetched: self.refetched,
        }
    }

    /// Events evicted and not read back yet.
    pub fn evicted_now(&self) -> usize {
        self.evicted_now
    }
}
