//! The held limit: gap lookups that apply late predecessors ahead of the stream, and the
//! aggregates deferred to the spill when what is held stays over half the limit.

use std::collections::{HashMap, HashSet};

use eventlog::RawEvent;
use fold::{AggregateId, Guarded, Projection};
use tracing::debug;

use super::PartitionFold;
use crate::Result;

/// The widest gap a lookup fills (missing versions of one aggregate).
pub const MAX_GAP: i32 = 1_000;

/// A gap is looked up only if the aggregate holds this many times more events than the gap
/// misses: a lookup is for a few late predecessors that hold many, not for reading an
/// aggregate ahead of the stream.
pub const LOOKUP_GAIN: usize = 8;

impl<P: Projection> PartitionFold<P> {
    /// Whether the held limit has been reached.
    pub fn over_limit(&self) -> bool {
        !self.draining && self.held_limit.is_some_and(|limit| self.held_raw.len() >= limit)
    }

    /// The narrow gaps behind the events held right now: per aggregate, the version applied
    /// last and the lowest version held (the versions strictly between are missing), for the
    /// gaps of at most [`MAX_GAP`] versions that hold [`LOOKUP_GAIN`] times as many events as
    /// they miss, narrowest first, until they add up to the held
    /// limit or `MAX_GAP`, whichever is more (what one lookup may read). A wide gap (an aggregate whose early versions
    /// are stored far behind its later ones) is left to the spill: looking it up would read
    /// the aggregate's events ahead of the stream, by index, one by one.
    pub fn gaps(&mut self) -> Vec<(AggregateId, i32, i32)> {
        self.gap_lookups += 1;
        let mut lowest: HashMap<AggregateId, (i32, usize)> = HashMap::new();
        for (id, v) in self.held_raw.keys() {
            let (l, n) = lowest.entry(id.clone()).or_insert((*v, 0));
            *l = (*l).min(*v);
            *n += 1;
        }
        let mut gaps: Vec<(AggregateId, i32, i32)> = lowest
            .into_iter()
            .map(|(id, (v, held))| {
                let after = self.streams.get(&id).map_or(0, Guarded::version);
                (id, after, v, held)
            })
            .filter(|&(_, after, before, held)| {
                let missing = before - after - 1;
                missing <= MAX_GAP && missing as usize * LOOKUP_GAIN <= held
            })
            .map(|(id, after, before, _)| (id, after, before))
            .collect();
        gaps.sort_unstable_by(|a, b| (a.2 - a.1, &a.0).cmp(&(b.2 - b.1, &b.0)));
        let budget = self.held_limit.map_or(i64::MAX, |l| (l as i64).max(i64::from(MAX_GAP)));
        let mut total = 0i64;
        gaps.retain(|&(_, after, before)| {
            total += i64::from(before - after - 1);
            total <= budget
        });
        gaps
    }

    /// Offers an event a gap lookup found in the log (below the same boundary as the stream),
    /// ahead of its place in the stream; the stream's copy will be skipped.
    pub fn offer_fetched(&mut self, raw: RawEvent) -> Result<()> {
        let key = (raw.aggregate_id.clone(), raw.version);
        let current = self.streams.get(&raw.aggregate_id).map_or(0, Guarded::version);
        if raw.version <= current
            || self.deferred.contains(&key.0)
            || self.dead.contains(&key)
            || self.held_raw.contains_key(&key)
        {
            return Ok(());
        }
        if self.unevict(key.clone()) {
            // Its stream copy has passed already: nothing to skip.
            self.refetched += 1;
        } else if !self.prefetched.insert(key.clone()) {
            return Ok(());
        }
        self.fetched += 1;
        self.apply_or_hold(raw)
    }

    /// Whether more than half the limit is held (what a gap lookup tries to get under).
    pub fn over_half_limit(&self) -> bool {
        self.held_limit.is_some_and(|limit| self.held_raw.len() > limit / 2)
    }

    /// If more than half the limit is still held: defers the aggregates holding the most until
    /// at most half is.
    pub fn defer_to_half(&mut self) {
        if let Some(limit) = self.held_limit {
            if self.held_raw.len() > limit / 2 {
                self.defer_largest(limit / 2);
            }
        }
    }

    /// Offers one event read back from the spill (every spilled event, sorted by
    /// `(aggregate_id, version)`, after the partition's own stream has ended). Not counted
    /// again in `events`.
    pub fn offer_spilled(&mut self, raw: RawEvent) -> Result<()> {
        self.draining = true;
        self.apply_or_hold(raw)
    }

