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
use fold::{Guarded, Offer, Projection};
use readmodel::{DeadLetter, PartitionBatch};

use crate::error::{BadEvent, Error};
use crate::Result;
use tracing::{debug, warn};

/// The widest gap a lookup fills (missing versions of one aggregate).
pub const MAX_GAP: i32 = 1_000;

/// A gap is looked up only if the aggregate holds this many times more events than the gap
/// misses: a lookup is for a few late predecessors that hold many, not for reading an
/// aggregate ahead of the stream.
pub const LOOKUP_GAIN: usize = 8;

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
    /// Defer aggregates once more events than this are held.
    held_limit: Option<usize>,
    /// Aggregates whose events go to the spill until the partition has been read.
    deferred: HashSet<i64>,
    /// Events on their way to the spill (taken by [`PartitionFold::take_spill`]).
    to_spill: Vec<RawEvent>,
    spilled: u64,
    /// The spill is being read back: nothing is deferred any more.
    draining: bool,
    /// Events applied (or dead-lettered) ahead of the stream by a gap lookup: their copy in
    /// the stream is skipped when it comes.
    prefetched: HashSet<(i64, i32)>,
    /// Events dead-lettered: a gap lookup does not offer them again.
    dead: HashSet<(i64, i32)>,
    fetched: u64,
    gap_lookups: u64,
    /// Held events dropped from memory at the limit, by aggregate: read back from the log when
    /// the aggregate's stream reaches them (their copies in the stream have passed).
    evicted: HashMap<i64, BTreeSet<i32>>,
    evicted_now: usize,
    evicted_total: u64,
    refetched: u64,
    /// Aggregates whose stream has reached an evicted version.
    wanted: Vec<i64>,
    /// Evicted events of aggregates deferred since: the driver reads them from the log into
    /// the spill, where the rest of their aggregate's events are.
    spill_refetch: Vec<(i64, i32)>,
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

    /// Offers one event of the partition, in any order.
    pub fn offer(&mut self, raw: RawEvent) -> Result<()> {
        self.events += 1;
        // Both sets are empty unless a fold reached its limit: no hashing per event then.
        if !self.prefetched.is_empty() && self.prefetched.remove(&(raw.aggregate_id, raw.version)) {
            return Ok(());
        }
        if !self.draining && !self.deferred.is_empty() && self.deferred.contains(&raw.aggregate_id) {
            self.spilled += 1;
            self.to_spill.push(raw);
            return Ok(());
        }
        self.apply_or_hold(raw)
    }

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
    pub fn gaps(&mut self) -> Vec<(i64, i32, i32)> {
        self.gap_lookups += 1;
        let mut lowest: HashMap<i64, (i32, usize)> = HashMap::new();
        for (id, v) in self.held_raw.keys() {
            let (l, n) = lowest.entry(*id).or_insert((*v, 0));
            *l = (*l).min(*v);
            *n += 1;
        }
        let mut gaps: Vec<(i64, i32, i32)> = lowest
            .into_iter()
            .map(|(id, (v, held))| (id, self.streams.get(&id).map_or(0, Guarded::version), v, held))
            .filter(|&(_, after, before, held)| {
                let missing = before - after - 1;
                missing <= MAX_GAP && missing as usize * LOOKUP_GAIN <= held
            })
            .map(|(id, after, before, _)| (id, after, before))
            .collect();
        gaps.sort_unstable_by_key(|&(id, after, before)| (before - after, id));
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
        let key = (raw.aggregate_id, raw.version);
        let current = self.streams.get(&raw.aggregate_id).map_or(0, Guarded::version);
        if raw.version <= current
            || self.deferred.contains(&key.0)
            || self.dead.contains(&key)
            || self.held_raw.contains_key(&key)
        {
            return Ok(());
        }
        if self.unevict(key) {
            // Its stream copy has passed already: nothing to skip.
            self.refetched += 1;
        } else if !self.prefetched.insert(key) {
            return Ok(());
        }
        self.fetched += 1;
        self.apply_or_hold(raw)
    }

    /// Evicts held events in runs of at most [`EVICT_RUN`] consecutive versions, farthest from
    /// their aggregate's applied version first, until at most half the limit is held (or
    /// [`EVICTED_PER_HELD`] times the limit are evicted): their raw copies are dropped, their
    /// keys kept until they are read back.
    pub fn evict_short_runs(&mut self) {
        let Some(limit) = self.held_limit else { return };
        if self.held_raw.len() <= limit / 2 {
            return;
        }
        let mut keys: Vec<(i64, i32)> = self.held_raw.keys().copied().collect();
        keys.sort_unstable();
        // (distance from the applied version, aggregate, first version, length) of each run.
        let mut runs: Vec<(i32, i64, i32, usize)> = Vec::new();
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
        runs.sort_unstable_by_key(|r| (std::cmp::Reverse(r.0), r.1, r.2));
        let mut evicted = 0;
        for (_, id, first, len) in runs {
            if self.held_raw.len() <= limit / 2 || self.evicted_now + evicted + len > limit * EVICTED_PER_HELD {
                break;
            }
            let stream = self.streams.get_mut(&id).expect("a held event has a stream");
            let versions = self.evicted.entry(id).or_default();
            for v in first..first + len as i32 {
                self.held_raw.remove(&(id, v));
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

    /// Evicted events of aggregates deferred since they were evicted, as `(aggregate_id,
    /// version)`: the driver reads them from the log and writes them to the spill.
    pub fn take_spill_refetch(&mut self) -> Vec<(i64, i32)> {
        std::mem::take(&mut self.spill_refetch)
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
    pub fn take_wanted(&mut self) -> Vec<(i64, i32)> {
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
                keys.push((id, v));
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
    pub fn take_all_evicted(&mut self) -> Vec<(i64, i32)> {
        let keys: Vec<(i64, i32)> =
            self.evicted.drain().flat_map(|(id, versions)| versions.into_iter().map(move |v| (id, v))).collect();
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
    fn unevict(&mut self, key: (i64, i32)) -> bool {
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
        let mut per_aggregate: HashMap<i64, usize> = HashMap::new();
        for (id, _) in self.held_raw.keys() {
            *per_aggregate.entry(*id).or_default() += 1;
        }
        let mut largest: Vec<(i64, usize)> = per_aggregate.into_iter().collect();
        largest.sort_unstable_by_key(|&(id, n)| (std::cmp::Reverse(n), id));
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
                self.spill_refetch.extend(versions.into_iter().map(|v| (*id, v)));
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

    fn apply_or_hold(&mut self, raw: RawEvent) -> Result<()> {
        let event = match raw.decode(&self.projection) {
            Ok(e) => e,
            Err(e) if self.quarantine => {
                warn!(bad = %self.bad_event(e.to_string(), &raw), "event dead-lettered, aggregate quarantined");
                self.dead.insert((raw.aggregate_id, raw.version));
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
            Ok(Offer::Applied(n)) => {
                self.applied += n as i64;
                // Skipped while nothing is evicted: no hashing per event then.
                if !self.evicted.is_empty()
                    && self.evicted.get(&raw.aggregate_id).and_then(|v| v.first()) == Some(&(after + 1))
                {
                    self.wanted.push(raw.aggregate_id);
                }
            }
            Ok(Offer::Held) => {
                self.held_total += 1;
                self.held_raw.insert((raw.aggregate_id, raw.version), raw);
                self.held_peak = self.held_peak.max(self.held_raw.len());
            }
            Ok(Offer::Duplicate) => {}
            Err(e) if self.quarantine => {
                warn!(bad = %self.bad_event(e.to_string(), &raw), "event dead-lettered, aggregate quarantined");
                self.dead.insert((raw.aggregate_id, raw.version));
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

    /// The partition's batch: one row per aggregate with state, the events still held (to be
    /// persisted with the rows), the dead letters, and `position`.
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
    use crate::spill::MAX_LOOKUP_ROUNDS;
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

    /// Reads evicted events back from `log` as [`crate::spill::Spiller`] does (sorted, as its
    /// query returns them).
    fn read_back(fold: &mut PartitionFold<V4>, log: &HashMap<(i64, i32), &RawEvent>, mut keys: Vec<(i64, i32)>) {
        keys.sort();
        for key in keys {
            fold.offer_refetched(log[&key].clone()).unwrap();
        }
    }

    /// Folds `events` with `limit` as [`crate::spill::Spiller`] drives it: evicted events read
    /// back when their stream reaches them; at the limit, gap lookups in `events` itself (the
    /// log) and evictions when `lookups`, then deferral; evicted events left at the end read
    /// back, then the spill, through a sorted vector as through the spill table (`ORDER BY
    /// aggregate_id, version`).
    fn fold_bounded(events: &[RawEvent], limit: Option<usize>, lookups: bool) -> (PartitionBatch<V4>, FoldFootprint) {
        let log: HashMap<(i64, i32), &RawEvent> = events.iter().map(|e| ((e.aggregate_id, e.version), e)).collect();
        let mut fold = PartitionFold::new(V4, 0, true).with_held_limit(limit);
        let mut spill = Vec::new();
        for e in events {
            fold.offer(e.clone()).unwrap();
            while fold.has_wanted() {
                let keys = fold.take_wanted();
                read_back(&mut fold, &log, keys);
            }
            if fold.over_limit() {
                for _ in 0..if lookups { MAX_LOOKUP_ROUNDS } else { 0 } {
                    let mut gaps = fold.gaps();
                    gaps.sort();
                    let before = fold.footprint().fetched;
                    for (id, after, first_held) in gaps {
                        for v in after + 1..first_held {
                            if let Some(found) = log.get(&(id, v)) {
                                fold.offer_fetched((*found).clone()).unwrap();
                            }
                        }
                    }
                    if fold.footprint().fetched == before || !fold.over_half_limit() {
                        break;
                    }
                }
                if lookups {
                    fold.evict_short_runs();
                }
                fold.defer_to_half();
                spill.extend(fold.take_spill_refetch().iter().map(|key| log[key].clone()));
            }
            assert!(fold.held() < limit.unwrap_or(usize::MAX), "held {} at the limit", fold.held());
            assert!(fold.evicted_now() <= limit.unwrap_or(0) * EVICTED_PER_HELD, "{} evicted", fold.evicted_now());
            spill.extend(fold.take_spill());
        }
        let evicted = fold.take_all_evicted();
        read_back(&mut fold, &log, evicted);
        spill.sort_by_key(|e| (e.aggregate_id, e.version));
        for e in spill {
            fold.offer_spilled(e).unwrap();
        }
        let footprint = fold.footprint();
        (fold.finish(Position::boundary(1 << 40)), footprint)
    }

    fn fold_with_limit(events: &[RawEvent], limit: Option<usize>) -> (PartitionBatch<V4>, FoldFootprint) {
        fold_bounded(events, limit, false)
    }

    fn sorted_rows(batch: &PartitionBatch<V4>) -> Vec<fold::Row<lab::bank::Account>> {
        let mut rows = batch.rows.clone();
        rows.sort_by_key(|r| r.aggregate_id);
        rows
    }

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
            let mut h: Vec<_> = b.held.iter().map(|e| (e.aggregate_id, e.version)).collect();
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
            .filter(|&i| events[i].aggregate_id == 1 && events[i].version % 10 == 5 && i >= 2_000)
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
            let mut h: Vec<_> = b.held.iter().map(|e| (e.aggregate_id, e.version)).collect();
            h.sort();
            h
        };
        assert_eq!(held(&unbounded).len(), 100);
        assert_eq!(held(&bounded), held(&unbounded));
        assert_eq!(sorted_rows(&bounded), sorted_rows(&unbounded));
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
