//! Eviction at the held limit: short runs of held events dropped from memory, their keys kept,
//! and read back from the log when the aggregate's stream reaches them.

use eventlog::RawEvent;
use fold::{AggregateId, Guarded, Projection};
use tracing::debug;

use super::PartitionFold;
use crate::Result;

/// Runs of at most this many consecutive held versions are evicted at the limit (events
/// stored ahead of their place); longer runs wait behind a predecessor stored late, and go to
/// the spill with their aggregate.
pub const EVICT_RUN: usize = 8;

/// Evicted keys kept at most, as a multiple of the held limit (~40 B each against ~400 B for a
/// held event): past it, what is held goes to the spill.
pub const EVICTED_PER_HELD: usize = 10;

/// When a stream reaches an evicted version, the evicted versions of its aggregate up to this
/// many versions ahead are read back in the same query.
pub const REFETCH_WINDOW: i32 = 4_096;

impl<P: Projection> PartitionFold<P> {
    /// Evicts held events in runs of at most [`EVICT_RUN`] consecutive versions, farthest from
    /// their aggregate's applied version first, until at most half the limit is held (or
    /// [`EVICTED_PER_HELD`] times the limit are evicted): their raw copies are dropped, their
    /// keys kept until they are read back.
    pub fn evict_short_runs(&mut self) {
        let Some(limit) = self.held_limit else { return };
        if self.held_raw.len() <= limit / 2 {
            return;
        }
        let mut keys: Vec<(AggregateId, i32)> = self.held_raw.keys().cloned().collect();
        keys.sort_unstable();
        // (distance from the applied version, aggregate, first version, length) of each run.
        let mut runs: Vec<(i32, AggregateId, i32, usize)> = Vec::new();
        for (id, v) in keys {
            match runs.last_mut() {
                Some((_, rid, first, len)) if *rid == id && *first + *len as i32 == v => *len += 1,
                _ => {
                    let applied = self.streams.get(&id).map_or(0, Guarded::version);
                    runs.push((v - applied, id, v, 1));
                }
            }
        }
        runs.retain(|r| r.3 <= EVICT_RUN);
        runs.sort_unstable_by(|a, b| (std::cmp::Reverse(a.0), &a.1, a.2).cmp(&(std::cmp::Reverse(b.0), &b.1, b.2)));
        let mut evicted = 0;
        for (_, id, first, len) in runs {
            if self.held_raw.len() <= limit / 2 || self.evicted_now + evicted + len > limit * EVICTED_PER_HELD {
                break;
            }
            let stream = self.streams.get_mut(&id).expect("a held event has a stream");
            let versions = self.evicted.entry(id.clone()).or_default();
            for v in first..first + len as i32 {
                self.held_raw.remove(&(id.clone(), v));
                stream.pending.remove(&v);
                versions.insert(v);
            }
            evicted += len;
        }
        self.evicted_now += evicted;
        self.evicted_total += evicted as u64;
        if evicted > 0 {
            debug!(
                partition = self.partition,
                evicted,
                held_now = self.held_raw.len(),
                "held events past the limit: short runs of later versions evicted, to be read back"
            );
        }
    }

    /// Whether a stream has reached an evicted version (the driver reads it back now).
    pub fn has_wanted(&self) -> bool {
        !self.wanted.is_empty()
    }

    /// The evicted events to read back now, as `(aggregate_id, version)`: for each aggregate
    /// whose stream reached one, that one and the next evicted versions up to
    /// [`REFETCH_WINDOW`] ahead, as many as half the room left under the limit allows (those
    /// past the stream are held until it reaches them). Taken, they are no longer evicted and
    /// must be offered back through [`PartitionFold::offer_refetched`].
    pub fn take_wanted(&mut self) -> Vec<(AggregateId, i32)> {
        let held = self.held_raw.len();
        let mut room = self.held_limit.map_or(usize::MAX, |limit| limit.saturating_sub(held) / 2);
        let mut keys = Vec::new();
        for id in std::mem::take(&mut self.wanted) {
            let applied = self.streams.get(&id).map_or(0, Guarded::version);
            let Some(versions) = self.evicted.get_mut(&id) else { continue };
            let ahead: Vec<i32> = versions.range(..=applied + REFETCH_WINDOW).copied().collect();
            for (i, v) in ahead.into_iter().enumerate() {
                // The first is the stream's next version: always, or it would stall.
                if i > 0 && room == 0 {
                    break;
                }
                room = room.saturating_sub(1);
                versions.remove(&v);
                keys.push((id.clone(), v));
            }
            if versions.is_empty() {
                self.evicted.remove(&id);
            }
        }
        self.evicted_now -= keys.len();
        keys
    }