    /// Events waiting to be spilled; the caller writes them out.
    pub fn take_spill(&mut self) -> Vec<RawEvent> {
        std::mem::take(&mut self.to_spill)
    }

    /// Evicted events of aggregates deferred since they were evicted, as `(aggregate_id,
    /// version)`: the driver reads them from the log and writes them to the spill.
    pub fn take_spill_refetch(&mut self) -> Vec<(AggregateId, i32)> {
        std::mem::take(&mut self.spill_refetch)
    }

    /// Events waiting to be spilled right now.
    pub fn spill_pending(&self) -> usize {
        self.to_spill.len()
    }

    /// Whether any aggregate was deferred: the spill must be read back before [`finish`].
    ///
    /// [`finish`]: PartitionFold::finish
    pub fn has_spill(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Defers the aggregates holding the most events until at most `keep` are held: their
    /// held events (raw copies, in any order) go to the spill, their streams keep only what
    /// was applied.
    fn defer_largest(&mut self, keep: usize) {
        let mut per_aggregate: HashMap<AggregateId, usize> = HashMap::new();
        for (id, _) in self.held_raw.keys() {
            *per_aggregate.entry(id.clone()).or_default() += 1;
        }
        let mut largest: Vec<(AggregateId, usize)> = per_aggregate.into_iter().collect();
        largest.sort_unstable_by(|a, b| (std::cmp::Reverse(a.1), &a.0).cmp(&(std::cmp::Reverse(b.1), &b.0)));
        let mut held = self.held_raw.len();
        let mut chosen = HashSet::new();
        for (id, n) in largest {
            if held <= keep {
                break;
            }
            held -= n;
            chosen.insert(id);
        }
        let before = self.held_raw.len();
        for (key, raw) in self.held_raw.extract_if(|(id, _), _| chosen.contains(id)) {
            debug_assert_eq!(key.0, raw.aggregate_id);
            self.to_spill.push(raw);
        }
        self.spilled += (before - self.held_raw.len()) as u64;
        for id in &chosen {
            if let Some(stream) = self.streams.get_mut(id) {
                stream.pending.clear();
            }
            if let Some(versions) = self.evicted.remove(id) {
                self.evicted_now -= versions.len();
                self.spilled += versions.len() as u64;
                self.spill_refetch.extend(versions.into_iter().map(|v| (id.clone(), v)));
            }
        }
        debug!(
            partition = self.partition,
            aggregates = chosen.len(),
            events = before - self.held_raw.len(),
            held_now = self.held_raw.len(),
            "held events past the limit: the aggregates holding most of them are deferred to the spill"
        );
        self.deferred.extend(chosen);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fold_bounded, fold_with_limit, raw, sorted_rows};
    use super::*;
    use lab::bank::V4;
    use readmodel::PartitionBatch;

    /// Storage orders far from version order (whole aggregates reversed, random shuffles):
    /// with a held limit the fold never holds more than it, sends the aggregates holding the
    /// most through the spill, and ends with exactly the rows of the unbounded fold.
    #[test]
    fn past_the_held_limit_aggregates_go_through_the_spill_and_the_rows_do_not_change() {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..20 {
            let mut events = Vec::new();
            // Hot aggregates stored newest first: each holds all but one of its events.
            for id in 1..=5i64 {
                events.extend((1..=300).rev().map(|v| raw(id, v)));
            }
            // Cold ones in order, and a shuffled middle.
            for id in 100..400i64 {
                events.extend((1..=4).map(|v| raw(id, v)));
            }
            let mut middle: Vec<RawEvent> = (500..520i64).flat_map(|id| (1..=40).map(move |v| raw(id, v))).collect();
            middle.shuffle(&mut rng);
            events.extend(middle);
            if round > 0 {
                events.shuffle(&mut rng);
            }
            let (unbounded, free) = fold_with_limit(&events, None);
            assert!(free.held_peak > 500, "round {round}: the log should hold much (held at most {})", free.held_peak);
            assert_eq!(free.spilled, 0);
            let limit = [1usize, 7, 64, 250][round % 4];
            let (bounded, footprint) = fold_with_limit(&events, Some(limit));
            assert!(
                footprint.held_peak <= limit as u64,
                "round {round}: held {} at once, limit {limit}",
                footprint.held_peak
            );
            assert!(
                footprint.spilled > 0 && footprint.deferred_aggregates > 0,
                "round {round}: nothing went to the spill"
            );
            assert_eq!(footprint.events, events.len() as u64);
            assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded), "round {round}, limit {limit}: rows differ");
            assert_eq!(bounded.applied, unbounded.applied);
            assert!(bounded.held.is_empty() && bounded.dead_letters.is_empty());

            // With gap lookups first: the same rows, within the limit, every event applied once.
            let (looked_up, footprint) = fold_bounded(&events, Some(limit), true);
            assert!(footprint.held_peak <= limit as u64, "round {round}: held {} with lookups", footprint.held_peak);
            assert_eq!(sorted_rows(&looked_up), sorted_rows(&unbounded), "round {round}: rows differ (lookups)");
            assert_eq!(looked_up.applied, unbounded.applied, "round {round}: an event applied twice or not at all");
        }
    }

    /// Every aggregate's version 1 stored after all its later ones, as behind one late-stored
    /// predecessor: the gap lookup applies the missing version ahead of the stream, which
    /// releases everything held, and nothing goes to the spill.
    #[test]
    fn a_gap_lookup_releases_what_one_late_predecessor_holds_without_spilling() {
        let mut events: Vec<RawEvent> = (2..=300).flat_map(|v| (1..=4i64).map(move |id| raw(id, v))).collect();
        events.extend((1..=4i64).map(|id| raw(id, 1)));
        let (unbounded, free) = fold_with_limit(&events, None);
        assert!(free.held_peak >= 1_000);
        let (bounded, footprint) = fold_bounded(&events, Some(100), true);
        assert!(footprint.held_peak <= 100);
        assert_eq!(footprint.fetched, 4, "one lookup of the four version 1s");
        assert_eq!(footprint.spilled, 0, "gaps a lookup can fill need no spill");
        assert_eq!(footprint.deferred_aggregates, 0);
        assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded));
        assert_eq!(bounded.applied, 4 * 300);
    }

    /// An aggregate whose early versions are stored far behind its later ones (a gap wider
    /// than [`MAX_GAP`]) is not looked up (that would read its events ahead of the stream, one
    /// by one, and hold them all at once): it goes to the spill.
    #[test]
    fn a_gap_wider_than_max_gap_goes_to_the_spill_not_to_lookups() {
        let events: Vec<RawEvent> = (1..=(MAX_GAP * 3)).rev().map(|v| raw(1, v)).collect();
        let (unbounded, _) = fold_with_limit(&events, None);
        let (bounded, footprint) = fold_bounded(&events, Some(100), true);
        assert_eq!(footprint.fetched, 0, "a gap of ~{} versions was looked up", MAX_GAP * 3 - 100);
        assert!(footprint.spilled > 0 && footprint.held_peak <= 100);
        assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded));
    }

    /// A bad event of a deferred aggregate is dead-lettered once (when read back from the
    /// spill), and events still held at the end come back with the batch as without a limit.
    #[test]
    fn a_deferred_aggregate_keeps_its_dead_letters_and_held_events_exact() {
        let mut events: Vec<RawEvent> = (1..=50).rev().map(|v| raw(9, v)).collect();
        events[10].payload = b"{not json".to_vec(); // version 40
        events.push(raw(3, 2)); // its version 1 is never stored: held to the end
        let (unbounded, _) = fold_with_limit(&events, None);
        let held = |b: &PartitionBatch<V4>| {
            let mut h: Vec<_> = b.held.iter().map(|e| (e.aggregate_id.clone(), e.version)).collect();
            h.sort();
            h
        };
        assert_eq!(unbounded.dead_letters.len(), 1);
        assert_eq!(held(&unbounded).len(), 11, "9's versions 41..=50 behind the bad 40, and 3's version 2");
        for lookups in [false, true] {
            let (bounded, footprint) = fold_bounded(&events, Some(4), lookups);
            assert!(footprint.spilled > 0 || footprint.fetched > 0 || footprint.refetched > 0);
            assert_eq!(bounded.dead_letters.len(), 1, "dead-lettered once (lookups: {lookups})");
            assert_eq!(bounded.dead_letters[0].event.version, 40);
            assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded));
            assert_eq!(held(&bounded), held(&unbounded), "lookups: {lookups}");
        }
    }
}
