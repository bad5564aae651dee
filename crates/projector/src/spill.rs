//! The spill of a partition fold: the events of the aggregates a [`PartitionFold`] deferred
//! (it held more events than its limit), kept out of memory in a temporary table on a
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
use fold::Projection;
use futures::{pin_mut, StreamExt};
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::partition_fold::PartitionFold;
use crate::priority::CpuPriority;
use crate::Result;

/// Events passed to the spill at once.
pub const SPILL_CHUNK: usize = 4_096;

/// The default held limit of the replay's folds: ~400 B per held event (raw copy and decoded
/// envelope), so ~40 MB per worker at most.
pub const DEFAULT_HELD_LIMIT: usize = 100_000;

const COLUMNS: [Type; 7] = [Type::INT8, Type::INT8, Type::INT4, Type::TEXT, Type::TIMESTAMPTZ, Type::BYTEA, Type::INT8];

/// Moves a fold's deferred events into a spill table and back; opens its connection the first
/// time there is something to spill (a fold under its limit never connects).
pub struct Spiller {
    database_url: String,
    priority: CpuPriority,
    open: Option<OpenSpill>,
    written: u64,
}

struct OpenSpill {
    client: Client,
    writer: Pin<Box<BinaryCopyInWriter>>,
}

impl Spiller {
    /// A spiller that will connect to `database_url`, its backend at `priority`.
    pub fn new(database_url: &str, priority: CpuPriority) -> Spiller {
        Spiller { database_url: database_url.to_owned(), priority, open: None, written: 0 }
    }

    /// Events written to the spill so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes what the fold has to spill once it has a chunk of it; call after each offer.
    pub async fn keep_up<P: Projection>(&mut self, fold: &mut PartitionFold<P>) -> Result<()> {
        if fold.spill_pending() >= SPILL_CHUNK {
            self.write(fold.take_spill()).await?;
        }
        Ok(())
    }

    /// After the partition's last event: writes the rest, reads the spill back sorted by
    /// `(aggregate_id, version)` and offers it to the fold. Nothing to do if nothing was
    /// deferred.
    pub async fn drain<P: Projection>(mut self, fold: &mut PartitionFold<P>) -> Result<()> {
        if !fold.has_spill() {
            return Ok(());
        }
        let rest = fold.take_spill();
        self.write(rest).await?;
        let Some(OpenSpill { client, mut writer }) = self.open.take() else {
            return Ok(());
        };
        writer.as_mut().finish().await?;
        let out = client
            .copy_out(
                "COPY (SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id FROM reproject_spill \
                 ORDER BY aggregate_id, version) TO STDOUT (FORMAT binary)",
            )
            .await?;
        let rows = BinaryCopyOutStream::new(out, &COLUMNS);
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

    async fn write(&mut self, events: Vec<RawEvent>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(self.connect().await?);
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
        self.written += events.len() as u64;
        Ok(())
    }

    async fn connect(&self) -> Result<OpenSpill> {
        let client = eventlog::connect(&self.database_url).await?;
        self.priority.apply_to_backend(&client).await;
        // The sort of the read-back goes to disk past work_mem; 64 MB keeps a partition's
        // typical spill in memory on the server without letting it grow with the log.
        client
            .batch_execute(
                "SET work_mem = '64MB';
                 CREATE TEMP TABLE reproject_spill (global_seq int8, aggregate_id int8, version int4, type text, \
                 ts timestamptz, payload bytea, tx_id int8)",
            )
            .await?;
        let sink = client
            .copy_in("COPY reproject_spill (global_seq, aggregate_id, version, type, ts, payload, tx_id) FROM STDIN (FORMAT binary)")
            .await?;
        let writer = Box::pin(BinaryCopyInWriter::new(sink, &COLUMNS));
        Ok(OpenSpill { client, writer })
    }
}
