//! A batch's cross-range transfers: written last, in a savepoint, on receivers read only then
//! (`FOR UPDATE SKIP LOCKED`), so another writer may commit a receiver's previous version
//! with a newer transaction id.

use std::collections::HashMap;

use rand_chacha::ChaCha8Rng;
use tokio_postgres::Transaction;

use super::sql::{states_from_rows, write, Attempt, Statements};
use super::writer::transfer;
use crate::model::AccountModel;

/// Attempts at a batch's cross-range transfers before they are dropped.
pub(super) const CROSS_ATTEMPTS: u32 = 3;

/// How long a cross-range part waits for another writer's row before it counts as a conflict.
pub(super) const CROSS_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '50ms'";

/// What a batch's cross-range part wrote, and how many of its transfers met a row another
/// writer held.
pub(super) struct CrossDone {
    pub(super) events: u64,
    pub(super) transfers: u64,
    pub(super) busy: u64,
}

/// A cross-range transfer, written in the batch's second part.
pub(super) struct Cross {
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) cents: i64,
}

/// The cross-range transfers of a batch, on states read now (after the batch's own
/// events took the transaction's id). Returns the events and transfers written.
pub(super) async fn cross_range(
    t: &Transaction<'_>,
    st: &Statements,
    rng: &mut ChaCha8Rng,
    crosses: &[Cross],
    ts: i64,
) -> Result<CrossDone, Attempt> {
    let mut ids: Vec<i64> = crosses.iter().flat_map(|c| [c.from, c.to]).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = t.query(&st.select_cross, &[&ids]).await?;
    let mut states = states_from_rows(&rows)?;
    let loaded: HashMap<i64, i32> = states.iter().map(|(id, a)| (*id, a.version)).collect();
    let mut events = Vec::new();
    let (mut transfers, mut busy) = (0, 0);
    for c in crosses {
        let (Some(mut from), Some(mut to)) = (states.get(&c.from).copied(), states.get(&c.to).copied()) else {
            // Held by another writer's open transaction (or opened and not committed yet).
            busy += 1;
            continue;
        };
        if c.from == c.to || from.status != crate::bank::Status::Open || from.balance < c.cents || !to.can_receive() {
            continue;
        }
        transfer(&mut events, rng, &mut from, &mut to, c.cents, ts);
        states.insert(c.from, from);
        states.insert(c.to, to);
        transfers += 1;
    }
    let changed: Vec<AccountModel> =
        states.values().filter(|a| loaded.get(&a.aggregate_id) != Some(&a.version)).copied().collect();
    write(t, st, &events, &changed, &loaded, &[], ts).await?;
    Ok(CrossDone { events: events.len() as u64, transfers, busy })
}
