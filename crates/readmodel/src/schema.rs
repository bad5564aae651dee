//! Creating the read schema and the per-version tables.

use fold::{AnyProjection, IdKind};
use tokio_postgres::Client;

use crate::Result;

const SCHEMA: &str = include_str!("sql/schema.sql");

/// A fixed key for the advisory lock that serialises schema creation between processes.
const SCHEMA_LOCK: i64 = 0x7265_7072_6f6a_0001;

/// Creates the `read` schema, its bookkeeping tables and the read function, if missing.
pub async fn ensure_schema(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
    tx.batch_execute(SCHEMA).await?;
    tx.commit().await?;
    Ok(())
}

/// `read."accounts_v4"`: the version's table, quoted. Table names come from a projection
/// (its code, not user text), and must be lowercase snake_case identifiers.
pub fn qualified_table(projection: &dyn AnyProjection) -> String {
    format!("read.\"{}\"", projection.table())
}

/// The version table's partition `p`, quoted.
pub fn version_partition_table(projection: &dyn AnyProjection, p: u32) -> String {
    format!("read.\"{}_p{p:03}\"", projection.table())
}

/// Refuses a projection whose table or column names are not lowercase snake_case SQL
/// identifiers short enough for the partition suffix, or whose columns repeat a name.
pub fn check_identifiers(projection: &dyn AnyProjection) -> Result<()> {
    let ok = |name: &str, max: usize| {
        !name.is_empty()
            && name.len() <= max
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let bad = |name: &str, what: &str| crate::Error::BadIdentifier {
        version: projection.name().to_owned(),
        name: name.to_owned(),
        what: what.to_owned(),
    };
    // 63 bytes, less the partitions' `_p000` suffix.
    let table = projection.table();
    if !ok(&table, 58) {
        return Err(bad(&table, "table"));
    }
    let mut seen = std::collections::HashSet::new();
    for c in projection.all_columns() {
        if !ok(c.name, 63) {
            return Err(bad(c.name, "column"));
        }
        if !seen.insert(c.name) {
            return Err(bad(c.name, "column (named twice)"));
        }
    }
    Ok(())
}

/// Creates the version's table, hash-partitioned like the log so that log partition `p` folds
/// into table partition `p`, with an `aggregate_id` of the log's id type `id`. Without a
/// primary key: see [`add_primary_key`].
pub async fn create_version_table(
    client: &Client,
    projection: &dyn AnyProjection,
    partitions: u32,
    id: IdKind,
) -> Result<()> {
    check_identifiers(projection)?;
    let columns: Vec<String> = projection
        .all_columns()
        .iter()
        .map(|c| format!("{} {}{}", c.name, c.ty.sql(id), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {table} ({columns}) PARTITION BY HASH (aggregate_id);",
        table = qualified_table(projection),
        columns = columns.join(", ")
    );
    for p in 0..partitions {
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES WITH (MODULUS {partitions}, REMAINDER {p});",
            version_partition_table(projection, p),
            qualified_table(projection)
        ));
    }
    client.batch_execute(&sql).await?;
    Ok(())
}

/// Whether the version's table has its primary key (built once the bulk load is done).
pub async fn has_primary_key(client: &Client, projection: &dyn AnyProjection) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p')",
            &[&qualified_table(projection)],
        )
        .await?;
    Ok(row.get(0))
}

/// Builds the primary key on `aggregate_id` (all partitions) and analyzes the table.
pub async fn add_primary_key(client: &Client, projection: &dyn AnyProjection) -> Result<()> {
    if !has_primary_key(client, projection).await? {
        client
            .batch_execute(&format!(
                "ALTER TABLE {t} ADD PRIMARY KEY (aggregate_id); ANALYZE {t};",
                t = qualified_table(projection)
            ))
            .await?;
    }
    Ok(())
}

/// Drops a version's table and every trace of it in the registry, so it can be rebuilt from
/// scratch. Refuses the active version.
pub async fn drop_version(client: &mut Client, projection: &dyn AnyProjection) -> Result<()> {
    let tx = client.transaction().await?;
    let state: Option<String> = tx
        .query_opt("SELECT state FROM read.projections WHERE version = $1 FOR UPDATE", &[&projection.name()])
        .await?
        .map(|r| r.get(0));
    if state.as_deref() == Some("active") {
        return Err(crate::Error::WrongState {
            version: projection.name().to_owned(),
            state: crate::State::Active,
            expected: "not active",
        });
    }
    for table in [
        "held_events",
        "dead_letters",
        "quarantined_aggregates",
        "untracked_aggregates",
        "build_progress",
        "projection_offsets",
        "projections",
    ] {
        tx.execute(&format!("DELETE FROM read.{table} WHERE version = $1"), &[&projection.name()]).await?;
    }
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", qualified_table(projection))).await?;
    tx.commit().await?;
    Ok(())
}
