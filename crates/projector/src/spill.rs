//! What keeps a partition fold under its held limit: first gap lookups, then the spill.
//!
//! *Gap lookups*: when the fold reaches its limit, the versions missing behind its held events
//! are read from the log partition by the `(aggregate_id, version)` index, below the same
//! boundary as the stream, and applied ahead of their place in the stream; everything held
//! behind them is released. This is what a log with a few late-stored predecessors needs (one
//! holds thousands); only narrow gaps that release many are looked up ([`PartitionFold::gaps`]).
//! The seeded 100M log's hot aggregates are out of order by millions of versions: those gaps
//! are left to the spill (725 events looked up there, 38.9M spilled).
//!
//! *Eviction*: short runs of held events (later versions stored ahead of their place, each
//! holding nothing behind it) are dropped from memory and read back by index when their
//! aggregate's stream reaches them ([`PartitionFold::evict_short_runs`]): what a table written
//! by one inserter has, PostgreSQL putting later rows in the free space of earlier pages. Only
//! the runs are read again, not their aggregate, which deferring would send through the spill.
//!
//! *The spill*: what a lookup or an eviction cannot release (a wide gap, a predecessor above the boundary, a
//! dead letter) past half the limit goes with its aggregate to a spill: the events of the
//! aggregates a [`PartitionFold`] deferred, kept out of memory in a temporary table on a
//! connection of their own, and read back sorted by `(aggregate_id, version)` once the
//! partition has been read, so the guard applies them in order and holds nothing more.
//!
//! Why PostgreSQL and not a file: the server already has what this needs (a table without WAL
//! that lives as long as its session, binary COPY both ways, a sort that runs in `work_mem`
//! and goes to disk past it), and a crash leaves nothing behind: the session ends, the table
//! with it. Why a connection of its own: the partition's COPY stream holds the fold's
//! connection until its end, and the spill is written while it streams.
//!
//! Memory: at most [`SPILL_CHUNK`] events between the fold and the table; the table and the
//! sort are the server's (temp buffers, then files).

use std::pin::Pin;

use eventlog::RawEvent;
use fold::{AggregateId, IdKind, Projection};
use futures::{pin_mut, StreamExt};
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::partition_fold::PartitionFold;
use crate::priority::CpuPriority;
use crate::{Error, Result};

/// Events passed to the spill at once.
pub const SPILL_CHUNK: usize = 4_096;

/// Gap lookups at most per time the limit is reached (each fills the gaps up to the lowest
/// held version of every aggregate; a second finds the gaps behind those).
pub const MAX_LOOKUP_ROUNDS: usize = 4;

/// Evicted events read back per query at the end of a partition.
const REFETCH_BATCH: usize = 10_000;

/// The default held limit of the replay's folds: ~400 B per held event (raw copy and decoded
/// envelope), so ~40 MB per worker at most.
pub const DEFAULT_HELD_LIMIT: usize = 100_000;

/// The spill table's columns, for binary COPY, in a log of `id` stream ids.
fn columns(id: IdKind) -> [Type; 7] {
    [Type::INT8, eventlog::id_sql_type(id), Type::INT4, Type::TEXT, Type::TIMESTAMPTZ, Type::BYTEA, Type::INT8]
}

/// The SQL type of stream ids of kind `id`.
fn id_sql(id: IdKind) -> &'static str {
    fold::ColumnType::AggregateId.sql(id)
}

/// Moves a fold's deferred events into a spill table and back; opens its connection the first
/// time there is something to spill (a fold under its limit never connects).
pub struct Spiller {
    database_url: String,
    priority: CpuPriority,
    /// Where gaps are looked up: the log partition and the stream's boundary W (`tx_id < W`).
    lookups: Option<(u32, i64)>,
    lookup: Option<Client>,
    open: Option<OpenSpill>,
}

struct OpenSpill {
    client: Client,
    writer: Pin<Box<BinaryCopyInWriter>>,
    /// The kind of the spilled events' stream ids (the table's `aggregate_id` type).
    id: IdKind,
}

impl Spiller {
    /// A spiller that will connect to `database_url`, its backend at `priority`.
    pub fn new(database_url: &str, priority: CpuPriority) -> Spiller {
        Spiller { database_url: database_url.to_owned(), priority, lookups: None, lookup: None, open: None }
    }

