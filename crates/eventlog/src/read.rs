//! Reading the log: gap-safe tailing, bulk COPY out of a partition, one aggregate's history.

use chrono::{DateTime, Utc};
use fold::{AggregateId, IdKind};
use futures::{Stream, StreamExt};
use postgres_types::Type;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::{Client, Row, Statement};

use crate::pg::Jsonb;
use crate::position::Position;
use crate::schema::{id_kind, partition_count, partition_table};
use crate::{Error, Result};

const READ_AFTER: &str = include_str!("sql/read_after.sql");
const AGGREGATE_EVENTS: &str = include_str!("sql/aggregate_events.sql");

/// One event as stored, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub global_seq: i64,
    pub aggregate_id: AggregateId,
    pub version: i32,
    pub event_type: String,
    pub ts: DateTime<Utc>,
    /// The payload's JSON text.
    pub payload: Vec<u8>,
    pub tx_id: i64,
}

impl RawEvent {
    /// This event's position in its partition.
    pub fn position(&self) -> Position {
        Position { tx: self.tx_id, seq: self.global_seq }
    }

    /// Approximate bytes this event occupies on the wire (for MB/s figures).
    pub fn wire_bytes(&self) -> usize {
        self.payload.len() + self.event_type.len() + 36
    }

    /// The event's place in the log, as a projection sees it.
    pub fn meta(&self) -> fold::Meta {
        fold::Meta {
            global_seq: self.global_seq,
            aggregate_id: self.aggregate_id.clone(),
            aggregate_version: self.version,
            ts: self.ts,
        }
    }

    /// Decodes type and payload for `projection` (its upcasters first); a type the projection
    /// does not know decodes to a skip (`body: None`) unless it is strict.
    pub fn decode<P: fold::Projection>(&self, projection: &P) -> Result<fold::Decoded<P::Event>, fold::DecodeError> {
        fold::decode_event(projection, self.meta(), &self.event_type, &self.payload)
    }

    /// An event from a row of `SELECT global_seq, aggregate_id, version, type, ts, payload,
    /// tx_id` (the payload as `jsonb`), in that order.
    pub fn from_row(row: &Row) -> Result<RawEvent> {
        Ok(RawEvent {
            global_seq: row.try_get(0)?,
            aggregate_id: row.try_get(1)?,
            version: row.try_get(2)?,
            event_type: row.try_get(3)?,
            ts: row.try_get(4)?,
            payload: row.try_get::<_, Jsonb>(5)?.0,
            tx_id: row.try_get(6)?,
        })
    }
}

/// The tail boundary: the xid of the oldest transaction still running (or the next xid when
/// none runs). Every transaction below it has finished, so the set of events with
/// `tx_id < boundary` can no longer change; reading only below it is what makes tailing
/// gap-safe even when writers commit out of sequence order.
pub async fn boundary(client: &Client) -> Result<i64> {
    let row = client.query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::TEXT::BIGINT", &[]).await?;
    Ok(row.get(0))
}

/// The first xid not yet assigned: every transaction that has committed by now is below it.
/// A reader that has consumed everything below this value has seen every event committed at
/// the moment of the call.
pub async fn snapshot_xmax(client: &Client) -> Result<i64> {
    let row = client.query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::TEXT::BIGINT", &[]).await?;
    Ok(row.get(0))
}

/// A tailer over every partition of the log, with one prepared statement per partition.
pub struct LogReader {
    statements: Vec<Statement>,
}

impl LogReader {
    /// Prepares the per-partition statements.
    pub async fn prepare(client: &Client) -> Result<LogReader> {
        let partitions = partition_count(client).await?;
        let mut statements = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let sql = READ_AFTER.replace("{partition}", &partition_table(p));
            statements.push(client.prepare_typed(&sql, &[Type::INT8, Type::INT8, Type::INT8, Type::INT8]).await?);
        }
        Ok(LogReader { statements })
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.statements.len() as u32
    }

    /// Up to `limit` events of `partition` after `after` and below the xid `below`, in
    /// position order.
    pub async fn read_after(
        &self,
        client: &Client,
        partition: u32,
        after: Position,
        below: i64,
        limit: usize,
    ) -> Result<Vec<RawEvent>> {
        let statement = self
            .statements
            .get(partition as usize)
            .ok_or(Error::NoSuchPartition { partition, partitions: self.partitions() })?;
        let rows = client.query(statement, &[&after.tx, &after.seq, &below, &(limit as i64)]).await?;
        rows.iter().map(RawEvent::from_row).collect()
    }
}

