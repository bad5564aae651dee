//! The bank example and the lab around the product: the bank's projections ([`bank`]: accounts
//! v3 and v4) and a second read model of the same events ([`activity`]), the [`catalog`] of
//! every projection this build knows, a deterministic log generator with a known final state,
//! the bulk seeder, a live producer that keeps appending, and the verification that compares
//! read models with the generator's truth.
//!
//! The lab never trusts a projection: [`model`] is its own, independent account model, and
//! both the generator and the producer record what they wrote in `lab.expected_accounts`, so
//! [`verify`] can check any read model against it.

pub mod activity;
pub mod bank;
pub mod catalog;
mod copy;
pub mod generate;
pub mod model;
pub mod produce;
pub mod seed;
pub mod verify;

pub use generate::{GenConfig, GenEvent, Generator};
pub use model::{AccountModel, Action, Change, Mix};
pub use produce::{ProduceConfig, ProduceReport};
pub use seed::{SeedConfig, SeedReport};
pub use verify::{DiffSample, VerifyReport};

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the event log exists but was not seeded by the lab (seed with reset to replace it)")]
    ForeignLog,
    #[error("the log was seeded with {existing}, not {requested} (seed with reset to replace it)")]
    ParamsMismatch { existing: String, requested: String },
    #[error("the log is already fully seeded with {0} (seed with reset to replace it)")]
    AlreadySeeded(String),
    #[error("another seed is running on this database")]
    Busy,
    #[error("the lab's expected state is missing (run `reproject seed` first)")]
    NotSeeded,
    #[error("{0} has no expected state in the lab (only the bank's accounts do): verify it against the log")]
    NoExpectedState(String),
    #[error("table {0} does not exist")]
    MissingTable(String),
    #[error("the generator thread failed: {0}")]
    Generator(String),
    #[error("the producer gave up after {attempts} conflicting attempts in a row")]
    TooManyConflicts { attempts: u32 },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
