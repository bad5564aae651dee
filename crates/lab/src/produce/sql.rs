//! The producer's SQL round trips: its prepared statements, the sequence values, the batched
//! write of events and expected rows, and which errors are a lost race.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement, Transaction};

use super::writer::Pending;
use crate::model::{owner_of, AccountModel, CURRENCIES};
use crate::Error;

pub(super) const SELECT_STATES: &str = include_str!("../sql/produce_select.sql");
pub(super) const SELECT_CROSS: &str = include_str!("../sql/produce_select_cross.sql");
pub(super) const INSERT_EVENTS: &str = include_str!("../sql/produce_insert_events.sql");
pub(super) const UPDATE_EXPECTED: &str = include_str!("../sql/produce_update_expected.sql");
pub(super) const INSERT_EXPECTED: &str = include_str!("../sql/produce_insert_expected.sql");
pub(super) const NEXT_VALUES: &str = include_str!("../sql/produce_next_values.sql");

/// Why one attempt did not commit.
pub(super) enum Attempt {
    /// Lost a race: roll back, try again.
    Conflict,
    Failed(Error),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Self {
        let retryable = [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::LOCK_NOT_AVAILABLE,
        ];
        match e.code() {
            Some(code) if retryable.contains(code) => Attempt::Conflict,
            _ => Attempt::Failed(Error::Db(e)),
        }
    }
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Failed(e)
    }
}

/// The prepared statements of a writer's connection.
pub(super) struct Statements {
    pub(super) select: Statement,
    pub(super) select_cross: Statement,
    pub(super) insert_events: Statement,
    pub(super) update: Statement,
    pub(super) insert_expected: Statement,
    pub(super) next_values: Statement,
}

/// `n` values of the sequence `sequence`, in increasing order.
pub(super) async fn next_values(
    t: &Transaction<'_>,
    st: &Statements,
    sequence: &str,
    n: usize,
) -> Result<Vec<i64>, Attempt> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let row = t.query_one(&st.next_values, &[&sequence, &(n as i32)]).await?;
    let mut values: Vec<i64> = row.get(0);
    values.sort_unstable();
    Ok(values)
}

/// Writes `events` (all stamped `ts_micros`), moves the `changed` expected rows from their `loaded` version, and inserts
/// the `opened` ones: three pipelined statements after one for the sequence values. A row that
/// moved since it was read is a conflict.
pub(super) async fn write(
    t: &Transaction<'_>,
    st: &Statements,
    events: &[Pending],
    changed: &[AccountModel],
    loaded: &HashMap<i64, i32>,
    opened: &[AccountModel],
    ts_micros: i64,
) -> Result<(), Attempt> {
    if events.is_empty() {
        return Ok(());
    }
    let seqs = next_values(t, st, "log.events_global_seq_seq", events.len()).await?;
    let seq_of = |a: &AccountModel| seqs[a.applied_seq as usize];
    let ts = crate::model::micros_to_datetime(ts_micros);
    let n = events.len();
    let (ids, versions, types, payloads): (Vec<i64>, Vec<i32>, Vec<&str>, Vec<&str>) = events.iter().fold(
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n)),
        |(mut i, mut v, mut ty, mut p), e| {
            i.push(e.aggregate_id);
            v.push(e.version);
            ty.push(e.event_type);
            p.push(e.payload.as_str());
            (i, v, ty, p)
        },
    );
    let tss = vec![ts; n];
    let insert_events =
        async { t.execute(&st.insert_events, &[&seqs, &ids, &versions, &types, &tss, &payloads]).await };

    let col = |f: &dyn Fn(&AccountModel) -> i64, of: &[AccountModel]| of.iter().map(f).collect::<Vec<i64>>();
    let statuses: Vec<&str> = changed.iter().map(|a| a.status.as_str()).collect();
    let balances = col(&|a| a.balance, changed);
    let deposits = col(&|a| a.lifetime_deposits, changed);
    let last: Vec<DateTime<Utc>> = changed.iter().map(|a| a.last_activity_at()).collect();
    let new_versions: Vec<i32> = changed.iter().map(|a| a.version).collect();
    let applied: Vec<i64> = changed.iter().map(seq_of).collect();
    let bugs: Vec<bool> = changed.iter().map(|a| a.v3_bug).collect();
    let before: Vec<i32> = changed.iter().map(|a| loaded[&a.aggregate_id]).collect();
    let changed_ids = col(&|a| a.aggregate_id, changed);
    let update = async {
        if changed.is_empty() {
            return Ok(0);
        }
        t.execute(
            &st.update,
            &[&changed_ids, &statuses, &balances, &deposits, &last, &new_versions, &applied, &bugs, &before],
        )
        .await
    };

    let open_ids = col(&|a| a.aggregate_id, opened);
    let owners: Vec<String> = opened.iter().map(|a| owner_of(a.aggregate_id)).collect();
    let currencies: Vec<&str> = opened.iter().map(|a| a.currency_code()).collect();
    let open_status: Vec<&str> = opened.iter().map(|a| a.status.as_str()).collect();
    let open_balances = col(&|a| a.balance, opened);
    let open_deposits = col(&|a| a.lifetime_deposits, opened);
    let open_last: Vec<DateTime<Utc>> = opened.iter().map(|a| a.last_activity_at()).collect();
    let open_versions: Vec<i32> = opened.iter().map(|a| a.version).collect();
    let open_applied: Vec<i64> = opened.iter().map(seq_of).collect();
    let open_bugs: Vec<bool> = opened.iter().map(|a| a.v3_bug).collect();
    let insert_expected = async {
        if opened.is_empty() {
            return Ok(0);
        }
        t.execute(
            &st.insert_expected,
            &[
                &open_ids,
                &owners,
                &currencies,
                &open_status,
                &open_balances,
                &open_deposits,
                &open_last,
                &open_versions,
                &open_applied,
                &open_bugs,
            ],
        )
        .await
    };
    // The update goes first: it locks the rows before the log's unique entries are taken.
    let (updated, _, _) = futures::try_join!(update, insert_events, insert_expected)?;
    if updated as usize == changed.len() {
        Ok(())
    } else {
        Err(Attempt::Conflict)
    }
}

/// Expected states by aggregate id.
pub(super) fn states_from_rows(rows: &[Row]) -> Result<HashMap<i64, AccountModel>, Attempt> {
    rows.iter().map(|r| account_from_row(r).map(|a| (a.aggregate_id, a))).collect()
}

fn account_from_row(r: &Row) -> Result<AccountModel, Attempt> {
    let bad = |what: String| Attempt::Failed(Error::Config(format!("lab.expected_accounts: {what}")));
    let currency: &str = r.get(1);
    let status: &str = r.get(2);
    let last: DateTime<Utc> = r.get(5);
    Ok(AccountModel {
        aggregate_id: r.get(0),
        currency: CURRENCIES.iter().position(|c| *c == currency).ok_or_else(|| bad(format!("currency {currency}")))?
            as u8,
        status: crate::bank::Status::parse(status).ok_or_else(|| bad(format!("status {status}")))?,
        balance: r.get(3),
        lifetime_deposits: r.get(4),
        last_activity_micros: last.timestamp_micros(),
        version: r.get(6),
        applied_seq: r.get(7),
        v3_bug: r.get(8),
    })
}
