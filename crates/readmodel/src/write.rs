//! The two batch writers: the tail path (staging COPY + guarded upsert) and the bulk path
//! (one whole partition, truncated and COPYed in one transaction).

use eventlog::{Jsonb, Position, RawEvent};
use fold::{AggregateId, Mark, Projection, Row};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, Transaction};

use crate::rows::{column_list, column_types, SqlValue};
use crate::schema::{qualified_table, version_partition_table};
use crate::{Error, Result};

const UPSERT: &str = include_str!("sql/upsert.sql");
const ADVANCE_OFFSETS: &str = include_str!("sql/advance_offsets.sql");

/// An event a projector could not fold, to be dead-lettered.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: u32,
    pub event: RawEvent,
    pub error: String,
}

/// One tail batch: the changed rows (already folded, one per aggregate), the new position and
/// applied-event count of each partition read, and the version's full set of held events when
/// it changed; the marks of aggregates with no row (only skipped events so far) that changed,
/// and the aggregates whose mark a row now replaces.
#[derive(Debug, Clone)]
pub struct TailBatch<P: Projection> {
    pub projection: P,
    pub rows: Vec<Row<P::State>>,
    pub offsets: Vec<(u32, Position, i64)>,
    pub held: Option<Vec<(u32, RawEvent)>>,
    pub dead_letters: Vec<DeadLetter>,
    pub marks: Vec<(u32, Mark)>,
    pub unmarked: Vec<AggregateId>,
}

/// One bulk-replayed partition: every row of it, its position, what stays held, and the marks
/// of its aggregates with no row (only skipped events).
#[derive(Debug, Clone)]
pub struct PartitionBatch<P: Projection> {
    pub projection: P,
    pub partition: u32,
    pub rows: Vec<Row<P::State>>,
    pub position: Position,
    pub applied: i64,
    pub held: Vec<RawEvent>,
    pub dead_letters: Vec<DeadLetter>,
    pub marks: Vec<Mark>,
}

async fn copy_rows<P: Projection>(
    tx: &Transaction<'_>,
    projection: &P,
    target: &str,
    options: &str,
    rows: &[Row<P::State>],
) -> Result<()> {
    // The id type is the rows' own (one log, one kind); no rows, nothing to copy.
    let Some(id) = rows.first().map(|r| r.aggregate_id.kind()) else {
        return Ok(());
    };
    let sql = format!("COPY {target} ({}) FROM STDIN (FORMAT binary{options})", column_list(projection));
    let sink = tx.copy_in(sql.as_str()).await?;
    let types = column_types(projection, id);
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for row in rows {
        let values = fold::row_values(projection, row);
        let params: Vec<SqlValue<'_>> = values.iter().map(SqlValue).collect();
        writer.as_mut().write_raw(params.iter()).await?;
    }
    writer.finish().await?;
    Ok(())
}

