//! The version guard: apply an event only when it is the next version of its aggregate.
//!
//! Every path that folds (live tail, bulk replay, catch-up, repair, time travel) offers events
//! through [`Guarded::offer`], so "apply twice == apply once" and "a gap waits, never skips" hold
//! in one place rather than in each driver.

use std::collections::BTreeMap;

use crate::projection::{ApplyError, DecodeError, Envelope, Meta, Projection, Row};
use crate::upcast::Payload;

/// What happened to an offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The event (and this many events in all, counting released held ones) were applied.
    Applied(usize),
    /// The event's version is at or below the state's: already applied, nothing changes.
    Duplicate,
    /// The event is ahead of the next version: it waits in `pending` for the gap to fill.
    Held,
}

/// One aggregate's row (state and guard) plus the events that arrived ahead of a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded<P: Projection> {
    pub row: Option<Row<P::State>>,
    pub pending: BTreeMap<i32, Envelope<P::Event>>,
}

impl<P: Projection> Default for Guarded<P> {
    fn default() -> Self {
        Guarded { row: None, pending: BTreeMap::new() }
    }
}

impl<P: Projection> Guarded<P> {
    /// A stream starting from a stored row (or from nothing).
    pub fn new(row: Option<Row<P::State>>) -> Guarded<P> {
        Guarded { row, pending: BTreeMap::new() }
    }

    /// The aggregate version of the last applied event, 0 before the first.
    pub fn version(&self) -> i32 {
        self.row.as_ref().map_or(0, |r| r.aggregate_version)
    }

    /// The projection's state, if any event was applied.
    pub fn state(&self) -> Option<&P::State> {
        self.row.as_ref().map(|r| &r.state)
    }

    /// Offers one event. On an [`ApplyError`] the row is left as it was before the failing
    /// event, and the failing event is not kept.
    pub fn offer(&mut self, projection: &P, event: Envelope<P::Event>) -> Result<Offer, ApplyError> {
        let current = self.version();
        let version = event.meta.aggregate_version;
        if version <= current {
            return Ok(Offer::Duplicate);
        }
        if version > current + 1 {
            return Ok(match self.pending.entry(version) {
                std::collections::btree_map::Entry::Occupied(_) => Offer::Duplicate,
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(event);
                    Offer::Held
                }
            });
        }
        self.step(projection, &event)?;
        let mut applied = 1;
        while let Some(next) = self.pending.remove(&(self.version() + 1)) {
            self.step(projection, &next)?;
            applied += 1;
        }
        Ok(Offer::Applied(applied))
    }

    fn step(&mut self, projection: &P, event: &Envelope<P::Event>) -> Result<(), ApplyError> {
        let (guard, mut state) = match self.row.take() {
            Some(row) => (Some((row.aggregate_id, row.aggregate_version, row.applied_seq)), Some(row.state)),
            None => (None, None),
        };
        let applied = projection.apply_in_place(&mut state, event);
        let row = |(aggregate_id, aggregate_version, applied_seq), state| Row {
            aggregate_id,
            aggregate_version,
            applied_seq,
            state,
        };
        match applied {
            Ok(()) => {
                let next = (event.meta.aggregate_id, event.meta.aggregate_version, event.meta.global_seq);
                self.row = state.map(|state| row(next, state));
                match self.row {
                    Some(_) => Ok(()),
                    None => Err(ApplyError::new(&event.meta, "apply_in_place left no state")),
                }
            }
            Err(e) => {
                // The state as it was (the contract of `apply_in_place`), under its old guard.
                self.row = guard.zip(state).map(|(guard, state)| row(guard, state));
                Err(e)
            }
        }
    }
}