    /// Looks gaps up in log partition `partition`, among the events below `below` (the
    /// stream's own bound) before deferring anything.
    pub fn with_gap_lookups(mut self, partition: u32, below: i64) -> Spiller {
        self.lookups = Some((partition, below));
        self
    }

    /// After each offer: reads back the evicted events a stream has reached; at the held limit,
    /// looks the gaps up, evicts short runs and defers what is still held past half the limit;
    /// writes what the fold has to spill once it has a chunk of it.
    pub async fn keep_up<P: Projection>(&mut self, fold: &mut PartitionFold<P>) -> Result<()> {
        while fold.has_wanted() {
            let keys = fold.take_wanted();
            self.refetch(fold, &keys).await?;
        }
        if fold.over_limit() {
            if let Some((partition, below)) = self.lookups {
                for _ in 0..MAX_LOOKUP_ROUNDS {
                    if self.fill_gaps(fold, partition, below).await? == 0 || !fold.over_half_limit() {
                        break;
                    }
                }
                // Only where the log can be read back: evicted events are read from it again.
                fold.evict_short_runs();
            }
            fold.defer_to_half();
            // Evicted events of the aggregates just deferred join the rest of theirs.
            let keys = fold.take_spill_refetch();
            if !keys.is_empty() {
                let events = self.read_back(&keys).await?;
                self.write(events).await?;
            }
        }
        if fold.spill_pending() >= SPILL_CHUNK {
            self.write(fold.take_spill()).await?;
        }
        Ok(())
    }

