//! The bulk replay's fold of one log partition, in memory: one guarded stream per aggregate,
//! plus the raw form of the events the guard is holding (a version read before its
//! predecessor), kept so that those still held at the end are persisted with the partition.
//!
//! Memory: a partition is read in storage order, not version order (concurrent loaders and
//! writers interleave their pages), so a share of its events arrives before its predecessor
//! and is held for a while (30% of the events of a seeded partition, for a few pages each).
//! The raw copy of a held event is dropped as soon as the guard applies it: what this fold
//! keeps is one stream per aggregate of the partition plus the events held *right now*,
//! never the partition's events. (Before, the raw copies were kept until the end of the
//! partition: a third of the partition's events, which made the replay's memory grow with
//! the log's length.) [`PartitionFold::held_peak`] is the figure a test pins.
//!
//! What is held right now depends on the log's storage order, not on the fold: a log loaded
//! out of version order (at 100M seeded events, 940k held at once in one partition) would
//! make it grow with the log. With a held limit ([`PartitionFold::with_held_limit`]), once the
//! limit is reached ([`PartitionFold::over_limit`]) the driver ([`crate::spill::Spiller`])
//! first looks the missing predecessors up in the log ([`PartitionFold::gaps`],
//! [`PartitionFold::offer_fetched`]): one event stored late usually holds thousands behind
//! it, and applying it early releases them (its own copy is skipped when the stream reaches
//! it). Whatever is still held past half the limit then goes with its aggregate to the spill
//! ([`PartitionFold::defer_to_half`]): the aggregates holding the most are *deferred*, their
//! held events and every later event of theirs in this partition leave the fold
//! ([`PartitionFold::take_spill`]; [`crate::spill`] keeps them in a temporary table) and come
//! back sorted by `(aggregate_id, version)` once the partition has been read
//! ([`PartitionFold::offer_spilled`]), where the guard applies them in order. Held events
//! then stay under the limit whatever the storage order.
//!
//! Before that, short runs of held events are *evicted* ([`PartitionFold::evict_short_runs`]):
//! a later version stored ahead of its place (PostgreSQL puts later rows in the free space left
//! at the end of earlier pages) holds nothing behind it, but an aggregate with millions of
//! events may collect many of them, each waiting for the stream to reach it. Their raw copies
//! are dropped and only their keys kept; when the aggregate's stream reaches one, the driver
//! reads the next evicted versions of that aggregate back from the log by index
//! ([`PartitionFold::take_wanted`], [`PartitionFold::offer_refetched`]), and whatever is still
//! evicted when the partition ends is read back then ([`PartitionFold::take_all_evicted`]).
//! Deferring such an aggregate instead would send every later event of it through the spill.

use std::collections::{BTreeSet, HashMap, HashSet};

use eventlog::{Position, RawEvent};
use fold::{AggregateId, Guarded, Mark, Offer, Projection, Row};
use readmodel::{DeadLetter, PartitionBatch};

use crate::error::{BadEvent, Error};
use crate::Result;
use tracing::warn;

mod evict;
mod footprint;
mod held;
#[cfg(test)]
mod testing;

pub use evict::{EVICTED_PER_HELD, EVICT_RUN, REFETCH_WINDOW};
pub use footprint::FoldFootprint;
pub use held::{LOOKUP_GAIN, MAX_GAP};

