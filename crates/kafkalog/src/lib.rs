//! The Kafka variant of the log: a topic keyed by `aggregate_id` (murmur2 of the key, as the
//! Java client's default partitioner), read by the same projectors as the event store.
//!
//! - [`KafkaLog`]: the topic's address (`kafka://HOST:PORT/TOPIC`), admin and metadata.
//! - [`record`]: one event as a record (key: the aggregate id in decimal; value: a JSON
//!   envelope with the event's `global_seq`, version, type, time and payload, and for a
//!   state-carrying topic the aggregate's state after it).
//! - [`mirror`](mod@mirror): the event store's history written into the topic, gap-safe, resumable
//!   (the outbox relay: optimistic concurrency stays in PostgreSQL, which Kafka cannot do).
//! - [`KafkaSource`]: the topic as a [`projector::Source`] for the tail path; [`replay`] the
//!   bulk rebuild from offset 0 then catch-up to the high watermarks.
//! - [`history`]: one aggregate's history by a bounded scan of its partition, refused where
//!   compaction removed records.
//! - [`Broker`]: a throwaway `tansu` broker for tests and the demo.
//!
//! Positions: the projector stores, per partition, `(next offset, 0)` in
//! `read.projection_offsets` in the same transaction as the rows ("dedup keyed by
//! (partition, offset)"); Kafka's own consumer-group offsets are not used, and no Kafka
//! transaction is (the local broker has none).

mod address;
mod broker;
pub mod compaction;
pub mod history;
pub mod mirror;
pub mod murmur2;
pub mod record;
mod replay;
mod source;

pub use address::KafkaLog;
pub use broker::{tansu_binary, Broker};
pub use mirror::{mirror, mirror_states, MirrorConfig, MirrorReport, StateCarrying};
pub use replay::{replay, KafkaReplayConfig, KafkaReplayReport};
pub use source::{consume_all, read_partition, ConsumeReport, KafkaSource};

/// Errors of the Kafka log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad Kafka log address {0:?}: expected kafka://HOST:PORT/TOPIC")]
    BadAddress(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {topic} does not exist on {brokers} (run `reproject seed --log kafka://...` first)")]
    NoTopic { brokers: String, topic: String },
    #[error("bad record at partition {partition} offset {offset}: {reason}")]
    BadRecord { partition: u32, offset: i64, reason: String },
    #[error(
        "time travel to offset {offset} of partition {partition} refused: compaction removed records of this \
         partition below offset {complete_from} (the lowest offset from which it is complete); the history \
         before it is gone, and a fold across the gap would give a wrong answer"
    )]
    Compacted { partition: u32, offset: i64, complete_from: i64 },
    #[error("the broker could not be started: {0}")]
    Broker(String),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error(transparent)]
    ReadModel(#[from] readmodel::Error),
    #[error(transparent)]
    Projector(#[from] projector::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for projector::Error {
    fn from(e: Error) -> projector::Error {
        match e {
            Error::Projector(e) => e,
            other => projector::Error::Source(other.to_string()),
        }
    }
}