    /// After the partition's last event: writes the rest, reads the spill back sorted by
    /// `(aggregate_id, version)` and offers it to the fold. Nothing to do if nothing was
    /// deferred.
    pub async fn drain<P: Projection>(mut self, fold: &mut PartitionFold<P>) -> Result<()> {
        // Evicted events first: read back now, they are held (or applied) and the spill's
        // sorted events release them, as the stream would have.
        let evicted = fold.take_all_evicted();
        for keys in evicted.chunks(REFETCH_BATCH) {
            self.refetch(fold, keys).await?;
        }
        if !fold.has_spill() {
            return Ok(());
        }
        let rest = fold.take_spill();
        self.write(rest).await?;
        let Some(OpenSpill { client, mut writer, id }) = self.open.take() else {
            return Ok(());
        };
        writer.as_mut().finish().await?;
        let out = client
            .copy_out(
                "COPY (SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id FROM reproject_spill \
                 ORDER BY aggregate_id, version) TO STDOUT (FORMAT binary)",
            )
            .await?;
        let rows = BinaryCopyOutStream::new(out, &columns(id));
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let row = row?;
            fold.offer_spilled(RawEvent {
                global_seq: row.try_get(0)?,
                aggregate_id: row.try_get(1)?,
                version: row.try_get(2)?,
                event_type: row.try_get::<&str>(3)?.to_owned(),
                ts: row.try_get(4)?,
                payload: row.try_get::<Vec<u8>>(5)?,
                tx_id: row.try_get(6)?,
            })?;
        }
        Ok(())
    }

    /// One gap lookup: reads the missing versions behind every held event from the log and
    /// offers them to the fold; returns how many it found.
    async fn fill_gaps<P: Projection>(
        &mut self,
        fold: &mut PartitionFold<P>,
        partition: u32,
        below: i64,
    ) -> Result<u64> {
        let gaps = fold.gaps();
        if gaps.is_empty() {
            return Ok(0);
        }
        let client = self.lookup_client().await?;
        let kind = gaps[0].0.kind();
        let (mut ids, mut after, mut before) = (Vec::new(), Vec::new(), Vec::new());
        for (id, a, b) in gaps {
            ids.push(id);
            after.push(a);
            before.push(b);
        }
        let sql = format!(
            "SELECT e.global_seq, e.aggregate_id, e.version, e.type, e.ts, e.payload, e.tx_id \
             FROM unnest($1::{id}[], $2::int4[], $3::int4[]) AS g(id, after, before) \
             JOIN log.{} e ON e.aggregate_id = g.id AND e.version > g.after AND e.version < g.before \
             WHERE e.tx_id < $4 ORDER BY e.aggregate_id, e.version",
            eventlog::partition_table(partition),
            id = id_sql(kind),
        );
        // At most max(held limit, MAX_GAP) rows (PartitionFold::gaps), applied as they are read.
        let rows = client.query(sql.as_str(), &[&ids, &after, &before, &below]).await?;
        let found = rows.len() as u64;
        for row in rows {
            fold.offer_fetched(RawEvent::from_row(&row)?)?;
        }
        Ok(found)
    }

    /// Reads evicted events back from the log and offers them to the fold.
    async fn refetch<P: Projection>(&mut self, fold: &mut PartitionFold<P>, keys: &[(AggregateId, i32)]) -> Result<()> {
        for raw in self.read_back(keys).await? {
            fold.offer_refetched(raw)?;
        }
        Ok(())
    }

    /// Reads evicted events (`(aggregate_id, version)`, all in the log below the stream's
    /// boundary: the stream read them once) back from the log by index, sorted by key.
    async fn read_back(&mut self, keys: &[(AggregateId, i32)]) -> Result<Vec<RawEvent>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (partition, below) = self.lookups.expect("events are evicted only with gap lookups on");
        let kind = keys[0].0.kind();
        let (ids, versions): (Vec<AggregateId>, Vec<i32>) = keys.iter().cloned().unzip();
        let sql = format!(
            "SELECT e.global_seq, e.aggregate_id, e.version, e.type, e.ts, e.payload, e.tx_id \
             FROM unnest($1::{id}[], $2::int4[]) AS k(id, v) \
             JOIN log.{} e ON e.aggregate_id = k.id AND e.version = k.v \
             WHERE e.tx_id < $3 ORDER BY e.aggregate_id, e.version",
            eventlog::partition_table(partition),
            id = id_sql(kind),
        );
        let rows = self.lookup_client().await?.query(sql.as_str(), &[&ids, &versions, &below]).await?;
        if rows.len() != keys.len() {
            return Err(Error::Worker(format!(
                "partition {partition}: {} of {} evicted events read back from the log; the log changed below the \
                 replay's boundary",
                rows.len(),
                keys.len()
            )));
        }
        Ok(rows.iter().map(RawEvent::from_row).collect::<eventlog::Result<_>>()?)
    }

    /// The connection of the lookups and read-backs, opened the first time one is needed.
    async fn lookup_client(&mut self) -> Result<&Client> {
        if self.lookup.is_none() {
            let client = eventlog::connect(&self.database_url).await?;
            self.priority.apply_to_backend(&client).await;
            self.lookup = Some(client);
        }
        Ok(self.lookup.as_ref().expect("connected above"))
    }

    async fn write(&mut self, events: Vec<RawEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(self.connect(events[0].aggregate_id.kind()).await?);
        }
        let writer = &mut self.open.as_mut().expect("opened above").writer;
        for e in &events {
            writer
                .as_mut()
                .write(&[
                    &e.global_seq,
                    &e.aggregate_id,
                    &e.version,
                    &e.event_type,
                    &e.ts,
                    &e.payload.as_slice(),
                    &e.tx_id,
                ])
                .await?;
        }
        Ok(())
    }

    async fn connect(&self, id: IdKind) -> Result<OpenSpill> {
        let client = eventlog::connect(&self.database_url).await?;
        self.priority.apply_to_backend(&client).await;
        // The sort of the read-back goes to disk past work_mem; 64 MB keeps a partition's
        // typical spill in memory on the server without letting it grow with the log.
        client
            .batch_execute(&format!(
                "SET work_mem = '64MB';
                 CREATE TEMP TABLE reproject_spill (global_seq int8, aggregate_id {}, version int4, type text, \
                 ts timestamptz, payload bytea, tx_id int8)",
                id_sql(id)
            ))
            .await?;
        let sink = client
            .copy_in("COPY reproject_spill (global_seq, aggregate_id, version, type, ts, payload, tx_id) FROM STDIN (FORMAT binary)")
            .await?;
        let writer = Box::pin(BinaryCopyInWriter::new(sink, &columns(id)));
        Ok(OpenSpill { client, writer, id })
    }
}