/// The fold of one partition in progress.
pub struct PartitionFold<P: Projection> {
    projection: P,
    partition: u32,
    quarantine: bool,
    streams: HashMap<AggregateId, Guarded<P>>,
    /// Raw events the guard holds right now, by `(aggregate_id, version)`.
    held_raw: HashMap<(AggregateId, i32), RawEvent>,
    dead_letters: Vec<DeadLetter>,
    applied: i64,
    events: u64,
    held_total: u64,
    held_peak: usize,
    /// Defer aggregates once more events than this are held.
    held_limit: Option<usize>,
    /// Aggregates whose events go to the spill until the partition has been read.
    deferred: HashSet<AggregateId>,
    /// Events on their way to the spill (taken by [`PartitionFold::take_spill`]).
    to_spill: Vec<RawEvent>,
    spilled: u64,
    /// The spill is being read back: nothing is deferred any more.
    draining: bool,
    /// Events applied (or dead-lettered) ahead of the stream by a gap lookup: their copy in
    /// the stream is skipped when it comes.
    prefetched: HashSet<(AggregateId, i32)>,
    /// Events dead-lettered: a gap lookup does not offer them again.
    dead: HashSet<(AggregateId, i32)>,
    fetched: u64,
    gap_lookups: u64,
    /// Held events dropped from memory at the limit, by aggregate: read back from the log when
    /// the aggregate's stream reaches them (their copies in the stream have passed).
    evicted: HashMap<AggregateId, BTreeSet<i32>>,
    evicted_now: usize,
    evicted_total: u64,
    refetched: u64,
    /// Aggregates whose stream has reached an evicted version.
    wanted: Vec<AggregateId>,
    /// Evicted events of aggregates deferred since: the driver reads them from the log into
    /// the spill, where the rest of their aggregate's events are.
    spill_refetch: Vec<(AggregateId, i32)>,
}

impl<P: Projection> PartitionFold<P> {
    /// An empty fold of `partition`; with `quarantine`, bad events become dead letters
    /// instead of errors.
    pub fn new(projection: P, partition: u32, quarantine: bool) -> PartitionFold<P> {
        PartitionFold {
            projection,
            partition,
            quarantine,
            streams: HashMap::new(),
            held_raw: HashMap::new(),
            dead_letters: Vec::new(),
            applied: 0,
            events: 0,
            held_total: 0,
            held_peak: 0,
            held_limit: None,
            deferred: HashSet::new(),
            to_spill: Vec::new(),
            spilled: 0,
            draining: false,
            prefetched: HashSet::new(),
            dead: HashSet::new(),
            fetched: 0,
            gap_lookups: 0,
            evicted: HashMap::new(),
            evicted_now: 0,
            evicted_total: 0,
            refetched: 0,
            wanted: Vec::new(),
            spill_refetch: Vec::new(),
        }
    }

    /// Bounds the events held at once to `limit` (at least 1). The fold does not act on it by
    /// itself: the driver checks [`PartitionFold::over_limit`] after each offer, then looks gaps
    /// up ([`PartitionFold::gaps`]) and calls [`PartitionFold::defer_to_half`]; once the
    /// partition has been read it offers the spill back sorted by `(aggregate_id, version)`
    /// through [`PartitionFold::offer_spilled`] ([`crate::spill::Spiller`] does all of it).
    pub fn with_held_limit(mut self, limit: Option<usize>) -> PartitionFold<P> {
        self.held_limit = limit.map(|l| l.max(1));
        self
    }

    /// Starts the fold from a consistent cut instead of from nothing: the rows and marks a
    /// snapshot of this partition holds (each aggregate's stream resumes where it left off, so
    /// an event at or below its version is a duplicate). The events held at the cut are then
    /// offered again with [`PartitionFold::offer`], and the log read from the cut on.
    pub fn resume(&mut self, rows: Vec<Row<P::State>>, marks: Vec<Mark>) {
        for row in rows {
            self.streams.insert(row.aggregate_id.clone(), Guarded::resume(Some(row), None));
        }
        for mark in marks {
            self.streams.insert(mark.aggregate_id.clone(), Guarded::resume(None, Some(mark)));
        }
    }

    /// Offers one event of the partition, in any order.
    pub fn offer(&mut self, raw: RawEvent) -> Result<()> {
        self.events += 1;
        // Both sets are empty unless a fold reached its limit: no hashing per event then.
        if !self.prefetched.is_empty() && self.prefetched.remove(&(raw.aggregate_id.clone(), raw.version)) {
            return Ok(());
        }
        if !self.draining && !self.deferred.is_empty() && self.deferred.contains(&raw.aggregate_id) {
            self.spilled += 1;
            self.to_spill.push(raw);
            return Ok(());
        }
        self.apply_or_hold(raw)
    }