/// Streams every event of `partition` after `after` and below the xid `below` with binary
/// COPY, in storage order from the partition's first page (not position order: the caller
/// folds through the version guard, which makes the order of different versions of an
/// aggregate irrelevant). Turns synchronized scans off for `client`'s session.
pub async fn copy_partition(
    client: &Client,
    partition: u32,
    after: Position,
    below: i64,
) -> Result<impl Stream<Item = Result<RawEvent>>> {
    // From the start, the position test would only cost the server a comparison per row.
    let after = if after == Position::START {
        String::new()
    } else {
        format!(" AND (tx_id, global_seq) > ({}, {})", after.tx, after.seq)
    };
    let sql = format!(
        "COPY (SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id FROM log.{} \
         WHERE tx_id < {below}{after}) TO STDOUT (FORMAT binary)",
        partition_table(partition),
    );
    let id_type = id_sql_type(id_kind(client).await?);
    // From the first page, in storage order: with synchronized scans (on by default for a
    // table over a quarter of shared_buffers) the scan would start wherever the last scan of
    // the partition stopped (an index build, a query, a replay that crashed) and read the later
    // part of the log first, and a fold would hold every later version it read that way.
    client.batch_execute("SET synchronize_seqscans = off").await?;
    let out = client.copy_out(sql.as_str()).await?;
    let types = [Type::INT8, id_type, Type::INT4, Type::TEXT, Type::TIMESTAMPTZ, Type::JSONB, Type::INT8];
    Ok(BinaryCopyOutStream::new(out, &types).map(|row| {
        let row = row?;
        Ok(RawEvent {
            global_seq: row.try_get(0)?,
            aggregate_id: row.try_get(1)?,
            version: row.try_get(2)?,
            event_type: row.try_get::<&str>(3)?.to_owned(),
            ts: row.try_get(4)?,
            payload: row.try_get::<Jsonb>(5)?.0,
            tx_id: row.try_get(6)?,
        })
    }))
}

/// The PostgreSQL type of stream ids of kind `id`, for binary COPY.
pub fn id_sql_type(id: IdKind) -> Type {
    match id {
        IdKind::Bigint => Type::INT8,
        IdKind::Uuid => Type::UUID,
        IdKind::Text => Type::TEXT,
    }
}

/// One aggregate's events in version order, up to a timestamp and a `global_seq` (inclusive).
pub async fn aggregate_events(
    client: &Client,
    aggregate_id: &AggregateId,
    until_ts: DateTime<Utc>,
    until_seq: i64,
) -> Result<Vec<RawEvent>> {
    aggregate_events_after(client, AGGREGATE_EVENTS, aggregate_id, 0..=i32::MAX, until_ts, until_seq).await
}

/// Prepares the statement behind [`aggregate_events_after`], for callers that run it often
/// (time travel): one round trip per call instead of two, and no planning. The id parameter
/// takes the log's id type.
pub async fn prepare_aggregate_events(client: &Client) -> Result<Statement> {
    Ok(client.prepare(AGGREGATE_EVENTS).await?)
}

/// One aggregate's events with a version in `versions` except its start (a snapshot's version:
/// `0..=i32::MAX` reads them all), in version order, up to a timestamp and a `global_seq`
/// (inclusive). `statement` is the SQL text or the statement from [`prepare_aggregate_events`].
pub async fn aggregate_events_after<T>(
    client: &Client,
    statement: &T,
    aggregate_id: &AggregateId,
    versions: std::ops::RangeInclusive<i32>,
    until_ts: DateTime<Utc>,
    until_seq: i64,
) -> Result<Vec<RawEvent>>
where
    T: ?Sized + tokio_postgres::ToStatement,
{
    let (after, through) = (*versions.start(), *versions.end());
    let rows = client.query(statement, &[aggregate_id, &after, &until_ts, &until_seq, &through]).await?;
    rows.iter().map(RawEvent::from_row).collect()
}
