//! The event store: the append-only `log.events` table, its partitions, positions and readers,
//! and the adoption of an app's own events table as its source ([`adopt`]).
//!
//! The log is the source of truth and is only ever read by projectors. Reading is gap-safe:
//! a reader consumes events in `(tx_id, global_seq)` order and only below the oldest
//! transaction still running (see [`boundary`]), so no event can commit behind a saved
//! [`Position`]. ARCHITECTURE.md states the argument in full.

pub mod adopt;
mod append;
mod horizon;
mod pg;
mod position;
mod read;
pub mod reconnect;
mod schema;

pub use append::{append_event, NewEvent};
pub use horizon::{horizon_status, Holder, HorizonStatus, HORIZON_AGE_SECONDS};
pub use pg::{connect, connect_as, Jsonb};
pub use position::Position;
pub use read::{
    aggregate_events, aggregate_events_after, boundary, copy_partition, id_sql_type, prepare_aggregate_events,
    snapshot_xmax, LogReader, RawEvent,
};
pub use reconnect::{is_transient, GiveUp, Reconnect, DEFAULT_MAX_OUTAGE};
pub use schema::{create, ensure_indexes, exists, id_kind, partition_count, partition_of, partition_table, LogStats};

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "the event log does not exist: create it (`reproject log create`), adopt an events table \
         (`reproject adopt`) or seed the lab's (`reproject seed`)"
    )]
    Missing,
    #[error("log.meta names an unknown stream id type {0:?} (expected bigint, uuid or text)")]
    BadIdType(String),
    #[error("adopt: {0}")]
    Adopt(String),
    #[error("the event log already exists with {0} partitions")]
    AlreadyExists(u32),
    #[error("partition count must be between 1 and 1024, got {0}")]
    BadPartitionCount(u32),
    #[error(transparent)]
    GaveUp(#[from] GiveUp),
    #[error("partition {partition} out of range (the log has {partitions})")]
    NoSuchPartition { partition: u32, partitions: u32 },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