async fn insert_held(tx: &Transaction<'_>, projection: &str, held: &[(u32, RawEvent)]) -> Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare(
            "INSERT INTO read.held_events \
             (version, partition, aggregate_id, aggregate_version, global_seq, tx_id, type, ts, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    for (p, e) in held {
        let payload = Jsonb(e.payload.clone());
        tx.execute(
            &stmt,
            &[
                &projection,
                &(*p as i32),
                &e.aggregate_id.to_string(),
                &e.version,
                &e.global_seq,
                &e.tx_id,
                &e.event_type,
                &e.ts,
                &payload,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn insert_dead_letters(tx: &Transaction<'_>, projection: &str, letters: &[DeadLetter]) -> Result<()> {
    for d in letters {
        // A payload that is not even JSON cannot come from a jsonb column, so this holds.
        let payload = Jsonb(d.event.payload.clone());
        tx.execute(
            "INSERT INTO read.dead_letters \
             (version, global_seq, partition, aggregate_id, aggregate_version, type, payload, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &projection,
                &d.event.global_seq,
                &(d.partition as i32),
                &d.event.aggregate_id.to_string(),
                &d.event.version,
                &d.event.event_type,
                &payload,
                &d.error,
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO read.quarantined_aggregates (version, aggregate_id, global_seq, reason) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&projection, &d.event.aggregate_id.to_string(), &d.event.global_seq, &d.error],
        )
        .await?;
    }
    Ok(())
}

/// Writes the marks of aggregates with no row (replacing a stored mark only by a later one).
async fn upsert_marks(tx: &Transaction<'_>, projection: &str, marks: &[(u32, Mark)]) -> Result<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = marks.iter().map(|(p, _)| *p as i32).collect();
    let ids: Vec<String> = marks.iter().map(|(_, m)| m.aggregate_id.to_string()).collect();
    let versions: Vec<i32> = marks.iter().map(|(_, m)| m.aggregate_version).collect();
    let seqs: Vec<i64> = marks.iter().map(|(_, m)| m.applied_seq).collect();
    tx.execute(
        "INSERT INTO read.untracked_aggregates AS u (version, partition, aggregate_id, aggregate_version, applied_seq) \
         SELECT $1, * FROM unnest($2::INT[], $3::TEXT[], $4::INT[], $5::BIGINT[]) \
         ON CONFLICT (version, aggregate_id) DO UPDATE \
         SET aggregate_version = EXCLUDED.aggregate_version, applied_seq = EXCLUDED.applied_seq \
         WHERE u.aggregate_version < EXCLUDED.aggregate_version",
        &[&projection, &partitions, &ids, &versions, &seqs],
    )
    .await?;
    Ok(())
}

/// Removes the marks of aggregates that now have a row.
async fn delete_marks(tx: &Transaction<'_>, projection: &str, ids: &[AggregateId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    tx.execute(
        "DELETE FROM read.untracked_aggregates WHERE version = $1 AND aggregate_id = ANY($2::TEXT[])",
        &[&projection, &ids],
    )
    .await?;
    Ok(())
}

/// `owner = EXCLUDED.owner, ...`: every column but the key, for an upsert.
pub(crate) fn assignments(projection: &dyn fold::AnyProjection) -> String {
    let columns = projection.all_columns();
    let set: Vec<String> =
        columns.iter().filter(|c| c.name != "aggregate_id").map(|c| format!("{0} = EXCLUDED.{0}", c.name)).collect();
    set.join(", ")
}

/// Commits one tail batch: rows through a staging table and a version-guarded upsert, the
/// partitions' positions, held events and dead letters, all in one transaction.
pub async fn commit_tail_batch<P: Projection>(client: &mut Client, batch: &TailBatch<P>) -> Result<()> {
    let projection = &batch.projection;
    let name = projection.name();
    let tx = client.transaction().await?;
    if !batch.rows.is_empty() {
        let staging = format!("staging_{}", projection.table());
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {}) ON COMMIT DELETE ROWS",
            qualified_table(projection)
        ))
        .await?;
        copy_rows(&tx, projection, &staging, "", &batch.rows).await?;
        let sql = UPSERT
            .replace("{table}", &format!("\"{}\"", projection.table()))
            .replace("{columns}", &column_list(projection))
            .replace("{staging}", &staging)
            .replace("{assignments}", &assignments(projection));
        tx.execute(sql.as_str(), &[]).await?;
    }
    if !batch.offsets.is_empty() {
        let parts: Vec<i32> = batch.offsets.iter().map(|o| o.0 as i32).collect();
        let txs: Vec<i64> = batch.offsets.iter().map(|o| o.1.tx).collect();
        let seqs: Vec<i64> = batch.offsets.iter().map(|o| o.1.seq).collect();
        let applied: Vec<i64> = batch.offsets.iter().map(|o| o.2).collect();
        let n = tx.execute(ADVANCE_OFFSETS, &[&name, &parts, &txs, &seqs, &applied]).await?;
        if n as usize != parts.len() {
            return Err(Error::OffsetConflict { version: name.to_owned(), missing: parts.len() - n as usize });
        }
    }
    if let Some(held) = &batch.held {
        tx.execute("DELETE FROM read.held_events WHERE version = $1", &[&name]).await?;
        insert_held(&tx, name, held).await?;
    }
    insert_dead_letters(&tx, name, &batch.dead_letters).await?;
    upsert_marks(&tx, name, &batch.marks).await?;
    delete_marks(&tx, name, &batch.unmarked).await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces one partition of a version's table with `batch.rows` and records its position, in
/// one transaction: a crash rolls back exactly this partition. The partition is truncated in
/// the same transaction, which lets COPY FREEZE write the rows already frozen.
pub async fn write_partition<P: Projection>(client: &mut Client, batch: &PartitionBatch<P>) -> Result<()> {
    write_batch(client, batch, true).await
}

/// The bulk write of a log whose partitions are not the table's (a Kafka topic's partitions
/// follow murmur2 of the key, the table's PostgreSQL's hash): `batch.rows` are COPYed into the
/// version's table, each row to the partition its hash routes it to, with the source
/// partition's position and held events, in one transaction. Nothing is truncated: a source
/// partition is written once (a restart skips those with a position), and a crash rolls back
/// exactly this one.
pub async fn write_source_partition<P: Projection>(client: &mut Client, batch: &PartitionBatch<P>) -> Result<()> {
    write_batch(client, batch, false).await
}

