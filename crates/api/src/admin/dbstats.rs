//! Gauges read from the database when `/metrics` is scraped: per version, the events the
//! operator must see (held, dead-lettered, quarantined), the lag, a building version's
//! progress and ETA; and a few of PostgreSQL's own figures (`pg_stat_database`). Refreshed at
//! most once a second, on a connection of its own with a short statement timeout, so that a
//! scrape never queues point reads and never scans for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::telemetry::{
    BUILD_ETA, BUILD_PROGRESS, DEAD_LETTERS, HELD_EVENTS, LAG_EVENTS, PG_BACKENDS, PG_BLOCKS_HIT, PG_BLOCKS_READ,
    PG_DATABASE_BYTES, PG_DEADLOCKS, PG_OLDEST_XACT_SECONDS, PG_TUPLES_INSERTED, PG_TUPLES_RETURNED, PG_XACT_COMMIT,
    PG_XACT_ROLLBACK, QUARANTINED,
};

const PG_STAT_DATABASE: &str = include_str!("../sql/pg_stat_database.sql");
const LOG_ROWS: &str = include_str!("../sql/log_rows.sql");

/// At most one refresh per this interval, however often `/metrics` is scraped.
const MIN_INTERVAL: Duration = Duration::from_millis(900);

/// A version whose estimated lag is below this is counted exactly (a scan of the lag itself);
/// above it, the estimate is reported, so a scrape of a version at the start of a long log
/// costs nothing.
const EXACT_LAG_BELOW: i64 = 1_000_000;

/// Each statement of a refresh gives up after this long.
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// The last refresh of each server in this process (keyed by its pool's address: the tests run
/// several servers in one process).
static LAST: Mutex<Option<HashMap<usize, Instant>>> = Mutex::new(None);

/// Refreshes the database gauges, unless that was done less than a second ago. Failures are
/// logged and leave the previous values: `/metrics` answers whatever the database does.
pub(crate) async fn refresh(pool: &crate::Pool) {
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let last = last
            .get_or_insert_with(HashMap::new)
            .entry(pool as *const crate::Pool as usize)
            .or_insert_with(|| Instant::now().checked_sub(MIN_INTERVAL * 2).unwrap_or_else(Instant::now));
        if last.elapsed() < MIN_INTERVAL {
            return;
        }
        *last = Instant::now();
    }
    let result = async {
        let client = pool.dedicated().await?;
        client.batch_execute(&format!("SET statement_timeout = {}", STATEMENT_TIMEOUT.as_millis())).await?;
        pg_stat(&client).await?;
        versions(&client).await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "database gauges not refreshed");
    }
}

#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Read(#[from] readmodel::Error),
}

async fn pg_stat(client: &Client) -> Result<(), RefreshError> {
    let r = client.query_one(PG_STAT_DATABASE, &[]).await?;
    metrics::gauge!(PG_BACKENDS).set(r.get::<_, i64>(0) as f64);
    metrics::counter!(PG_XACT_COMMIT).absolute(r.get::<_, i64>(1).max(0) as u64);
    metrics::counter!(PG_XACT_ROLLBACK).absolute(r.get::<_, i64>(2).max(0) as u64);
    metrics::counter!(PG_BLOCKS_READ).absolute(r.get::<_, i64>(3).max(0) as u64);
    metrics::counter!(PG_BLOCKS_HIT).absolute(r.get::<_, i64>(4).max(0) as u64);
    metrics::counter!(PG_TUPLES_RETURNED).absolute(r.get::<_, i64>(5).max(0) as u64);
    metrics::counter!(PG_TUPLES_INSERTED).absolute(r.get::<_, i64>(6).max(0) as u64);
    metrics::counter!(PG_DEADLOCKS).absolute(r.get::<_, i64>(7).max(0) as u64);
    metrics::gauge!(PG_DATABASE_BYTES).set(r.get::<_, i64>(8) as f64);
    metrics::gauge!(PG_OLDEST_XACT_SECONDS).set(r.get::<_, f64>(9));
    Ok(())
}

async fn versions(client: &Client) -> Result<(), RefreshError> {
    let infos = match readmodel::list(client).await {
        Ok(infos) => infos,
        // No read schema yet: nothing to report per version.
        Err(readmodel::Error::Db(e)) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let log_estimate: i64 = client.query_one(LOG_ROWS, &[]).await.map(|r| r.get(0)).unwrap_or(0);
    let counts = readmodel::counts(client).await?;
    let progress = readmodel::build_progress(client).await?;
    let now = chrono::Utc::now();
    for p in infos {
        let version = p.version.clone();
        let estimate = (log_estimate - p.events_applied).max(0);
        let lag = if estimate < EXACT_LAG_BELOW {
            readmodel::lag_events(client, &p.positions).await.unwrap_or(estimate)
        } else {
            estimate
        };
        metrics::gauge!(LAG_EVENTS, "version" => version.clone()).set(lag as f64);
        let c = counts.get(&version).copied().unwrap_or_default();
        metrics::gauge!(HELD_EVENTS, "version" => version.clone()).set(c.held_events as f64);
        metrics::gauge!(DEAD_LETTERS, "version" => version.clone()).set(c.dead_letters as f64);
        metrics::gauge!(QUARANTINED, "version" => version.clone()).set(c.quarantined_aggregates as f64);
        let (ratio, eta) = match (p.state, progress.get(&version)) {
            (readmodel::State::Building, Some(b)) => {
                let e = b.estimate(lag, now);
                (e.progress_ratio, e.eta_seconds)
            }
            (readmodel::State::Building, None) => (0.0, None),
            _ => (1.0, Some(0.0)),
        };
        metrics::gauge!(BUILD_PROGRESS, "version" => version.clone()).set(ratio);
        if let Some(eta) = eta {
            metrics::gauge!(BUILD_ETA, "version" => version).set(eta);
        }
    }
    Ok(())
}
