//! The read side's storage: one table per projection version, the `read.projections`
//! registry, per-partition offsets, held events, dead letters, the batch writers, and cutover.
//!
//! Invariant: rows and the offsets that cover them are only ever written in one transaction
//! ([`write::commit_tail_batch`], [`write::write_partition`]), so after a crash the stored
//! position and the stored rows always agree.

mod registry;
mod rows;
mod schema;
mod snapshots;
mod status;
mod write;

pub use registry::{
    cutover, cutover_waiting, ensure_log_source, held_events, lag_events, list, log_source, offsets, register,
    sample_ids, set_bulk_boundary, set_state, version_info, Cutover, ProjectionInfo, State, CUTOVER_LOCK_TIMEOUT,
    EVENT_STORE,
};
pub use rows::{column_list, column_types, load_all_rows, load_rows, row_from_sql, sql_type, table_checksum, SqlValue};
pub use schema::{
    add_primary_key, check_identifiers, create_version_table, drop_version, ensure_schema, has_primary_key,
    qualified_table, version_partition_table,
};
pub use snapshots::{
    drop_snapshots, latest_snapshot, prepare_latest_snapshot, snapshot_stats, write_snapshots, Snapshot, SnapshotHit,
};
pub use status::{
    build_progress, counts, log_partition_sizes, record_build_progress, BuildEstimate, BuildPhase, BuildProgress,
    Counts,
};
pub use write::{
    commit_tail_batch, load_marks, repair_row, write_partition, write_source_partition, DeadLetter, PartitionBatch,
    TailBatch,
};

/// Errors of the read side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("projection version {0} is not registered")]
    UnknownVersion(String),
    #[error("projection version {version} is {state}, expected {expected}")]
    WrongState { version: String, state: State, expected: &'static str },
    #[error("rollback to {version} refused: its table read.{table} is gone")]
    TableGone { version: String, table: String },
    #[error("cutover to {version} refused: it lags the active version {active} by {lag_events} events on {lagging} of {partitions} partitions")]
    Lagging { version: String, active: String, lag_events: i64, lagging: usize, partitions: usize },
    #[error("stored row of aggregate {aggregate_id} in {table} is invalid: {reason}")]
    BadRow { table: String, aggregate_id: String, reason: String },
    #[error(
        "projection {version}: {what} name {name:?} is not a lowercase snake_case SQL identifier of at most 58 bytes"
    )]
    BadIdentifier { version: String, name: String, what: String },
    #[error(
        "projection version {version} is folded from {built_from}, not from {reading}: its positions mean nothing \
         in another log (drop it to rebuild it from this one, or use another version name)"
    )]
    OtherLog { version: String, built_from: String, reading: String },
    #[error(
        "cutover to {version} refused: it is folded from {source_log} and the active version {active} from \
         {active_log}; positions in two logs cannot be compared"
    )]
    MixedLogs { version: String, source_log: String, active: String, active_log: String },
    #[error("{0}")]
    NoFamily(String),
    #[error("offsets of {version} did not advance on {missing} partitions: another writer moved them")]
    OffsetConflict { version: String, missing: usize },
    #[error(
        "cutover to {version} gave up after waiting {waited_ms} ms for a lock on the registry or the offsets \
         (lock_timeout; another session holds one: see pg_locks); nothing was switched"
    )]
    LockTimeout { version: String, waited_ms: u64 },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
