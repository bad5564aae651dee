//! The adoption's first step: check the app's table, create the log, and claim the table (the
//! position column with its default for new rows, in one short transaction), then index it.

use std::time::Duration;

use fold::IdKind;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::spec::{quote_ident, AdoptSpec};
use crate::{Error, Result};

const ADOPTION_SCHEMA: &str = include_str!("../sql/adoption.sql");

/// The app's table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceTable {
    /// The type of its stream ids, hence of the log's.
    pub id_kind: IdKind,
    /// Whether it has a unique index on exactly (id, version), as event stores do.
    pub unique_stream_version: bool,
    /// Whether the position column is already there (a claim that committed before).
    pub has_tx_column: bool,
    /// The planner's estimate of its rows.
    pub rows_estimate: i64,
}

/// Where an adoption stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Claimed: the history (rows without a position) is being copied.
    History,
    /// The history is in the log and indexed: new rows are fed.
    Feed,
}

/// The stored state of the adoption (`log.adoption`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adoption {
    pub spec: AdoptSpec,
    pub id_kind: IdKind,
    pub phase: Phase,
    /// History rows copied so far.
    pub history_rows: i64,
    /// The feed's cursor: every new row at or below `(tx, id, version)` is in the log.
    pub cursor_tx: i64,
    pub cursor_id: Option<String>,
    pub cursor_version: i32,
    /// Rows fed after the history.
    pub fed_rows: i64,
    /// The table's updates and deletes (PostgreSQL's statistics) when it was claimed.
    pub changes_baseline: i64,
}

/// Checks the app's table: it exists, the named columns exist with types the log can take, and
/// the position column, if present, is a bigint.
pub async fn inspect(client: &Client, spec: &AdoptSpec) -> Result<SourceTable> {
    spec.validate()?;
    let table = spec.table.quoted();
    let relkind: Option<String> = client
        .query_one("SELECT (SELECT relkind::TEXT FROM pg_class WHERE oid = to_regclass($1))", &[&table])
        .await?
        .get(0);
    match relkind.as_deref() {
        Some("r") | Some("p") => {}
        Some(other) => {
            return Err(Error::Adopt(format!("{} is not a table (relkind {other})", spec.table)));
        }
        None => return Err(Error::Adopt(format!("table {} does not exist", spec.table))),
    }
    let rows = client
        .query(
            "SELECT a.attname::TEXT, t.typname::TEXT FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .await?;
    let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let type_of = |flag: &str, name: &str| -> Result<String> {
        columns.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            Error::Adopt(format!("{flag} {name}: {} has no such column (it has: {})", spec.table, names.join(", ")))
        })
    };
    let wrong = |flag: &str, name: &str, ty: &str, expected: &str| {
        Error::Adopt(format!("{flag} {name} is of type {ty}, expected {expected}"))
    };
    let id_type = type_of("--id", &spec.id_column)?;
    let id_kind = match id_type.as_str() {
        "int8" | "int4" | "int2" => IdKind::Bigint,
        "uuid" => IdKind::Uuid,
        "text" | "varchar" | "bpchar" => IdKind::Text,
        other => return Err(wrong("--id", &spec.id_column, other, "bigint, uuid or text")),
    };
    let version_type = type_of("--version", &spec.version_column)?;
    if !["int2", "int4", "int8"].contains(&version_type.as_str()) {
        return Err(wrong("--version", &spec.version_column, &version_type, "an integer"));
    }
    let type_type = type_of("--type", &spec.type_column)?;
    if !["text", "varchar", "bpchar"].contains(&type_type.as_str()) {
        return Err(wrong("--type", &spec.type_column, &type_type, "text"));
    }
    let data_type = type_of("--data", &spec.data_column)?;
    if !["jsonb", "json", "text", "varchar"].contains(&data_type.as_str()) {
        return Err(wrong("--data", &spec.data_column, &data_type, "jsonb, json or text holding JSON"));
    }
    let ts_type = type_of("--ts", &spec.ts_column)?;
    if !["timestamptz", "timestamp"].contains(&ts_type.as_str()) {
        return Err(wrong("--ts", &spec.ts_column, &ts_type, "timestamptz"));
    }
    let has_tx_column = match columns.iter().find(|(n, _)| *n == spec.tx_column) {
        Some((_, ty)) if ty == "int8" => true,
        Some((_, ty)) => {
            return Err(Error::Adopt(format!(
                "{} already has a column {} of type {ty}: name another with --tx-column",
                spec.table, spec.tx_column
            )))
        }
        None => false,
    };
    let unique_stream_version: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique \
             AND i.indnkeyatts = 2 AND i.indpred IS NULL \
             AND (SELECT array_agg(a.attname::TEXT ORDER BY a.attname) FROM pg_attribute a \
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::INT2[])) \
                 = (SELECT array_agg(c ORDER BY c) FROM unnest(ARRAY[$2, $3]) c))",
            &[&table, &spec.id_column, &spec.version_column],
        )
        .await?
        .get(0);
    let rows_estimate: i64 = client
        .query_one("SELECT greatest(reltuples, 0)::BIGINT FROM pg_class WHERE oid = to_regclass($1)", &[&table])
        .await?
        .get(0);
    Ok(SourceTable { id_kind, unique_stream_version, has_tx_column, rows_estimate })
}

