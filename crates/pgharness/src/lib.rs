//! A private PostgreSQL cluster started from the local server binaries: the embedded default of
//! the `reproject` CLI (a data directory that persists, tuned for bulk work) and the throwaway
//! cluster every integration-test binary starts once and removes when it exits.

mod bindir;
mod cluster;
mod throwaway;

pub use bindir::{find_bindir, find_bindir_from};
pub use cluster::{Cluster, ClusterConfig, Profile, Status};
pub use throwaway::{throwaway, Throwaway};

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "postgresql server binaries not found (looked in {looked}); install them with \
         `apt-get install postgresql` or set PG_BINDIR to the directory holding initdb and postgres"
    )]
    NoBinaries { looked: String },
    #[error("`{command}` failed ({status}): {output}")]
    Command { command: String, status: String, output: String },
    #[error("i/o error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the postgres user does not exist, and PostgreSQL refuses to run as root")]
    NoPostgresUser,
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