    fn apply_or_hold(&mut self, raw: RawEvent) -> Result<()> {
        let event = match raw.decode(&self.projection) {
            Ok(e) => e,
            Err(e) if self.quarantine => {
                warn!(bad = %self.bad_event(e.to_string(), &raw), "event dead-lettered, aggregate quarantined");
                self.dead.insert((raw.aggregate_id.clone(), raw.version));
                self.dead_letters.push(DeadLetter { partition: self.partition, event: raw, error: e.to_string() });
                return Ok(());
            }
            Err(e) => return Err(self.bad(e.to_string(), &raw)),
        };
        if event.body.is_none() {
            crate::count_skipped(self.projection.name(), &raw.event_type, "bulk");
        }
        let stream = self.streams.entry(raw.aggregate_id.clone()).or_default();
        let before = stream.version();
        let had_held = !stream.pending.is_empty();
        let outcome = stream.offer(&self.projection, event);
        let after = stream.version();
        if had_held && after > before + 1 {
            // The guard applied held events behind this one: their raw copies go too.
            for v in before + 2..=after {
                self.held_raw.remove(&(raw.aggregate_id.clone(), v));
            }
        }
        match outcome {
            Ok(Offer::Applied(n)) => {
                self.applied += n as i64;
                // Skipped while nothing is evicted: no hashing per event then.
                if !self.evicted.is_empty()
                    && self.evicted.get(&raw.aggregate_id).and_then(|v| v.first()) == Some(&(after + 1))
                {
                    self.wanted.push(raw.aggregate_id.clone());
                }
            }
            Ok(Offer::Held) => {
                self.held_total += 1;
                self.held_raw.insert((raw.aggregate_id.clone(), raw.version), raw);
                self.held_peak = self.held_peak.max(self.held_raw.len());
            }
            Ok(Offer::Duplicate) => {}
            Err(e) if self.quarantine => {
                warn!(bad = %self.bad_event(e.to_string(), &raw), "event dead-lettered, aggregate quarantined");
                self.dead.insert((raw.aggregate_id.clone(), raw.version));
                self.dead_letters.push(DeadLetter { partition: self.partition, event: raw, error: e.to_string() });
            }
            Err(e) => return Err(self.bad(e.to_string(), &raw)),
        }
        Ok(())
    }

    fn bad(&self, reason: String, raw: &RawEvent) -> Error {
        self.bad_event(reason, raw).into()
    }

    fn bad_event(&self, reason: String, raw: &RawEvent) -> BadEvent {
        BadEvent {
            partition: self.partition,
            global_seq: raw.global_seq,
            aggregate_id: raw.aggregate_id.clone(),
            version: raw.version,
            reason,
        }
    }