/// The stored adoption, if this database's log was adopted.
pub async fn adoption(client: &Client) -> Result<Option<Adoption>> {
    let exists: bool = client.query_one("SELECT to_regclass('log.adoption') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    let Some(r) = client
        .query_opt(
            "SELECT spec, id_type, phase, history_rows, cursor_tx, cursor_id, cursor_version, fed_rows, \
                    changes_baseline FROM log.adoption",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let spec: serde_json::Value = r.get(0);
    let spec: AdoptSpec = serde_json::from_value(spec)
        .map_err(|e| Error::Adopt(format!("log.adoption holds an unreadable spec: {e}")))?;
    let id_type: String = r.get(1);
    let id_kind = IdKind::from_name(&id_type).ok_or(Error::BadIdType(id_type))?;
    let phase = match r.get::<_, &str>(2) {
        "feed" => Phase::Feed,
        _ => Phase::History,
    };
    Ok(Some(Adoption {
        spec,
        id_kind,
        phase,
        history_rows: r.get(3),
        cursor_tx: r.get(4),
        cursor_id: r.get(5),
        cursor_version: r.get(6),
        fed_rows: r.get(7),
        changes_baseline: r.get(8),
    }))
}

/// Updates plus deletes of the app's table so far, by PostgreSQL's statistics.
pub(crate) async fn source_changes<C: tokio_postgres::GenericClient>(client: &C, spec: &AdoptSpec) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT n_tup_upd + n_tup_del FROM pg_stat_all_tables WHERE relid = to_regclass($1)), 0)",
            &[&spec.table.quoted()],
        )
        .await?;
    Ok(row.get(0))
}

