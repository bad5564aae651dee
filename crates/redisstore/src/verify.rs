//! A Redis version against the log: the fold of the event store up to the positions stored in
//! Redis (`projector::fold_log_at`, the PostgreSQL verify's own fold) compared row by row with
//! the rows in Redis (`projector::compare_with_fold`): 0 diffs, or the diffs named.
//!
//! Positions are read first, then the rows (SCAN): Redis has no snapshot across a scan, so
//! this check runs with no writer of the version (after the replay), unlike PostgreSQL's,
//! which reads both in one snapshot beside a live projector.

use fold::Projection;
use projector::LogVerifyReport;
use tokio_postgres::Client;

use crate::store::RedisStore;
use crate::Result;

/// Verifies `store`'s rows of `projection` against the fold of the log at its positions.
pub async fn verify<P: Projection>(client: &Client, store: &mut RedisStore, projection: &P) -> Result<LogVerifyReport> {
    let partitions = eventlog::partition_count(client).await?;
    let positions = store.positions(partitions).await?;
    let stored = store.load_all_rows(projection).await?;
    let (events, folded) = projector::fold_log_at(client, projection, &positions).await?;
    Ok(projector::compare_with_fold(projection, projection.name(), stored, folded, events))
}
