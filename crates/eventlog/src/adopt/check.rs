//! `reproject adopt --check`: the adopted table against the log, row by row, up to the feed's
//! cursor (in one snapshot, so rows in flight are not differences). What an UPDATE or DELETE
//! on the app's table did, named: the log keeps every event as it was inserted.

use serde::Serialize;
use tokio_postgres::{Client, IsolationLevel};

use super::setup::{adoption, Phase};
use super::spec::quote_ident;
use crate::{Error, Result};

/// One (stream, version) where the table and the log disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDiff {
    pub stream: String,
    /// The log's version (the table's, numbered from 1).
    pub version: i32,
    /// `missing_in_log` (in the table, not copied: its stream or version was changed after
    /// the copy), `missing_in_table` (deleted from the table) or `differs` (type or payload
    /// updated).
    pub kind: String,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Table rows compared (the history and the new rows up to the cursor).
    pub compared: i64,
    pub missing_in_log: i64,
    pub missing_in_table: i64,
    pub differs: i64,
    /// Up to ten of them.
    pub sample: Vec<RowDiff>,
    pub ok: bool,
}

/// Compares the adopted table with the log (see the module docs).
pub async fn check(client: &mut Client) -> Result<CheckReport> {
    let Some(adopted) = adoption(client).await? else {
        return Err(Error::Adopt("this database's log was not adopted from a table".into()));
    };
    if adopted.phase != Phase::Feed {
        return Err(Error::Adopt(format!(
            "the history import has copied {} rows and is not finished: run reproject adopt to finish it",
            adopted.history_rows
        )));
    }
    let mut adopted = adopted;
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    // The cursor as this transaction's snapshot sees it: the one that matches its rows.
    let cursor = tx.query_one("SELECT cursor_tx, cursor_id, cursor_version FROM log.adoption", &[]).await?;
    adopted.cursor_tx = cursor.get(0);
    adopted.cursor_id = cursor.get(1);
    adopted.cursor_version = cursor.get(2);
    let spec = &adopted.spec;
    let id_type = fold::ColumnType::AggregateId.sql(adopted.id_kind);
    let (id, version, tx_column) =
        (quote_ident(&spec.id_column), quote_ident(&spec.version_column), quote_ident(&spec.tx_column));
    let sql = format!(
        "WITH app AS ( \
             SELECT {id}::TEXT AS id, ({version} - {first} + 1)::INT AS version, \
                    md5({ty}::TEXT || ' ' || {data}::JSONB::TEXT) AS h \
             FROM {table} \
             WHERE {tx_column} IS NULL OR ({tx_column}, {id}, {version}) <= ($1, $2::TEXT::{id_type}, $3::INT)), \
         lg AS (SELECT aggregate_id::TEXT AS id, version, md5(type || ' ' || payload::TEXT) AS h FROM log.events) \
         SELECT coalesce(app.id, lg.id), coalesce(app.version, lg.version), \
                CASE WHEN lg.id IS NULL THEN 'missing_in_log' WHEN app.id IS NULL THEN 'missing_in_table' \
                     ELSE 'differs' END AS kind, \
                (SELECT count(*) FROM app) \
         FROM app FULL JOIN lg ON app.id = lg.id AND app.version = lg.version \
         WHERE app.id IS NULL OR lg.id IS NULL OR app.h <> lg.h \
         ORDER BY 1, 2",
        first = spec.first_version,
        ty = quote_ident(&spec.type_column),
        data = quote_ident(&spec.data_column),
        table = spec.table.quoted(),
    );
    let cursor_id = adopted.cursor_id.clone().unwrap_or_else(|| super::feed::lowest_id(adopted.id_kind));
    let params: [&(dyn postgres_types::ToSql + Sync); 3] = [&adopted.cursor_tx, &cursor_id, &adopted.cursor_version];
    let rows = tx.query(&sql, &params).await?;
    let compared: i64 = match rows.first() {
        Some(r) => r.get(3),
        None => {
            let count = format!(
                "SELECT count(*) FROM {} WHERE {tx_column} IS NULL \
                 OR ({tx_column}, {id}, {version}) <= ($1, $2::TEXT::{id_type}, $3::INT)",
                spec.table.quoted()
            );
            tx.query_one(&count, &params).await?.get(0)
        }
    };
    tx.commit().await?;
    let mut report = CheckReport { compared, ..CheckReport::default() };
    for r in &rows {
        let kind: String = r.get(2);
        match kind.as_str() {
            "missing_in_log" => report.missing_in_log += 1,
            "missing_in_table" => report.missing_in_table += 1,
            _ => report.differs += 1,
        }
        if report.sample.len() < 10 {
            report.sample.push(RowDiff { stream: r.get(0), version: r.get(1), kind });
        }
    }
    report.ok = rows.is_empty();
    Ok(report)
}
