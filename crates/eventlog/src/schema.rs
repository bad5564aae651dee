//! Creating the log and its partitions, and reading its metadata.

use tokio_postgres::Client;

use crate::{Error, Result};

const SCHEMA: &str = include_str!("sql/schema.sql");
const INDEXES: &str = include_str!("sql/indexes.sql");

/// The name of partition `p` (without the `log.` schema).
pub fn partition_table(p: u32) -> String {
    format!("events_p{p:03}")
}

/// Whether the log has been created.
pub async fn exists(client: &Client) -> Result<bool> {
    let row = client.query_one("SELECT to_regclass('log.meta') IS NOT NULL", &[]).await?;
    Ok(row.get(0))
}

/// Creates the log with `partitions` hash partitions, without its indexes (see
/// [`ensure_indexes`]) so that a bulk load runs at COPY speed.
pub async fn create(client: &mut Client, partitions: u32) -> Result<()> {
    if !(1..=1024).contains(&partitions) {
        return Err(Error::BadPartitionCount(partitions));
    }
    if exists(client).await? {
        return Err(Error::AlreadyExists(partition_count(client).await?));
    }
    let tx = client.transaction().await?;
    tx.batch_execute(SCHEMA).await?;
    for p in 0..partitions {
        tx.batch_execute(&format!(
            "CREATE TABLE log.{} PARTITION OF log.events FOR VALUES WITH (MODULUS {partitions}, REMAINDER {p})",
            partition_table(p)
        ))
        .await?;
    }
    tx.execute("INSERT INTO log.meta (partitions) VALUES ($1)", &[&(partitions as i32)]).await?;
    tx.commit().await?;
    Ok(())
}

/// Builds the log's unique `(aggregate_id, version)` constraint and its position index, if
/// they are not there yet.
pub async fn ensure_indexes(client: &Client) -> Result<()> {
    let row = client.query_one("SELECT to_regclass('log.events_position_key') IS NOT NULL", &[]).await?;
    if !row.get::<_, bool>(0) {
        client.batch_execute(INDEXES).await?;
        client.batch_execute("ANALYZE log.events").await?;
    }
    Ok(())
}

/// The number of partitions the log was created with.
pub async fn partition_count(client: &Client) -> Result<u32> {
    if !exists(client).await? {
        return Err(Error::Missing);
    }
    let row = client.query_one("SELECT partitions FROM log.meta", &[]).await?;
    Ok(row.get::<_, i32>(0) as u32)
}

/// Size figures of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LogStats {
    pub events: i64,
    pub aggregates: i64,
    pub bytes: i64,
}

impl LogStats {
    /// Exact counts (a full scan: use for reports, not on hot paths).
    pub async fn measure(client: &Client) -> Result<LogStats> {
        let row = client.query_one("SELECT count(*), count(DISTINCT aggregate_id) FROM log.events", &[]).await?;
        let bytes = client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::BIGINT \
                 FROM pg_inherits WHERE inhparent = 'log.events'::regclass",
                &[],
            )
            .await?;
        Ok(LogStats { events: row.get(0), aggregates: row.get(1), bytes: bytes.get(0) })
    }
}