async fn write_batch<P: Projection>(client: &mut Client, batch: &PartitionBatch<P>, own_partition: bool) -> Result<()> {
    let projection = &batch.projection;
    let name = projection.name();
    let p = batch.partition;
    let tx = client.transaction().await?;
    if own_partition {
        let table = version_partition_table(projection, p);
        tx.batch_execute(&format!("TRUNCATE {table}")).await?;
        copy_rows(&tx, projection, &table, ", FREEZE", &batch.rows).await?;
    } else {
        copy_rows(&tx, projection, &qualified_table(projection), "", &batch.rows).await?;
    }
    tx.execute("DELETE FROM read.held_events WHERE version = $1 AND partition = $2", &[&name, &(p as i32)]).await?;
    let held: Vec<(u32, RawEvent)> = batch.held.iter().map(|e| (p, e.clone())).collect();
    insert_held(&tx, name, &held).await?;
    insert_dead_letters(&tx, name, &batch.dead_letters).await?;
    if own_partition {
        tx.execute(
            "DELETE FROM read.untracked_aggregates WHERE version = $1 AND partition = $2",
            &[&name, &(p as i32)],
        )
        .await?;
    }
    let marks: Vec<(u32, Mark)> = batch.marks.iter().map(|m| (p, m.clone())).collect();
    upsert_marks(&tx, name, &marks).await?;
    let n = tx
        .execute(
            "UPDATE read.projection_offsets SET position_tx = $3, position_seq = $4, events_applied = $5, \
             updated_at = now() WHERE version = $1 AND partition = $2",
            &[&name, &(p as i32), &batch.position.tx, &batch.position.seq, &batch.applied],
        )
        .await?;
    if n != 1 {
        return Err(Error::UnknownVersion(name.to_owned()));
    }
    tx.commit().await?;
    Ok(())
}

/// Repair's write: overwrites one aggregate's row with `row` (its whole history re-folded)
/// when `row` is at or past the stored version, and lifts its quarantine, in one transaction.
///
/// The one write that does not move positions with its rows, and need not: the row is the fold
/// of every event of the aggregate committed when the repair read them, so it is at or past
/// what the positions cover; the tail path later meets those events again as duplicates (the
/// guard's `<` refuses to move a row backwards). `<=` here, not `<`, so that a row of the same
/// version but a wrong state (the reason to repair) is replaced.
pub async fn repair_row<P: Projection>(client: &mut Client, projection: &P, row: &Row<P::State>) -> Result<()> {
    let tx = client.transaction().await?;
    let columns = fold::AnyProjection::all_columns(projection).len();
    let placeholders: Vec<String> = (1..=columns).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} AS a ({}) VALUES ({}) ON CONFLICT (aggregate_id) DO UPDATE SET {} \
         WHERE a.aggregate_version <= EXCLUDED.aggregate_version",
        qualified_table(projection),
        column_list(projection),
        placeholders.join(", "),
        assignments(projection)
    );
    let values = fold::row_values(projection, row);
    let params: Vec<SqlValue<'_>> = values.iter().map(SqlValue).collect();
    let params: Vec<&(dyn postgres_types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn postgres_types::ToSql + Sync)).collect();
    tx.execute(sql.as_str(), &params).await?;
    tx.execute(
        "DELETE FROM read.quarantined_aggregates WHERE version = $1 AND aggregate_id = $2",
        &[&projection.name(), &row.aggregate_id.to_string()],
    )
    .await?;
    delete_marks(&tx, projection.name(), std::slice::from_ref(&row.aggregate_id)).await?;
    tx.commit().await?;
    Ok(())
}

/// Loads the marks of the given aggregates (those with no row, only skipped events so far).
pub async fn load_marks<C: tokio_postgres::GenericClient>(
    client: &C,
    projection: &str,
    ids: &[AggregateId],
) -> Result<std::collections::HashMap<AggregateId, Mark>> {
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let rows = client
        .query(
            "SELECT aggregate_id, aggregate_version, applied_seq FROM read.untracked_aggregates \
             WHERE version = $1 AND aggregate_id = ANY($2::TEXT[])",
            &[&projection, &texts],
        )
        .await?;
    // Keyed by the text form: map each back to the id it came from.
    let by_text: std::collections::HashMap<String, &AggregateId> = texts.into_iter().zip(ids).collect();
    for r in rows {
        let text: String = r.get(0);
        if let Some(id) = by_text.get(&text) {
            let mark = Mark { aggregate_id: (*id).clone(), aggregate_version: r.get(1), applied_seq: r.get(2) };
            out.insert((*id).clone(), mark);
        }
    }
    Ok(out)
}
