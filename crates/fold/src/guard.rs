//! The version guard: apply an event only when it is the next version of its aggregate.
//!
//! Every path that folds (live tail, bulk replay, catch-up, repair, time travel) offers events
//! through [`Stream::offer`], so "apply twice == apply once" and "a gap waits, never skips" hold
//! in one place rather than in each driver.

use std::collections::BTreeMap;

use crate::account::Account;
use crate::event::Event;
use crate::projection::{ApplyError, Projection};

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

/// One aggregate's state plus the events that arrived ahead of a gap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    pub state: Option<Account>,
    pub pending: BTreeMap<i32, Event>,
}

impl Stream {
    /// A stream starting from a stored row (or from nothing).
    pub fn new(state: Option<Account>) -> Stream {
        Stream { state, pending: BTreeMap::new() }
    }

    /// The version of the last applied event, 0 before the first.
    pub fn version(&self) -> i32 {
        self.state.as_ref().map_or(0, |a| a.version)
    }

    /// Offers one event. On an [`ApplyError`] the state is left as it was before the failing
    /// event, and the failing event is not kept.
    pub fn offer(&mut self, projection: Projection, event: Event) -> Result<Offer, ApplyError> {
        let current = self.version();
        if event.version <= current {
            return Ok(Offer::Duplicate);
        }
        if event.version > current + 1 {
            return Ok(match self.pending.entry(event.version) {
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

    fn step(&mut self, projection: Projection, event: &Event) -> Result<(), ApplyError> {
        let next = projection.apply(self.state.clone(), event)?;
        self.state = Some(next);
        Ok(())
    }
}

/// Folds a list of one aggregate's events (any order, duplicates allowed) from nothing.
/// Returns the stream: its state covers the longest gap-free prefix of versions.
pub fn fold_prefix(projection: Projection, events: impl IntoIterator<Item = Event>) -> Result<Stream, ApplyError> {
    fold_from(projection, None, events)
}

/// Folds events on top of `state` (a snapshot of versions 1..k, or nothing), through the guard:
/// the events at or below k are duplicates. Returns the stream, as [`fold_prefix`] does.
pub fn fold_from(
    projection: Projection,
    state: Option<Account>,
    events: impl IntoIterator<Item = Event>,
) -> Result<Stream, ApplyError> {
    let mut stream = Stream::new(state);
    for event in events {
        stream.offer(projection, event)?;
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use chrono::DateTime;
    use proptest::prelude::*;

    fn history(amounts: &[i64]) -> Vec<Event> {
        let mut events = vec![Event {
            global_seq: 1,
            aggregate_id: 1,
            version: 1,
            ts: DateTime::from_timestamp(0, 0).unwrap(),
            body: EventBody::AccountOpened { owner: "o".into(), currency: "EUR".into() },
        }];
        for (i, &a) in amounts.iter().enumerate() {
            let body = match a % 3 {
                0 => EventBody::Deposited { amount_cents: a.abs() + 1 },
                1 => EventBody::Withdrew { amount_cents: a.abs() + 1 },
                _ => EventBody::FeeCharged { top_level_cents: None, nested_cents: Some(a.abs() + 1) },
            };
            let v = i as i32 + 2;
            events.push(Event {
                global_seq: v as i64 * 10,
                aggregate_id: 1,
                version: v,
                ts: DateTime::from_timestamp(v as i64, 0).unwrap(),
                body,
            });
        }
        events
    }

    #[test]
    fn a_gap_holds_and_then_releases() {
        let events = history(&[3, 4, 5]);
        let mut s = Stream::default();
        assert_eq!(s.offer(Projection::V4, events[2].clone()), Ok(Offer::Held));
        assert_eq!(s.offer(Projection::V4, events[0].clone()), Ok(Offer::Applied(1)));
        assert_eq!(s.version(), 1, "version 3 must wait for version 2");
        assert_eq!(s.offer(Projection::V4, events[1].clone()), Ok(Offer::Applied(2)));
        assert_eq!(s.offer(Projection::V4, events[1].clone()), Ok(Offer::Duplicate));
        assert_eq!(s.version(), 3);
        assert!(s.pending.is_empty());
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
            let in_order = fold_prefix(Projection::V4, events.clone()).unwrap();
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
            let any_order = fold_prefix(Projection::V4, shuffled).unwrap();
            prop_assert_eq!(any_order.state, in_order.state);
            prop_assert!(any_order.pending.is_empty());
        }

        /// Folding the rest of the events on top of the state after a prefix (a snapshot)
        /// equals folding everything from nothing, even when the prefix's events are offered
        /// again.
        #[test]
        fn folding_from_a_prefix_state_equals_folding_from_nothing(
            amounts in proptest::collection::vec(0i64..1000, 0..40),
            cut in 0usize..41,
        ) {
            let events = history(&amounts);
            let cut = cut.min(events.len());
            let prefix = fold_prefix(Projection::V4, events[..cut].to_vec()).unwrap();
            let whole = fold_prefix(Projection::V4, events.clone()).unwrap();
            let rest = fold_from(Projection::V4, prefix.state.clone(), events[cut..].to_vec()).unwrap();
            prop_assert_eq!(&rest.state, &whole.state);
            let again = fold_from(Projection::V4, prefix.state, events).unwrap();
            prop_assert_eq!(again.state, whole.state);
        }

        /// Dropping one event leaves exactly the prefix before it applied; nothing past the gap.
        #[test]
        fn a_missing_version_is_never_skipped(amounts in proptest::collection::vec(0i64..1000, 2..30), drop_at in 1usize..30) {
            let events = history(&amounts);
            let drop_at = drop_at % (events.len() - 1) + 1;
            let with_gap: Vec<Event> = events.iter().enumerate().filter(|(i, _)| *i != drop_at).map(|(_, e)| e.clone()).collect();
            let s = fold_prefix(Projection::V4, with_gap).unwrap();
            let prefix = fold_prefix(Projection::V4, events[..drop_at].to_vec()).unwrap();
            prop_assert_eq!(s.state, prefix.state);
            prop_assert_eq!(s.pending.len(), events.len() - drop_at - 1);
        }
    }
}
