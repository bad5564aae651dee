//! The visibility horizon as an operator sees it: where the tail boundary is, which
//! transaction holds it there, for how long, and whether committed events wait behind it.
//!
//! The boundary ([`crate::boundary`]) is the oldest xid still running anywhere in the cluster:
//! an idle transaction in another database holds every projector of this one. Nothing here
//! moves it; this module only names the holder so that a stall explains itself.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::Result;

const HORIZON_STATUS: &str = include_str!("sql/horizon_status.sql");

/// Gauge, set by every projector and by the API: how long the transaction holding the tail
/// boundary has been running (0 when none holds it), [`HorizonStatus::age_seconds`].
pub const HORIZON_AGE_SECONDS: &str = "reproject_log_horizon_age_seconds";

/// The transaction the boundary waits for, as `pg_stat_activity` (or `pg_prepared_xacts`)
/// describes it. Without `pg_read_all_stats` (or superuser), PostgreSQL hides the state and
/// query of other roles' sessions: those fields are then `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    /// `backend` (a session) or `prepared` (a prepared transaction, `PREPARE TRANSACTION`).
    pub kind: String,
    /// The backend's process id (`None` for a prepared transaction: end it with
    /// `COMMIT PREPARED` or `ROLLBACK PREPARED`).
    pub pid: Option<i32>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    /// `idle in transaction`, `active`, ... (for a prepared transaction: its gid).
    pub state: Option<String>,
    /// When the transaction started (`xact_start`; for a prepared one, when it was prepared).
    pub xact_start: Option<DateTime<Utc>>,
    /// The start of its current or last query (200 characters at most).
    pub query: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_unknown = |s: &Option<String>| s.clone().unwrap_or_else(|| "?".to_owned());
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => write!(f, "{}", self.kind)?,
        }
        write!(
            f,
            " (database {}, user {}, application {:?}, {}, since {}",
            or_unknown(&self.database),
            or_unknown(&self.user),
            self.application.clone().unwrap_or_default(),
            or_unknown(&self.state),
            self.xact_start.map_or_else(|| "?".to_owned(), |t| t.to_rfc3339()),
        )?;
        if let Some(q) = &self.query {
            write!(f, ", query {:?}", q)?;
        }
        write!(f, ")")
    }
}

/// The horizon now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HorizonStatus {
    /// The tail boundary (xid): every event below it is final.
    pub xid: i64,
    /// Committed events exist above the boundary: projectors cannot read them until the holder
    /// ends.
    pub waiting: bool,
    /// How long the holder has been running (0 when no transaction holds an xid): the boundary
    /// has stood where it is for at most this long.
    pub age_seconds: f64,
    /// The transaction the boundary waits for, when one holds it.
    pub holder: Option<Holder>,
}

impl HorizonStatus {
    /// Whether projectors are held back: events wait above a boundary at least `threshold` old.
    pub fn stalled(&self, threshold: std::time::Duration) -> bool {
        self.waiting && self.age_seconds >= threshold.as_secs_f64()
    }
}

/// Reads the horizon, its holder and whether events wait above it, in one statement.
pub async fn horizon_status(client: &Client) -> Result<HorizonStatus> {
    let row = client.query_one(HORIZON_STATUS, &[]).await?;
    let kind: Option<String> = row.try_get(2)?;
    let holder = kind.map(|kind| -> Result<Holder> {
        Ok(Holder {
            kind,
            pid: row.try_get(3)?,
            database: row.try_get(4)?,
            user: row.try_get(5)?,
            application: row.try_get(6)?,
            state: row.try_get(7)?,
            xact_start: row.try_get(8)?,
            query: row.try_get(9)?,
        })
    });
    let holder = holder.transpose()?;
    Ok(HorizonStatus {
        xid: row.try_get(0)?,
        waiting: row.try_get(1)?,
        age_seconds: row.try_get::<_, Option<f64>>(10)?.unwrap_or(0.0).max(0.0),
        holder,
    })
}
