//! Redis as a read-model store: a version's rows as one hash per aggregate, and the positions
//! they reach, written together by one Lua script per batch that also keeps the version guard
//! (a row never moves back) and a fencing token (a writer that lost its PostgreSQL claim
//! cannot write after its successor). The log stays in PostgreSQL; this is one more place a
//! fold of it can live, rebuilt from it and verified against it.
//!
//! - [`layout`]: the keys (one hash tag per version) and the values' text form;
//! - [`store`]: the batch write and the reads;
//! - [`mod@replay`]: the bulk replay from the event store, through the projector's fold;
//! - [`mod@tail`]: catch-up from the stored positions, held events never passed by a position;
//! - [`mod@verify`]: the rows against the fold of the log at the stored positions;
//! - [`snapshot`]: snapshots of a fold at a consistent cut, a rebuild's start instead of offset 0;
//! - [`server`]: a throwaway or long-lived `redis-server` (AOF, `appendfsync always`).

pub mod layout;
pub mod replay;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod tail;
pub mod verify;

pub use layout::Layout;
pub use replay::{replay, RedisReplayConfig, RedisReplayReport};
pub use server::{Embedded, Throwaway};
pub use store::{check_url, RedisStore, Written};
pub use tail::{catch_up, RedisTailConfig, RedisTailReport};
pub use verify::verify;

/// What can go wrong in the Redis store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Projector(#[from] projector::Error),
    #[error(transparent)]
    ReadModel(#[from] readmodel::Error),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("redis-server: {0}")]
    Server(String),
    #[error("{0}")]
    Config(String),
    #[error("unexpected data in redis: {0}")]
    BadData(String),
    #[error("partition {partition}: fenced: token {token} is older than the stored {stored} (the claim moved to another worker)")]
    Fenced { partition: u32, token: i64, stored: i64 },
    #[error("worker: {0}")]
    Worker(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
