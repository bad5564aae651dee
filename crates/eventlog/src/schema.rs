//! Creating the log and its partitions, and reading its metadata.

use fold::IdKind;
use tokio_postgres::Client;

use crate::{Error, Result};

const SCHEMA: &str = include_str!("sql/schema.sql");
const INDEXES: &str = include_str!("sql/indexes.sql");

/// The name of partition `p` (without the `log.` schema).
pub fn partition_table(p: u32) -> String {
    format!("events_p{p:03}")
}

/// The partition PostgreSQL routes `aggregate_id` to in a log of `partitions` hash
/// partitions (`FOR VALUES WITH (MODULUS partitions, REMAINDER p)`): PostgreSQL's own
/// computation (`hashint8extended` with the hash-partition seed, combined as
/// `compute_partition_hash_value` does, modulo the partition count), so a writer can sort its
/// rows by partition before it sends them.
pub fn partition_of(aggregate_id: i64, partitions: u32) -> u32 {
    const HASH_PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;
    let hash = hash_int8_extended(aggregate_id, HASH_PARTITION_SEED);
    // hash_combine64(0, hash)
    let row_hash = hash.wrapping_add(0x49a0_f4dd_15e5_a8e3);
    (row_hash % u64::from(partitions.max(1))) as u32
}

/// PostgreSQL's `hashint8extended`: the 64-bit value folded to 32 bits, then hashed.
fn hash_int8_extended(value: i64, seed: u64) -> u64 {
    let lo = value as u32;
    let hi = (value >> 32) as u32;
    hash_uint32_extended(if value >= 0 { lo ^ hi } else { lo ^ !hi }, seed)
}

/// PostgreSQL's `hash_bytes_uint32_extended` (Bob Jenkins' lookup3 on one word, seeded).
fn hash_uint32_extended(k: u32, seed: u64) -> u64 {
    let init = 0x9e37_79b9u32.wrapping_add(4).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        // mix(a, b, c)
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
    }
    a = a.wrapping_add(k);
    // final(a, b, c)
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    (u64::from(b) << 32) | u64::from(c)
}

/// Whether the log has been created.
pub async fn exists(client: &Client) -> Result<bool> {
    let row = client.query_one("SELECT to_regclass('log.meta') IS NOT NULL", &[]).await?;
    Ok(row.get(0))
}

/// Creates the log with `partitions` hash partitions and stream ids of type `id`, without its
/// indexes (see [`ensure_indexes`]) so that a bulk load runs at COPY speed.
pub async fn create(client: &mut Client, partitions: u32, id: IdKind) -> Result<()> {
    if !(1..=1024).contains(&partitions) {
        return Err(Error::BadPartitionCount(partitions));
    }
    if exists(client).await? {
        return Err(Error::AlreadyExists(partition_count(client).await?));
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&SCHEMA.replace("{id_type}", fold::ColumnType::AggregateId.sql(id))).await?;
    for p in 0..partitions {
        tx.batch_execute(&format!(
            "CREATE TABLE log.{} PARTITION OF log.events FOR VALUES WITH (MODULUS {partitions}, REMAINDER {p})",
            partition_table(p)
        ))
        .await?;
    }
    tx.execute("INSERT INTO log.meta (partitions, id_type) VALUES ($1, $2)", &[&(partitions as i32), &id.as_str()])
        .await?;
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

/// The type of the log's stream ids (bigint for a log created before logs had a choice).
pub async fn id_kind(client: &Client) -> Result<IdKind> {
    if !exists(client).await? {
        return Err(Error::Missing);
    }
    // Read through to_jsonb so that a log.meta without the column (an older log) reads NULL.
    let row = client.query_one("SELECT to_jsonb(m) ->> 'id_type' FROM log.meta m", &[]).await?;
    let name: Option<String> = row.get(0);
    match name {
        None => Ok(IdKind::Bigint),
        Some(name) => IdKind::from_name(&name).ok_or(Error::BadIdType(name)),
    }
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
