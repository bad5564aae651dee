//! The run's counters, shared by the writers (every increment also goes to the `metrics`
//! recorder), and the sampler that records them second by second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::writer::Done;
use super::{ProduceReport, ProduceSecond};

/// Counter names, with their unit.
pub const EVENTS_TOTAL: &str = "reproject_produce_events_total";
pub const CONFLICTS_TOTAL: &str = "reproject_produce_conflicts_total";
pub const RETRIES_TOTAL: &str = "reproject_produce_retries_total";

/// The run's counters, shared by the writers and the per-second sampler; every increment also
/// goes to the `metrics` recorder.
#[derive(Debug, Default)]
pub(super) struct Counters {
    events: AtomicU64,
    transactions: AtomicU64,
    transfers: AtomicU64,
    cross_range_transfers: AtomicU64,
    new_aggregates: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
    abandoned: AtomicU64,
}

impl Counters {
    pub(super) fn committed(&self, done: &Done) {
        self.events.fetch_add(done.events, Ordering::Relaxed);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.transfers.fetch_add(done.transfers, Ordering::Relaxed);
        self.cross_range_transfers.fetch_add(done.cross_range_transfers, Ordering::Relaxed);
        self.new_aggregates.fetch_add(done.opened, Ordering::Relaxed);
        self.conflicts.fetch_add(done.conflicts, Ordering::Relaxed);
        self.retries.fetch_add(done.retries, Ordering::Relaxed);
        self.abandoned.fetch_add(done.abandoned, Ordering::Relaxed);
        metrics::counter!(EVENTS_TOTAL).increment(done.events);
        metrics::counter!(CONFLICTS_TOTAL).increment(done.conflicts);
        metrics::counter!(RETRIES_TOTAL).increment(done.retries);
    }

    pub(super) fn conflict(&self, retried: bool) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(CONFLICTS_TOTAL).increment(1);
        if retried {
            self.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(RETRIES_TOTAL).increment(1);
        }
    }

    pub(super) fn report(&self) -> ProduceReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProduceReport {
            events: get(&self.events),
            transactions: get(&self.transactions),
            transfers: get(&self.transfers),
            cross_range_transfers: get(&self.cross_range_transfers),
            new_aggregates: get(&self.new_aggregates),
            conflicts: get(&self.conflicts),
            retries: get(&self.retries),
            abandoned: get(&self.abandoned),
            ..ProduceReport::default()
        }
    }
}

/// Snapshots the counters every second (and once more at the end, for the last part-second).
pub(super) async fn sample_seconds(
    counters: Arc<Counters>,
    started: Instant,
    mut done: watch::Receiver<bool>,
) -> Vec<ProduceSecond> {
    let mut out = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let (mut t0, mut e0, mut c0, mut r0) = (0.0, 0, 0, 0);
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = done.changed() => true,
        };
        let t = started.elapsed().as_secs_f64();
        let (e, c, r) = (
            counters.events.load(Ordering::Relaxed),
            counters.conflicts.load(Ordering::Relaxed),
            counters.retries.load(Ordering::Relaxed),
        );
        if t > t0 {
            out.push(ProduceSecond {
                t_s: t,
                events: e - e0,
                events_per_s: (e - e0) as f64 / (t - t0),
                conflicts: c - c0,
                retries: r - r0,
            });
        }
        (t0, e0, c0, r0) = (t, e, c, r);
        if last {
            return out;
        }
    }
}
