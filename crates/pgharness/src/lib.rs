//! A private PostgreSQL cluster started from the local server binaries: the embedded default of
//! the `reproject` CLI (a data directory that persists, tuned for bulk work) and the throwaway
//! cluster every integration-test binary starts once and removes when it exits.
//!
//! PostgreSQL refuses to run as root, so when this process is root every server binary runs as
//! the `postgres` user through `runuser`, and the directories it writes are handed to that user.
//! The clusters listen on 127.0.0.1 only, on a free port, with no Unix socket, and let only
//! the `postgres` superuser in, with a random password generated at initdb (`scram-sha-256`;
//! see `auth`).

mod auth;
mod bindir;
mod cluster;
mod exec;
mod sql;
mod throwaway;

pub use bindir::{find_bindir, find_bindir_from};
pub use cluster::{Cluster, ClusterConfig, Profile, Status};
pub use throwaway::{throwaway, Throwaway};

/// Errors of the harness. Each names what failed and carries the tail of its output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No directory holding `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "postgresql server binaries not found (looked in {looked}); install them with \
         `apt-get install postgresql-15` or set PG_BINDIR to the directory holding initdb, pg_ctl and postgres"
    )]
    NoBinaries {
        /// Where we looked, in order.
        looked: String,
    },
    /// A program could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why the spawn failed.
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stdout and stderr (and of the server log, for a start).
        output: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried, e.g. "creating".
        action: &'static str,
        /// The path it was tried on.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// We are root and there is no `postgres` user to run the server as.
    #[error(
        "no `postgres` user to run the server as, and postgresql refuses to run as root; \
         create it with `useradd --system postgres`"
    )]
    NoPostgresUser,
    /// No loopback port could be bound.
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
    /// A cluster runs in the data directory, but neither its pid file nor our state file says
    /// on which port.
    #[error("a cluster runs in {dir} but its port is unknown; stop it with `pg_ctl -D {dir} stop`")]
    UnknownPort {
        /// The data directory.
        dir: String,
    },
    /// The cluster's password file cannot be read (it is readable only by the account that
    /// owns the cluster, or root).
    #[error("cannot read the cluster's password from {path}: {source} (only the cluster's owner or root can)")]
    Password {
        /// The password file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An SQL statement against the cluster failed.
    #[error("{what} on {url} failed: {source}")]
    Sql {
        /// What we were doing, e.g. "creating database reproject".
        what: String,
        /// The connection URL.
        url: String,
        /// The client's error.
        source: tokio_postgres::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
