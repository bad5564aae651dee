//! Where the tail path reads from: a [`Source`] is a partitioned log read after per-partition
//! positions. [`PgLog`] is the PostgreSQL event store (gap-safe, below the oldest running
//! transaction); the Kafka topic (crate `kafkalog`) is the other implementation. The fold, the
//! version guard, the batch writer and the stored positions are the same for both.

use std::future::Future;

use eventlog::{LogReader, Position, RawEvent};
use tokio_postgres::Client;

use crate::Result;

/// One read of a [`Source`]: the events (with their partition), every partition's position
/// after them, and whether every partition has been read to the head.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub events: Vec<(u32, RawEvent)>,
    pub positions: Vec<Position>,
    pub drained: bool,
    /// The bound read below (the Postgres log's xid boundary; 0 for a source without one).
    pub boundary: i64,
}

/// A partitioned log the tail path reads from. A position is a cursor in one partition
/// ([`Position`]): for the Postgres log `(tx_id, global_seq)`, for Kafka `(next offset, 0)`.
pub trait Source: Send {
    /// Partitions of the log.
    fn partitions(&self) -> u32;

    /// Called once before the first read, with the positions the reader resumes from.
    fn start(&mut self, positions: &[Position]) -> impl Future<Output = Result<()>> + Send;

    /// Up to `limit` events after `positions` (the positions committed so far), in each
    /// partition's order.
    fn read(
        &mut self,
        client: &Client,
        positions: &[Position],
        limit: usize,
    ) -> impl Future<Output = Result<Read>> + Send;

    /// The head now: per partition, the position a reader that has seen everything written so
    /// far has reached.
    fn head(&mut self, client: &Client) -> impl Future<Output = Result<Vec<Position>>> + Send;

    /// Events between `positions` and the head (for progress lines).
    fn lag(&mut self, client: &Client, positions: &[Position]) -> impl Future<Output = Result<u64>> + Send;

    /// Whether the tail should watch PostgreSQL's transaction horizon for stalls (the
    /// Postgres log's reads wait on it; a Kafka topic's do not).
    fn watches_horizon(&self) -> bool;

    /// The log's name in the registry (`read.projections.log_source`): a version is folded
    /// from one log only, since its positions mean nothing in another.
    fn log_name(&self) -> String;
}

/// The PostgreSQL event store as a [`Source`]: every partition read after its position and
/// below the gap-safe boundary (the oldest running transaction), `until` if set.
pub struct PgLog {
    reader: LogReader,
    until: Option<i64>,
    next_partition: u32,
}

impl PgLog {
    /// Prepares the per-partition reads; `until` caps the boundary (an xid).
    pub async fn open(client: &Client, until: Option<i64>) -> Result<PgLog> {
        Ok(PgLog { reader: LogReader::prepare(client).await?, until, next_partition: 0 })
    }
}

impl Source for PgLog {
    fn partitions(&self) -> u32 {
        self.reader.partitions()
    }

    async fn start(&mut self, _positions: &[Position]) -> Result<()> {
        Ok(())
    }

    async fn read(&mut self, client: &Client, positions: &[Position], limit: usize) -> Result<Read> {
        let mut boundary = eventlog::boundary(client).await?;
        if let Some(until) = self.until {
            boundary = boundary.min(until);
        }
        let partitions = self.reader.partitions();
        let mut new_positions = positions.to_vec();
        let mut events: Vec<(u32, RawEvent)> = Vec::new();
        let mut drained = true;
        for i in 0..partitions {
            let p = (self.next_partition + i) % partitions;
            let at = positions[p as usize];
            if at >= Position::boundary(boundary) {
                continue;
            }
            let room = limit - events.len();
            if room == 0 {
                drained = false;
                break;
            }
            let rows = self.reader.read_after(client, p, at, boundary, room).await?;
            let full = rows.len() == room;
            new_positions[p as usize] = match rows.last() {
                Some(last) if full => last.position(),
                Some(last) => last.position().max(Position::boundary(boundary)),
                None => Position::boundary(boundary),
            };
            drained &= !full;
            events.extend(rows.into_iter().map(|e| (p, e)));
        }
        self.next_partition = (self.next_partition + 1) % partitions.max(1);
        Ok(Read { events, positions: new_positions, drained, boundary })
    }

    async fn head(&mut self, client: &Client) -> Result<Vec<Position>> {
        let xmax = match self.until {
            Some(until) => until,
            None => eventlog::snapshot_xmax(client).await?,
        };
        Ok(vec![Position::boundary(xmax); self.partitions() as usize])
    }

    async fn lag(&mut self, client: &Client, positions: &[Position]) -> Result<u64> {
        Ok(readmodel::lag_events(client, positions).await?.max(0) as u64)
    }

    fn watches_horizon(&self) -> bool {
        true
    }

    fn log_name(&self) -> String {
        readmodel::EVENT_STORE.to_owned()
    }
}
