//! Snapshots at a consistent cut, and the rebuild that starts from one.
//!
//! A cut is a tail boundary `C` (an xid: every transaction below it has ended, so the set of
//! events below it is final). The snapshot holds, per log partition, the fold of the events
//! below `C`: every aggregate's row, the marks of aggregates with only skipped events, and the
//! events still held at `C` (a version read before its predecessor, which lies above `C`);
//! without these a rebuild would wait forever for a predecessor it already passed. They are
//! kept in PostgreSQL, beside the log (`read.cut_snapshots`), one row per partition.
//!
//! A rebuild from the snapshot seeds each partition's fold with them and reads the log from
//! position `(C, 0)` on: the same fold and guard as a replay from offset 0, so the same rows
//! (tested: 0 diffs against a replay from offset 0). It is only valid for the fold that took
//! it: a new projection version folds the same events differently, its rows as of `C` are not
//! these, and it must start from offset 0.

use std::collections::HashMap;
use std::time::Instant;

use eventlog::{Position, RawEvent};
use fold::{IdKind, Mark, Projection, Row};
use serde_json::{json, Value as Json};
use tokio_postgres::Client;

use crate::layout::{raw_from_json, raw_json, row_from_fields, state_fields};
use crate::{Error, Result};

/// What a snapshot run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CutSnapshotReport {
    pub version: String,
    pub cut: i64,
    pub partitions: u32,
    pub events: u64,
    pub rows: u64,
    pub marks: u64,
    pub held: u64,
    /// Bytes the snapshot takes in PostgreSQL (its JSONB values as stored, compressed).
    pub bytes: i64,
    pub seconds: f64,
}

/// One partition's part of a snapshot.
pub struct PartitionCut<P: Projection> {
    pub rows: Vec<Row<P::State>>,
    pub marks: Vec<Mark>,
    pub held: Vec<RawEvent>,
}

/// Creates `read.cut_snapshots` if missing.
pub async fn ensure_table(client: &mut Client) -> Result<()> {
    readmodel::ensure_schema(client).await?;
    client.batch_execute(include_str!("sql/cut_snapshots.sql")).await?;
    Ok(())
}

/// Folds the log below `cut` (a tail boundary) partition by partition and stores `projection`'s
/// snapshot at that cut. Taking it again at the same cut replaces nothing (the cut is final).
pub async fn take<P: Projection>(database_url: &str, projection: &P, cut: i64) -> Result<CutSnapshotReport> {
    let started = Instant::now();
    let mut client = eventlog::connect(database_url).await?;
    ensure_table(&mut client).await?;
    let boundary = eventlog::boundary(&client).await?;
    if cut > boundary {
        return Err(Error::Config(format!(
            "cut {cut} is above the log's boundary {boundary}: transactions below it are still running"
        )));
    }
    let partitions = eventlog::partition_count(&client).await?;
    let mut report = CutSnapshotReport { version: projection.name().to_owned(), cut, partitions, ..Default::default() };
    for p in 0..partitions {
        let (events, batch) = crate::replay::fold_partition(
            &client,
            database_url,
            projection,
            p,
            cut,
            Some(projector::spill::DEFAULT_HELD_LIMIT),
            None,
        )
        .await?;
        report.events += events;
        report.rows += batch.rows.len() as u64;
        report.marks += batch.marks.len() as u64;
        report.held += batch.held.len() as u64;
        let rows: Vec<Json> = batch.rows.iter().map(|r| row_json(projection, r)).collect();
        let marks: Vec<Json> = batch
            .marks
            .iter()
            .map(|m| json!([m.aggregate_id.to_string(), m.aggregate_version, m.applied_seq]))
            .collect();
        let held: Vec<Json> = batch.held.iter().map(raw_json).collect();
        client
            .execute(
                "INSERT INTO read.cut_snapshots (fold, cut, partition, rows, marks, held) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
                &[&projection.name(), &cut, &(p as i32), &Json::Array(rows), &Json::Array(marks), &Json::Array(held)],
            )
            .await?;
    }
    report.bytes = bytes(&client, projection.name(), cut).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The bytes of `fold`'s snapshot at `cut` as PostgreSQL stores them.
pub async fn bytes(client: &Client, fold: &str, cut: i64) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT coalesce(sum(pg_column_size(rows) + pg_column_size(marks) + pg_column_size(held)), 0)::BIGINT \
             FROM read.cut_snapshots WHERE fold = $1 AND cut = $2",
            &[&fold, &cut],
        )
        .await?
        .get(0))
}

