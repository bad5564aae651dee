//! Errors of the projectors.

/// An event in the log that cannot be folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad event in partition {partition} at global_seq {global_seq} (aggregate {aggregate_id} version {version}): {reason}")]
pub struct BadEvent {
    pub partition: u32,
    pub global_seq: i64,
    pub aggregate_id: fold::AggregateId,
    pub version: i32,
    pub reason: String,
}

/// Errors of the projectors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    BadEvent(#[from] BadEvent),
    /// Repair: the aggregate's history in the log cannot be folded (the repair writes nothing).
    #[error("aggregate {aggregate_id} cannot be repaired: {detail}")]
    Unfoldable { aggregate_id: fold::AggregateId, detail: String },
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error(transparent)]
    ReadModel(#[from] readmodel::Error),
    #[error("another projector holds version {0} (waited 30s for its lock)")]
    Locked(String),
    #[error("version {version} is {state}: {hint}")]
    WrongState { version: String, state: readmodel::State, hint: &'static str },
    #[error("unknown aggregate {0}: it has no events in the log")]
    UnknownAggregate(fold::AggregateId),
    #[error("live read probe failed: {0}")]
    Probe(String),
    #[error("replay worker failed: {0}")]
    Worker(String),
    /// The log source (a Kafka topic) failed.
    #[error("log source: {0}")]
    Source(String),
    #[error("bad configuration: {0}")]
    Config(String),
}
