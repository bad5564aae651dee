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

use std::collections::HashMap;

use eventlog::{Position, RawEvent};
use fold::{Guarded, Offer, Projection};
use readmodel::{DeadLetter, PartitionBatch};

use crate::error::{BadEvent, Error};
use crate::Result;
use tracing::warn;

/// The fold of one partition in progress.
pub struct PartitionFold<P: Projection> {
    projection: P,
    partition: u32,
    quarantine: bool,
    streams: HashMap<i64, Guarded<P>>,
    /// Raw events the guard holds right now, by `(aggregate_id, version)`.
    held_raw: HashMap<(i64, i32), RawEvent>,
    dead_letters: Vec<DeadLetter>,
    applied: i64,
    events: u64,
    held_total: u64,
    held_peak: usize,
}

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
        }
    }

    /// Offers one event of the partition, in any order.
    pub fn offer(&mut self, raw: RawEvent) -> Result<()> {
        self.events += 1;
        let event = match raw.decode(&self.projection) {
            Ok(e) => e,
            Err(e) if self.quarantine => {
                warn!(bad = %self.bad_event(e.to_string(), &raw), "event dead-lettered, aggregate quarantined");
                self.dead_letters.push(DeadLetter { partition: self.partition, event: raw, error: e.to_string() });
                return Ok(());
            }
            Err(e) => return Err(self.bad(e.to_string(), &raw)),
        };
        let stream = self.streams.entry(raw.aggregate_id).or_default();
        let before = stream.version();
        let had_held = !stream.pending.is_empty();
        let outcome = stream.offer(&self.projection, event);
        let after = stream.version();
        if had_held && after > before + 1 {
            // The guard applied held events behind this one: their raw copies go too.
            for v in before + 2..=after {
                self.held_raw.remove(&(raw.aggregate_id, v));
            }
        }
        match outcome {
            Ok(Offer::Applied(n)) => self.applied += n as i64,
            Ok(Offer::Held) => {
                self.held_total += 1;
                self.held_raw.insert((raw.aggregate_id, raw.version), raw);
                self.held_peak = self.held_peak.max(self.held_raw.len());
            }
            Ok(Offer::Duplicate) => {}
            Err(e) if self.quarantine => {
                warn!(bad = %self.bad_event(e.to_string(), &raw), "event dead-lettered, aggregate quarantined");
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
            aggregate_id: raw.aggregate_id,
            version: raw.version,
            reason,
        }
    }

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
        }
    }

    /// The partition's batch: one row per aggregate with state, the events still held (to be
    /// persisted with the rows), the dead letters, and `position`.
    pub fn finish(mut self, position: Position) -> PartitionBatch<P> {
        let mut rows = Vec::with_capacity(self.streams.len());
        let mut held = Vec::with_capacity(self.held_raw.len());
        for (id, stream) in self.streams {
            for v in stream.pending.keys() {
                if let Some(raw) = self.held_raw.remove(&(id, *v)) {
                    held.push(raw);
                }
            }
            if let Some(row) = stream.row {
                rows.push(row);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use lab::bank::V4;

    fn raw(aggregate_id: i64, version: i32) -> RawEvent {
        let (event_type, payload) = if version == 1 {
            ("account_opened", r#"{"owner":"o","currency":"EUR"}"#)
        } else {
            ("deposited", r#"{"amount_cents":100}"#)
        };
        RawEvent {
            global_seq: aggregate_id * 1_000_000 + version as i64,
            aggregate_id,
            version,
            event_type: event_type.to_owned(),
            ts: Utc.timestamp_opt(1_700_000_000 + version as i64, 0).unwrap(),
            payload: payload.as_bytes().to_vec(),
            tx_id: 1000 + version as i64,
        }
    }

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
        let mut held: Vec<_> = batch.held.iter().map(|e| (e.aggregate_id, e.version)).collect();
        held.sort();
        assert_eq!(held, vec![(7, 5), (7, 6)]);
        assert_eq!(batch.rows.len(), 2);
        assert_eq!(batch.applied, 4);
    }
}