/// The cuts of `fold`'s snapshots, oldest first.
pub async fn cuts(client: &Client, fold: &str) -> Result<Vec<i64>> {
    Ok(client
        .query("SELECT DISTINCT cut FROM read.cut_snapshots WHERE fold = $1 ORDER BY cut", &[&fold])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Loads partition `p` of `projection`'s snapshot at `cut`.
pub async fn load_partition<P: Projection>(
    client: &Client,
    projection: &P,
    cut: i64,
    p: u32,
    id: IdKind,
) -> Result<PartitionCut<P>> {
    let row = client
        .query_opt(
            "SELECT rows, marks, held FROM read.cut_snapshots WHERE fold = $1 AND cut = $2 AND partition = $3",
            &[&projection.name(), &cut, &(p as i32)],
        )
        .await?
        .ok_or_else(|| Error::Config(format!("no snapshot of {} at cut {cut} for partition {p}", projection.name())))?;
    let (rows, marks, held): (Json, Json, Json) = (row.get(0), row.get(1), row.get(2));
    let bad = |what: &str| Error::BadData(format!("snapshot {} at {cut}, partition {p}: {what}", projection.name()));
    let rows = rows
        .as_array()
        .ok_or_else(|| bad("rows"))?
        .iter()
        .map(|r| row_from_json(projection, r, id))
        .collect::<Result<Vec<_>>>()?;
    let marks = marks
        .as_array()
        .ok_or_else(|| bad("marks"))?
        .iter()
        .map(|m| {
            Some(Mark {
                aggregate_id: id.parse(m.get(0)?.as_str()?).ok()?,
                aggregate_version: i32::try_from(m.get(1)?.as_i64()?).ok()?,
                applied_seq: m.get(2)?.as_i64()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("marks"))?;
    let held = held
        .as_array()
        .ok_or_else(|| bad("held"))?
        .iter()
        .map(|e| raw_from_json(e, id))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("held events"))?;
    Ok(PartitionCut { rows, marks, held })
}

/// A row as a JSON object of the Redis layout's field texts (exact: numerics keep their scale).
fn row_json<P: Projection>(projection: &P, row: &Row<P::State>) -> Json {
    let mut map: serde_json::Map<String, Json> =
        state_fields(projection, row).into_iter().map(|(k, v)| (k.to_owned(), Json::String(v))).collect();
    map.insert("_id".into(), Json::String(row.aggregate_id.to_string()));
    map.insert("_version".into(), Json::String(row.aggregate_version.to_string()));
    map.insert("_seq".into(), Json::String(row.applied_seq.to_string()));
    Json::Object(map)
}

fn row_from_json<P: Projection>(projection: &P, json: &Json, id: IdKind) -> Result<Row<P::State>> {
    let bad = || Error::BadData(format!("snapshot row {json}"));
    let fields: HashMap<String, String> = json
        .as_object()
        .ok_or_else(bad)?
        .iter()
        .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let aggregate_id = id.parse(fields.get("_id").ok_or_else(bad)?).map_err(|_| bad())?;
    row_from_fields(projection, aggregate_id, &fields, id)
}

/// The position a rebuild from a snapshot at `cut` reads the log after.
pub fn start_after(cut: i64) -> Position {
    // Events of transactions below the cut are in the snapshot; the first after it is at
    // (cut, seq >= 1) or later, all above (cut, 0).
    Position::boundary(cut)
}
