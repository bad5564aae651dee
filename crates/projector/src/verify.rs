//! Verification against the log itself, for any projection: fold every partition of the log up
//! to the version's stored positions, in memory, with the same fold and guard as the replay,
//! and compare the result with the version's table row by row.
//!
//! This is the check a user's own projection gets (the bank also has an independent model of
//! its truth, `lab::verify`). It proves that the stored rows are exactly the fold of the
//! prefix of the log the positions claim, whatever path wrote them (bulk, tail, catch-up,
//! after crashes and overlaps). Positions and rows are read in one snapshot; the log below a
//! position can no longer change (gap-safe tailing), so the check may run beside a live
//! projector and the producer.

use std::collections::HashMap;

use eventlog::Position;
use fold::{AggregateId, Projection, Row};
use futures::{pin_mut, StreamExt};
use tokio_postgres::{Client, IsolationLevel};

use crate::partition_fold::PartitionFold;
use crate::{Error, Result};

/// One aggregate whose stored row differs from the fold of the log (either may be missing).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogDiff {
    pub aggregate_id: fold::AggregateId,
    pub stored: Option<serde_json::Map<String, serde_json::Value>>,
    pub folded: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The outcome of [`verify_against_log`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogVerifyReport {
    pub version: String,
    /// Events of the log at or below the version's positions, folded.
    pub events_folded: u64,
    pub stored_rows: u64,
    pub folded_rows: u64,
    /// Aggregates whose stored row differs from the fold (a row missing on one side counts).
    pub diffs: u64,
    /// Up to five of them.
    pub sample: Vec<LogDiff>,
    pub ok: bool,
}

impl LogVerifyReport {
    /// The human-readable report; its last line is `diffs: N`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "read.{} vs the fold of the log at its positions ({} events)\nrows: {} vs {}\n",
            self.version, self.events_folded, self.stored_rows, self.folded_rows
        );
        for d in &self.sample {
            let show = |r: &Option<serde_json::Map<String, serde_json::Value>>| {
                r.as_ref().map_or("(missing)".to_owned(), |m| serde_json::Value::Object(m.clone()).to_string())
            };
            out.push_str(&format!(
                "  aggregate {}:\n    stored: {}\n    folded: {}\n",
                d.aggregate_id,
                show(&d.stored),
                show(&d.folded)
            ));
        }
        out.push_str(&format!("verdict: {}\ndiffs: {}", if self.ok { "OK" } else { "MISMATCH" }, self.diffs));
        out
    }
}

/// Compares `projection`'s table with the fold of the log up to its stored positions.
pub async fn verify_against_log<P: Projection>(client: &mut Client, projection: &P) -> Result<LogVerifyReport> {
    let name = projection.name();
    readmodel::version_info(&*client, name).await?;
    let log = readmodel::log_source(&*client, name).await?;
    if log != readmodel::EVENT_STORE {
        return Err(Error::Config(format!(
            "verify against the log folds the event store up to {name}'s positions, but {name} is folded from {log}, \
             whose positions are offsets: verify it against the true state or against another version instead"
        )));
    }
    let (positions, stored) = {
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let positions = readmodel::offsets(&tx, name).await?;
        let stored = readmodel::load_all_rows(&tx, projection).await?;
        tx.commit().await?;
        (positions, stored)
    };
    let (events_folded, folded) = fold_log_at(client, projection, &positions).await?;
    Ok(compare_with_fold(projection, name, stored, folded, events_folded))
}

/// The fold of the event store up to `positions` (one per partition), in memory, through the
/// replay's fold and guard: the rows a store holding exactly those positions must hold, and
/// the events folded. Any store's verify starts here (PostgreSQL's above, Redis's in
/// `redisstore`).
pub async fn fold_log_at<P: Projection>(
    client: &Client,
    projection: &P,
    positions: &[Position],
) -> Result<(u64, HashMap<AggregateId, Row<P::State>>)> {
    let mut folded = HashMap::new();
    let mut events_folded = 0u64;
    for (p, at) in positions.iter().enumerate() {
        let mut fold = PartitionFold::new(projection.clone(), p as u32, true);
        let events = eventlog::copy_partition(client, p as u32, Position::START, at.tx.saturating_add(1)).await?;
        pin_mut!(events);
        while let Some(raw) = events.next().await {
            let raw = raw?;
            if raw.position() <= *at {
                events_folded += 1;
                fold.offer(raw)?;
            }
        }
        for row in fold.finish(*at).rows {
            folded.insert(row.aggregate_id.clone(), row);
        }
    }
    Ok((events_folded, folded))
}

/// Compares a store's rows with the fold of the log ([`fold_log_at`]), row by row: every
/// aggregate that differs (or is missing on one side) is a diff, named in the sample.
pub fn compare_with_fold<P: Projection>(
    projection: &P,
    version: &str,
    stored: Vec<Row<P::State>>,
    mut folded: HashMap<AggregateId, Row<P::State>>,
    events_folded: u64,
) -> LogVerifyReport {
    let stored_rows = stored.len() as u64;
    let folded_rows = folded.len() as u64;
    let mut diffs = Vec::new();
    for row in stored {
        match folded.remove(&row.aggregate_id) {
            Some(f) if f == row => {}
            other => diffs.push(LogDiff {
                aggregate_id: row.aggregate_id.clone(),
                stored: Some(fold::row_json(projection, &row)),
                folded: other.map(|f| fold::row_json(projection, &f)),
            }),
        }
    }
    for (id, f) in folded {
        diffs.push(LogDiff { aggregate_id: id, stored: None, folded: Some(fold::row_json(projection, &f)) });
    }
    diffs.sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
    let count = diffs.len() as u64;
    diffs.truncate(5);
    LogVerifyReport {
        version: version.to_owned(),
        events_folded,
        stored_rows,
        folded_rows,
        diffs: count,
        sample: diffs,
        ok: count == 0,
    }
}