    /// The partition's batch: one row per aggregate with state, the marks of the aggregates
    /// with none (only skipped events), the events still held (to be persisted with the rows),
    /// the dead letters, and `position`.
    ///
    /// # Panics
    /// If events wait to be spilled, or were deferred and never read back: the batch would
    /// miss them.
    pub fn finish(mut self, position: Position) -> PartitionBatch<P> {
        assert!(
            self.to_spill.is_empty() && (self.deferred.is_empty() || self.draining),
            "partition {}: the fold deferred aggregates to the spill and it was not read back",
            self.partition
        );
        assert!(
            self.evicted.is_empty() && self.spill_refetch.is_empty(),
            "partition {}: evicted events were not read back",
            self.partition
        );
        let mut rows = Vec::with_capacity(self.streams.len());
        let mut marks = Vec::new();
        let mut held = Vec::with_capacity(self.held_raw.len());
        for (id, stream) in self.streams {
            if !stream.pending.is_empty() {
                for v in stream.pending.keys() {
                    if let Some(raw) = self.held_raw.remove(&(id.clone(), *v)) {
                        held.push(raw);
                    }
                }
            }
            match (stream.row, stream.mark) {
                (Some(row), _) => rows.push(row),
                (None, Some(mark)) => marks.push(mark),
                (None, None) => {}
            }
        }
        PartitionBatch {
            projection: self.projection,
            partition: self.partition,
            rows,
            position,
            applied: self.applied,
            held,
            dead_letters: self.dead_letters,
            marks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::raw;
    use super::*;
    use lab::bank::V4;

    /// A partition whose every event after the opening arrives just before its predecessor
    /// (2 before 1, 4 before 3, ...): half of the events are held once each, never more than
    /// one per aggregate at a time. The fold must keep only what is held right now.
    #[test]
    fn raw_copies_of_held_events_are_dropped_once_applied() {
        let mut fold = PartitionFold::new(V4, 0, false);
        let (aggregates, versions) = (50i64, 2_000i32);
        for pair in 0..versions / 2 {
            for id in 1..=aggregates {
                fold.offer(raw(id, pair * 2 + 2)).unwrap();
                fold.offer(raw(id, pair * 2 + 1)).unwrap();
            }
        }
        let footprint = fold.footprint();
        assert_eq!(footprint.held_total, (aggregates * versions as i64 / 2) as u64, "every other event was held");
        assert!(
            footprint.held_peak <= aggregates as u64,
            "the fold kept {} raw events at once for {aggregates} aggregates with one held each: \
             held copies are no longer dropped when applied (memory grows with the partition)",
            footprint.held_peak
        );
        assert_eq!(fold.held(), 0);
        let batch = fold.finish(Position::boundary(5_000));
        assert_eq!(batch.rows.len(), aggregates as usize);
        assert!(batch
            .rows
            .iter()
            .all(|r| r.aggregate_version == versions && r.state.balance == 100 * (versions as i64 - 1)));
        assert_eq!(batch.applied, aggregates * versions as i64);
        assert!(batch.held.is_empty());
    }

    /// Events still held at the end (their predecessor is above the boundary) are returned to
    /// be persisted with the partition, and only those.
    #[test]
    fn events_held_at_the_end_are_returned_with_the_batch() {
        let mut fold = PartitionFold::new(V4, 3, false);
        for v in [1, 3, 2, 5, 6] {
            fold.offer(raw(7, v)).unwrap();
        }
        fold.offer(raw(8, 1)).unwrap();
        assert_eq!(fold.held(), 2, "5 and 6 wait for 4");
        assert_eq!(fold.footprint().held_total, 3);
        let batch = fold.finish(Position::boundary(9));
        let mut held: Vec<_> = batch.held.iter().map(|e| (e.aggregate_id.clone(), e.version)).collect();
        held.sort();
        assert_eq!(held, vec![(7.into(), 5), (7.into(), 6)]);
        assert_eq!(batch.rows.len(), 2);
        assert_eq!(batch.applied, 4);
    }

    #[test]
    #[should_panic(expected = "evicted events were not read back")]
    fn finishing_with_evicted_events_not_read_back_is_refused() {
        let mut fold = PartitionFold::new(V4, 0, false).with_held_limit(Some(4));
        for v in [5, 9, 13, 17, 21, 25] {
            fold.offer(raw(1, v)).unwrap();
        }
        fold.evict_short_runs();
        assert!(fold.evicted_now() > 0);
        fold.finish(Position::boundary(1));
    }

    #[test]
    #[should_panic(expected = "not read back")]
    fn finishing_with_a_spill_not_read_back_is_refused() {
        let mut fold = PartitionFold::new(V4, 0, false).with_held_limit(Some(2));
        for v in (1..=10).rev() {
            fold.offer(raw(1, v)).unwrap();
            if fold.over_limit() {
                fold.defer_to_half();
            }
        }
        let _ = fold.take_spill();
        fold.finish(Position::boundary(1));
    }
}
