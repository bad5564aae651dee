//! Aggregate snapshots (`read.aggregate_snapshots`): the state a fold reaches after an
//! aggregate's versions 1..k, so time travel folds only the events after the latest snapshot
//! inside the cut instead of the whole history.
//!
//! A snapshot is a cache of a pure function of an immutable log prefix: versions are dense and
//! unique per aggregate, and a snapshot is only taken once all of 1..k have been applied, so it
//! can never go stale. It is usable for a cut `(ts, offset)` exactly when every one of its
//! events is inside the cut, which `max_seq <= offset AND max_ts <= ts` states without assuming
//! that sequence numbers or timestamps rise with the version.

use chrono::{DateTime, Utc};
use eventlog::Jsonb;
use fold::{AnyProjection, Projection, Row};
use postgres_types::Type;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use crate::{Error, Result};

/// The newest snapshot inside the cut, and the version of the next one (the first that is
/// not inside it). Always one row; both may be NULL.
const LATEST: &str = "WITH s AS ( \
         SELECT version, state FROM read.aggregate_snapshots \
         WHERE fold = $1 AND aggregate_id = $2 AND max_seq <= $3 AND max_ts <= $4 \
         ORDER BY version DESC LIMIT 1) \
     SELECT s.version, s.state, \
            (SELECT min(n.version) FROM read.aggregate_snapshots n \
             WHERE n.fold = $1 AND n.aggregate_id = $2 AND n.version > coalesce(s.version, 0)) \
     FROM (SELECT) AS one LEFT JOIN s ON TRUE";

/// Where a fold inside a cut can start, and where it can stop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotHit {
    /// The newest snapshot whose events all lie inside the cut: its version and its row as
    /// JSON (`to_jsonb` of a row of the version's table).
    pub snapshot: Option<(i32, serde_json::Value)>,
    /// The version of the next snapshot: some event at or below it lies outside the cut, so
    /// the guard can apply nothing past it and the fold need not read further.
    pub next_version: Option<i32>,
}

/// One snapshot row.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<S> {
    /// The row after versions 1..=`row.aggregate_version`.
    pub row: Row<S>,
    /// The largest `global_seq` among those events.
    pub max_seq: i64,
    /// The latest `ts` among those events.
    pub max_ts: DateTime<Utc>,
}

/// Prepares the lookup behind [`latest_snapshot`]. `Ok(None)` when the table does not exist
/// (no read schema yet): time travel then folds from the first event.
pub async fn prepare_latest_snapshot(client: &Client) -> Result<Option<Statement>> {
    match client.prepare_typed(LATEST, &[Type::TEXT, Type::TEXT, Type::INT8, Type::TIMESTAMPTZ]).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The newest snapshot of `aggregate_id` under `projection`'s fold whose events all lie
/// inside the cut (`global_seq <= until_seq` and `ts <= until_ts`), and the next snapshot's
/// version. `statement` is the lookup prepared by [`prepare_latest_snapshot`].
pub async fn latest_snapshot(
    client: &Client,
    statement: &Statement,
    projection: &dyn AnyProjection,
    aggregate_id: &fold::AggregateId,
    until_ts: DateTime<Utc>,
    until_seq: i64,
) -> Result<SnapshotHit> {
    let id_text = aggregate_id.to_string();
    let row = match client.query_one(statement, &[&projection.name(), &id_text, &until_seq, &until_ts]).await {
        Ok(row) => row,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(SnapshotHit::default()),
        Err(e) => return Err(e.into()),
    };
    let next_version: Option<i32> = row.get(2);
    let (Some(version), Some(state)) = (row.get::<_, Option<i32>>(0), row.get::<_, Option<Jsonb>>(1)) else {
        return Ok(SnapshotHit { snapshot: None, next_version });
    };
    let bad = |reason: String| Error::BadRow {
        table: "read.aggregate_snapshots".into(),
        aggregate_id: id_text.clone(),
        reason,
    };
    let row: serde_json::Value = serde_json::from_slice(&state.0)
        .map_err(|e| bad(format!("snapshot at version {version} of fold {}: {e}", projection.name())))?;
    if row.get("aggregate_version").is_none() && row.get("version").is_some() {
        // Stored before the projection trait, as the bank's own account struct: unusable by the
        // row codec. Folding from the first event gives the same answer; a new `reproject
        // snapshot` run after `DELETE FROM read.aggregate_snapshots` restores the speed.
        tracing::debug!(aggregate_id = %aggregate_id, version, "snapshot in the pre-trait format ignored");
        return Ok(SnapshotHit { snapshot: None, next_version });
    }
    let held = (row.get("aggregate_version").and_then(|v| v.as_i64()), row.get("aggregate_id"));
    if held != (Some(version as i64), Some(&aggregate_id.to_json())) {
        return Err(bad(format!("snapshot keyed at version {version} holds (version, aggregate) {held:?}")));
    }
    Ok(SnapshotHit { snapshot: Some((version, row)), next_version })
}

/// Stores `snapshots` of `projection`'s fold in one transaction; rows already present are
/// left alone (a snapshot is a function of its key). Returns the rows inserted.
pub async fn write_snapshots<P: Projection>(
    client: &mut Client,
    projection: &P,
    snapshots: &[Snapshot<P::State>],
) -> Result<u64> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TEMP TABLE snapshot_stage (LIKE read.aggregate_snapshots INCLUDING DEFAULTS) ON COMMIT DROP",
    )
    .await?;
    let sink = tx
        .copy_in("COPY snapshot_stage (fold, aggregate_id, version, max_seq, max_ts, state) FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::TEXT, Type::INT4, Type::INT8, Type::TIMESTAMPTZ, Type::JSONB],
    );
    futures::pin_mut!(writer);
    for s in snapshots {
        let json = serde_json::Value::Object(fold::row_json(projection, &s.row));
        let state = Jsonb(serde_json::to_vec(&json).expect("a JSON value serializes"));
        writer
            .as_mut()
            .write(&[
                &Projection::name(projection),
                &s.row.aggregate_id.to_string(),
                &s.row.aggregate_version,
                &s.max_seq,
                &s.max_ts,
                &state,
            ])
            .await?;
    }
    writer.finish().await?;
    let inserted = tx
        .execute(
            "INSERT INTO read.aggregate_snapshots (fold, aggregate_id, version, max_seq, max_ts, state) \
             SELECT fold, aggregate_id, version, max_seq, max_ts, state FROM snapshot_stage \
             ON CONFLICT (fold, aggregate_id, version) DO NOTHING",
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Rows and on-disk bytes (table and index) of `projection`'s snapshots.
pub async fn snapshot_stats(client: &Client, projection: &dyn AnyProjection) -> Result<(i64, i64)> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM read.aggregate_snapshots WHERE fold = $1), \
                    pg_total_relation_size('read.aggregate_snapshots')",
            &[&projection.name()],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Deletes `projection`'s snapshots (time travel then folds from the first event).
pub async fn drop_snapshots(client: &Client, projection: &dyn AnyProjection) -> Result<u64> {
    Ok(client.execute("DELETE FROM read.aggregate_snapshots WHERE fold = $1", &[&projection.name()]).await?)
}