/// Claims the app's table for the log: creates the log (with the table's id type, `partitions`
/// hash partitions) if this database has none, then in one transaction adds the position column
/// (nullable, so no rewrite) with the writer's transaction id as its default for new rows, and
/// records the adoption. The transaction waits at most `lock_timeout` for the table's lock at
/// a time (app writers queue behind a waiting ALTER), retried up to `attempts` times.
/// Idempotent: an adoption of the same table resumes; another table is refused.
pub async fn claim(
    client: &mut Client,
    spec: &AdoptSpec,
    partitions: u32,
    lock_timeout: Duration,
    attempts: u32,
) -> Result<Adoption> {
    let source = inspect(client, spec).await?;
    if !source.unique_stream_version {
        warn!(
            table = %spec.table,
            "no unique index on ({}, {}): two events at one version of a stream will stop the import",
            spec.id_column,
            spec.version_column
        );
    }
    if let Some(existing) = adoption(client).await? {
        if existing.spec != *spec {
            return Err(Error::Adopt(format!(
                "this database's log was adopted from {} ({} = {}, ...); adopt another table into another database",
                existing.spec.table, existing.spec.id_column, existing.id_kind
            )));
        }
        return Ok(existing);
    }
    if crate::exists(client).await? {
        let kind = crate::id_kind(client).await?;
        let events: bool = client.query_one("SELECT EXISTS (SELECT 1 FROM log.events)", &[]).await?.get(0);
        if events || kind != source.id_kind {
            return Err(Error::Adopt(format!(
                "this database already has a log ({kind} ids{}): adopt into a database without one",
                if events { ", with events" } else { "" }
            )));
        }
    } else {
        crate::create(client, partitions, source.id_kind).await?;
        info!(partitions, id_type = %source.id_kind, "log created for the adopted table");
    }
    client.batch_execute(ADOPTION_SCHEMA).await?;
    let table = spec.table.quoted();
    let column = quote_ident(&spec.tx_column);
    let spec_json = serde_json::to_value(spec).expect("a spec serializes");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = {}", lock_timeout.as_millis().max(1))).await?;
        let ddl = format!(
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} BIGINT; \
             ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT (pg_current_xact_id()::TEXT::BIGINT);"
        );
        match tx.batch_execute(&ddl).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) && attempt < attempts => {
                drop(tx);
                warn!(
                    table = %spec.table,
                    attempt,
                    lock_timeout_ms = lock_timeout.as_millis() as u64,
                    "the app's table is busy (a long transaction holds it): claim retried"
                );
                tokio::time::sleep(lock_timeout * attempt.min(5)).await;
                continue;
            }
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return Err(Error::Adopt(format!(
                    "could not lock {} for the {}ms the claim may hold writers in {attempts} attempts: \
                     a long transaction holds it; end it or retry with a larger --lock-timeout",
                    spec.table,
                    lock_timeout.as_millis()
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let baseline = source_changes(&tx, spec).await?;
        tx.execute(
            "INSERT INTO log.adoption (spec, id_type, phase, changes_baseline) VALUES ($1, $2, 'history', $3)",
            &[&spec_json, &source.id_kind.as_str(), &baseline],
        )
        .await?;
        tx.commit().await?;
        info!(table = %spec.table, column = %spec.tx_column, "table claimed: new rows carry their writer's xid");
        break;
    }
    adoption(client).await?.ok_or_else(|| Error::Adopt("the claim committed no adoption row".into()))
}

/// The index the feed reads new rows by, `(tx, id, version)` for rows with a position, built
/// `CONCURRENTLY` (the app's writers go on); a leftover invalid one (an interrupted build) is
/// dropped and built again.
pub async fn ensure_feed_index(client: &Client, spec: &AdoptSpec) -> Result<()> {
    let name = feed_index_name(client, spec).await?;
    let qualified = format!("{}.{}", quote_ident(&spec.table.schema), quote_ident(&name));
    let valid: Option<bool> = client
        .query_one("SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))", &[&qualified])
        .await?
        .get(0);
    match valid {
        Some(true) => return Ok(()),
        Some(false) => {
            warn!(index = %qualified, "an interrupted build left the feed's index invalid: building it again");
            client.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}")).await?;
        }
        None => {}
    }
    info!(index = %qualified, "building the feed's index concurrently (the app's writers go on)");
    client
        .batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({}, {}, {}) WHERE {} IS NOT NULL",
            quote_ident(&name),
            spec.table.quoted(),
            quote_ident(&spec.tx_column),
            quote_ident(&spec.id_column),
            quote_ident(&spec.version_column),
            quote_ident(&spec.tx_column),
        ))
        .await?;
    Ok(())
}

/// `{table}_reproject_tx`, or `reproject_tx_{oid}` when that would pass 63 bytes.
async fn feed_index_name(client: &Client, spec: &AdoptSpec) -> Result<String> {
    let name = format!("{}_reproject_tx", spec.table.name);
    if name.len() <= 63 {
        return Ok(name);
    }
    let oid: u32 = client.query_one("SELECT to_regclass($1)::OID", &[&spec.table.quoted()]).await?.get(0);
    Ok(format!("reproject_tx_{oid}"))
}