    /// Every event still evicted (the partition's stream has ended), taken as
    /// [`PartitionFold::take_wanted`] takes them.
    pub fn take_all_evicted(&mut self) -> Vec<(AggregateId, i32)> {
        let keys: Vec<(AggregateId, i32)> = self
            .evicted
            .drain()
            .flat_map(|(id, versions)| versions.into_iter().map(move |v| (id.clone(), v)))
            .collect();
        self.evicted_now = 0;
        self.wanted.clear();
        keys
    }

    /// Offers an evicted event read back from the log.
    pub fn offer_refetched(&mut self, raw: RawEvent) -> Result<()> {
        self.refetched += 1;
        self.apply_or_hold(raw)
    }

    /// Removes `key` from the evicted set; whether it was there.
    pub(super) fn unevict(&mut self, key: (AggregateId, i32)) -> bool {
        let Some(versions) = self.evicted.get_mut(&key.0) else { return false };
        if !versions.remove(&key.1) {
            return false;
        }
        if versions.is_empty() {
            self.evicted.remove(&key.0);
        }
        self.evicted_now -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fold_bounded, fold_with_limit, raw, sorted_rows};
    use super::*;
    use lab::bank::V4;
    use readmodel::PartitionBatch;

    /// A hot aggregate whose every tenth version is stored 2,000 events ahead of its place (as
    /// PostgreSQL puts later rows in the free space of earlier pages), beside cold aggregates
    /// in order: each such event holds nothing behind it, but ~100 wait at once. With a limit
    /// of 40 they are evicted and read back when the stream reaches them: within the limit,
    /// nothing through the spill, every evicted event read back once, the unbounded fold's rows.
    #[test]
    fn later_versions_stored_ahead_are_evicted_and_read_back_not_spilled() {
        let mut events: Vec<RawEvent> = Vec::new();
        for v in 1..=5_000 {
            events.push(raw(1, v));
            events.push(raw(1_000 + i64::from(v), 1));
        }
        let ahead: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].aggregate_id == 1.into() && events[i].version % 10 == 5 && i >= 2_000)
            .collect();
        for &i in &ahead {
            let e = events.remove(i);
            events.insert(i - 2_000, e);
        }
        let (unbounded, free) = fold_with_limit(&events, None);
        assert!(free.held_peak > 80, "the log should hold ~100 at once, held {}", free.held_peak);
        let (bounded, footprint) = fold_bounded(&events, Some(40), true);
        assert!(footprint.held_peak <= 40, "held {} at once", footprint.held_peak);
        assert_eq!((footprint.spilled, footprint.deferred_aggregates), (0, 0), "nothing needs the spill");
        assert!(footprint.evicted > 0, "nothing was evicted");
        assert_eq!(footprint.refetched, footprint.evicted, "every evicted event read back once");
        assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded));
        assert_eq!(bounded.applied, unbounded.applied);
        assert_eq!(bounded.applied, 10_000);
    }

    /// An evicted event whose predecessor never comes (above the boundary) is read back at
    /// the end and returned held with the batch, as without a limit.
    #[test]
    fn evicted_events_behind_a_missing_version_come_back_held() {
        let mut events: Vec<RawEvent> = (1..=200).filter(|&v| v != 100).map(|v| raw(1, v)).collect();
        // 150..=152 stored first, 100 never: 101..=200 wait to the end.
        let early: Vec<RawEvent> = events.iter().filter(|e| (150..=152).contains(&e.version)).cloned().collect();
        events.retain(|e| !(150..=152).contains(&e.version));
        events.splice(0..0, early);
        let (unbounded, _) = fold_with_limit(&events, None);
        let (bounded, footprint) = fold_bounded(&events, Some(6), true);
        assert!(footprint.evicted > 0);
        let held = |b: &PartitionBatch<V4>| {
            let mut h: Vec<_> = b.held.iter().map(|e| (e.aggregate_id.clone(), e.version)).collect();
            h.sort();
            h
        };
        assert_eq!(held(&unbounded).len(), 100);
        assert_eq!(held(&bounded), held(&unbounded));
        assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded));
    }
}
