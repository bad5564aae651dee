//! What a producer run did: its totals and its seconds.

/// One second of a producer run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProduceSecond {
    /// End of the interval, seconds since the start.
    pub t_s: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub conflicts: u64,
    pub retries: u64,
}

/// What a producer run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProduceReport {
    pub events: u64,
    /// Committed transactions.
    pub transactions: u64,
    /// Committed transfers (two-aggregate transactions).
    pub transfers: u64,
    /// Of which between two writers' ranges.
    pub cross_range_transfers: u64,
    pub new_aggregates: u64,
    /// Attempts (a whole batch, or a batch's cross-range part) that lost a race and rolled back.
    pub conflicts: u64,
    /// Of those, the ones tried again.
    pub retries: u64,
    /// Cross-range parts dropped after their last attempt.
    pub abandoned: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub conflicts_per_s: f64,
    /// The run, second by second.
    pub per_second: Vec<ProduceSecond>,
}

impl ProduceReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "produced {} events in {} transactions ({} transfers, {} across writers' ranges, {} new aggregates; \
             {} conflicts, {} retries, {} cross-range parts dropped) in {:.1}s: {:.0} events/s",
            self.events,
            self.transactions,
            self.transfers,
            self.cross_range_transfers,
            self.new_aggregates,
            self.conflicts,
            self.retries,
            self.abandoned,
            self.seconds,
            self.events_per_s
        )
    }
}