/// Decodes one stored event for `projection`: its type's upcaster chain first, if it has one,
/// then the projection's `decode`. Every path that folds decodes here.
pub fn decode_event<P: Projection>(
    projection: &P,
    meta: Meta,
    event_type: &str,
    payload: &[u8],
) -> Result<Envelope<P::Event>, DecodeError> {
    let body = match projection.upcasters().iter().find(|u| u.event_type == event_type) {
        Some(chain) => projection.decode(event_type, &Payload::Upcast(chain.upcast(payload)?))?,
        None => projection.decode(event_type, &Payload::Stored(payload))?,
    };
    Ok(Envelope { meta, body })
}

/// Folds a list of one aggregate's events (any order, duplicates allowed) from nothing.
/// Returns the stream: its row covers the longest gap-free prefix of versions.
pub fn fold_prefix<P: Projection>(
    projection: &P,
    events: impl IntoIterator<Item = Envelope<P::Event>>,
) -> Result<Guarded<P>, ApplyError> {
    fold_from(projection, None, events)
}

/// Folds events on top of `row` (a snapshot of versions 1..k, or nothing), through the guard:
/// the events at or below k are duplicates. Returns the stream, as [`fold_prefix`] does.
pub fn fold_from<P: Projection>(
    projection: &P,
    row: Option<Row<P::State>>,
    events: impl IntoIterator<Item = Envelope<P::Event>>,
) -> Result<Guarded<P>, ApplyError> {
    let mut stream = Guarded::new(row);
    for event in events {
        stream.offer(projection, event)?;
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Column, ColumnType, Value};
    use chrono::DateTime;
    use proptest::prelude::*;

    /// A projection whose state is the list of amounts in the order applied: any change of
    /// order shows in the state.
    #[derive(Debug, Clone, Copy)]
    struct Ledger;

    impl Projection for Ledger {
        type Event = i64;
        type State = Vec<i64>;
        fn family(&self) -> &'static str {
            "ledger"
        }
        fn name(&self) -> &'static str {
            "l1"
        }
        fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<i64, DecodeError> {
            #[derive(serde::Deserialize)]
            struct Amount {
                n: i64,
            }
            match event_type {
                "amount" => Ok(payload.parse::<Amount>().map_err(|e| DecodeError::malformed(event_type, e))?.n),
                other => Err(DecodeError::UnknownType(other.to_owned())),
            }
        }
        fn apply(&self, state: Option<Vec<i64>>, event: &Envelope<i64>) -> Result<Vec<i64>, ApplyError> {
            if event.body < 0 {
                return Err(ApplyError::new(&event.meta, "negative"));
            }
            let mut s = state.unwrap_or_default();
            s.push(event.body);
            Ok(s)
        }
        fn columns(&self) -> &'static [Column] {
            const C: [Column; 1] = [Column::new("amounts", ColumnType::Text)];
            &C
        }
        fn to_values(&self, state: &Vec<i64>) -> Vec<Value> {
            vec![Value::Text(format!("{state:?}"))]
        }
        fn read_values(&self, _: Vec<Value>) -> Result<Vec<i64>, String> {
            Err("not needed here".into())
        }
    }

    fn history(amounts: &[i64]) -> Vec<Envelope<i64>> {
        amounts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let v = i as i32 + 1;
                Envelope {
                    meta: Meta {
                        global_seq: v as i64 * 10,
                        aggregate_id: 1,
                        aggregate_version: v,
                        ts: DateTime::from_timestamp(v as i64, 0).unwrap(),
                    },
                    body: n,
                }
            })
            .collect()
    }

    #[test]
    fn a_gap_holds_and_then_releases() {
        let events = history(&[3, 4, 5]);
        let mut s = Guarded::default();
        assert_eq!(s.offer(&Ledger, events[2].clone()), Ok(Offer::Held));
        assert_eq!(s.offer(&Ledger, events[0].clone()), Ok(Offer::Applied(1)));
        assert_eq!(s.version(), 1, "version 3 must wait for version 2");
        assert_eq!(s.offer(&Ledger, events[1].clone()), Ok(Offer::Applied(2)));
        assert_eq!(s.offer(&Ledger, events[1].clone()), Ok(Offer::Duplicate));
        assert_eq!(s.version(), 3);
        assert_eq!(s.state(), Some(&vec![3, 4, 5]));
        let row = s.row.as_ref().unwrap();
        assert_eq!((row.aggregate_id, row.applied_seq), (1, 30), "the guard columns follow the last event");
        assert!(s.pending.is_empty());
    }

    #[test]
    fn a_refused_event_leaves_the_row_as_it_was() {
        let events = history(&[3, -1]);
        let mut s = Guarded::default();
        s.offer(&Ledger, events[0].clone()).unwrap();
        let e = s.offer(&Ledger, events[1].clone()).unwrap_err();
        assert_eq!(e.to_string(), "aggregate 1 version 2: negative");
        assert_eq!((s.version(), s.state()), (1, Some(&vec![3])));
    }

    #[test]
    fn decode_event_names_unknown_types_and_bad_payloads() {
        let meta = history(&[1])[0].meta;
        assert_eq!(decode_event(&Ledger, meta, "amount", br#"{"n":7}"#).unwrap().body, 7);
        assert_eq!(
            decode_event(&Ledger, meta, "teleported", b"{}"),
            Err(DecodeError::UnknownType("teleported".into()))
        );
        let bad = decode_event(&Ledger, meta, "amount", b"{}").unwrap_err();
        assert!(bad.to_string().starts_with("malformed amount payload: missing field `n`"), "{bad}");
    }

    proptest! {
        /// Any order, with any events offered twice, folds to the in-order state.
        #[test]
        fn any_order_with_duplicates_equals_in_order(
            amounts in proptest::collection::vec(0i64..1000, 0..40),
            seed in any::<u64>(),
            dup_every in 1usize..5,
        ) {
            let events = history(&amounts);
            let in_order = fold_prefix(&Ledger, events.clone()).unwrap();
            let mut shuffled = events.clone();
            for e in events.iter().step_by(dup_every) {
                shuffled.push(e.clone());
            }
            // A deterministic Fisher-Yates driven by the seed keeps the test reproducible.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let any_order = fold_prefix(&Ledger, shuffled).unwrap();
            prop_assert_eq!(&any_order.row, &in_order.row);
            prop_assert_eq!(in_order.state().cloned().unwrap_or_default(), amounts);
            prop_assert!(any_order.pending.is_empty());
        }

        /// Folding the rest of the events on top of the row after a prefix (a snapshot)
        /// equals folding everything from nothing, even when the prefix's events are offered
        /// again.
        #[test]
        fn folding_from_a_prefix_row_equals_folding_from_nothing(
            amounts in proptest::collection::vec(0i64..1000, 0..40),
            cut in 0usize..41,
        ) {
            let events = history(&amounts);
            let cut = cut.min(events.len());
            let prefix = fold_prefix(&Ledger, events[..cut].to_vec()).unwrap();
            let whole = fold_prefix(&Ledger, events.clone()).unwrap();
            let rest = fold_from(&Ledger, prefix.row.clone(), events[cut..].to_vec()).unwrap();
            prop_assert_eq!(&rest.row, &whole.row);
            let again = fold_from(&Ledger, prefix.row, events).unwrap();
            prop_assert_eq!(again.row, whole.row);
        }

        /// Dropping one event leaves exactly the prefix before it applied; nothing past the gap.
        #[test]
        fn a_missing_version_is_never_skipped(amounts in proptest::collection::vec(0i64..1000, 2..30), drop_at in 1usize..30) {
            let events = history(&amounts);
            let drop_at = drop_at % (events.len() - 1) + 1;
            let with_gap: Vec<_> = events.iter().enumerate().filter(|(i, _)| *i != drop_at).map(|(_, e)| e.clone()).collect();
            let s = fold_prefix(&Ledger, with_gap).unwrap();
            let prefix = fold_prefix(&Ledger, events[..drop_at].to_vec()).unwrap();
            prop_assert_eq!(s.row, prefix.row);
            prop_assert_eq!(s.pending.len(), events.len() - drop_at - 1);
        }
    }
}
