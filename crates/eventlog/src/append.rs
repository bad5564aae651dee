//! Appending events: the one write path into the log (used by the producer and tests).

use chrono::{DateTime, Utc};
use fold::AggregateId;
use tokio_postgres::GenericClient;

/// An event to append. `global_seq` and `tx_id` are assigned by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub aggregate_id: AggregateId,
    pub version: i32,
    pub event_type: String,
    pub ts: DateTime<Utc>,
    /// The payload's JSON text.
    pub payload: String,
}

/// Appends one event inside the caller's transaction and returns its `global_seq`. A
/// concurrent writer that took the same `(aggregate_id, version)` makes this fail with a
/// unique violation: that is the optimistic-concurrency check.
pub async fn append_event<C: GenericClient>(client: &C, event: &NewEvent) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             VALUES ($1, $2, $3, $4, $5::TEXT::JSONB) RETURNING global_seq",
            &[&event.aggregate_id, &event.version, &event.event_type, &event.ts, &event.payload],
        )
        .await?;
    Ok(row.get(0))
}
