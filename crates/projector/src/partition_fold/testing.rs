//! Test helpers of the fold: events of the bank, and a fold driven as the spill's driver
//! drives it.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use eventlog::{Position, RawEvent};
use fold::AggregateId;
use lab::bank::V4;
use readmodel::PartitionBatch;

use super::{FoldFootprint, PartitionFold, EVICTED_PER_HELD};
use crate::spill::MAX_LOOKUP_ROUNDS;

pub(super) fn raw(aggregate_id: i64, version: i32) -> RawEvent {
    let (event_type, payload) = if version == 1 {
        ("account_opened", r#"{"owner":"o","currency":"EUR"}"#)
    } else {
        ("deposited", r#"{"amount_cents":100}"#)
    };
    RawEvent {
        global_seq: aggregate_id * 1_000_000 + version as i64,
        aggregate_id: aggregate_id.into(),
        version,
        event_type: event_type.to_owned(),
        ts: Utc.timestamp_opt(1_700_000_000 + version as i64, 0).unwrap(),
        payload: payload.as_bytes().to_vec(),
        tx_id: 1000 + version as i64,
    }
}

/// Reads evicted events back from `log` as [`crate::spill::Spiller`] does (sorted, as its
/// query returns them).
pub(super) fn read_back(
    fold: &mut PartitionFold<V4>,
    log: &HashMap<(AggregateId, i32), &RawEvent>,
    mut keys: Vec<(AggregateId, i32)>,
) {
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
pub(super) fn fold_bounded(
    events: &[RawEvent],
    limit: Option<usize>,
    lookups: bool,
) -> (PartitionBatch<V4>, FoldFootprint) {
    let log: HashMap<(AggregateId, i32), &RawEvent> =
        events.iter().map(|e| ((e.aggregate_id.clone(), e.version), e)).collect();
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
                        if let Some(found) = log.get(&(id.clone(), v)) {
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
    spill.sort_by(|a, b| (&a.aggregate_id, a.version).cmp(&(&b.aggregate_id, b.version)));
    for e in spill {
        fold.offer_spilled(e).unwrap();
    }
    let footprint = fold.footprint();
    (fold.finish(Position::boundary(1 << 40)), footprint)
}

pub(super) fn fold_with_limit(events: &[RawEvent], limit: Option<usize>) -> (PartitionBatch<V4>, FoldFootprint) {
    fold_bounded(events, limit, false)
}

pub(super) fn sorted_rows(batch: &PartitionBatch<V4>) -> Vec<fold::Row<lab::bank::Account>> {
    let mut rows = batch.rows.clone();
    rows.sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
    rows
}
