//! The adoption's second step: the history (the rows the claim found, without a position)
//! copied into the log in chunks, each chunk with its progress in one transaction.
//!
//! Order: by the latest time seen so far in the row's stream (`max(ts)` over its versions up to
//! this one), then stream, then version. Within a stream that is version order, so every
//! version gets a larger `global_seq` than its predecessor (an offset cut of the log is a
//! prefix of every stream, as on a log its writers appended); across streams it follows time,
//! so offsets mean roughly "when". A resumed import skips the rows already copied (the order is
//! total and the history is a fixed set: no row can join it after the claim).

use std::time::Instant;

use fold::{AggregateId, IdKind};
use futures::{pin_mut, StreamExt};
use postgres_types::Type;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::error::SqlState;
use tracing::info;

use super::setup::{adoption, Phase};
use super::spec::quote_ident;
use crate::pg::Jsonb;
use crate::read::id_sql_type;
use crate::{Error, Result};

/// What the history import did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct HistoryReport {
    /// Rows copied by this run.
    pub rows: i64,
    /// Rows an earlier, interrupted run had copied.
    pub resumed_from: i64,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Seconds spent building the log's indexes after the copy.
    pub index_seconds: f64,
}

/// Copies the history into the log (see the module docs), `chunk` rows a transaction, calling
/// `progress` with the rows copied so far; then builds the log's indexes and moves the
/// adoption to its feed phase. Does nothing once the history is in.
pub async fn import_history(database_url: &str, chunk: usize, mut progress: impl FnMut(i64)) -> Result<HistoryReport> {
    let mut writer = crate::connect(database_url).await?;
    let Some(adopted) = adoption(&writer).await? else {
        return Err(Error::Adopt("this database's log was not adopted from a table (run reproject adopt)".into()));
    };
    if adopted.phase == Phase::Feed {
        return Ok(HistoryReport { resumed_from: adopted.history_rows, ..HistoryReport::default() });
    }
    let spec = &adopted.spec;
    let kind = adopted.id_kind;
    let reader = crate::connect(database_url).await?;
    let started = Instant::now();
    let id = quote_ident(&spec.id_column);
    let version = quote_ident(&spec.version_column);
    let sql = format!(
        "COPY (SELECT {select} FROM (SELECT *, max({ts}::TIMESTAMPTZ) OVER (PARTITION BY {id} ORDER BY {version}) \
         AS reproject_order FROM {table} WHERE {tx} IS NULL) h ORDER BY h.reproject_order, h.{id}, h.{version} \
         OFFSET {offset}) TO STDOUT (FORMAT binary)",
        select = spec.select_list(fold::ColumnType::AggregateId.sql(kind)),
        ts = quote_ident(&spec.ts_column),
        table = spec.table.quoted(),
        tx = quote_ident(&spec.tx_column),
        offset = adopted.history_rows,
    );
    if adopted.history_rows > 0 {
        info!(copied = adopted.history_rows, "resuming the history import");
    }
    let types = [id_sql_type(kind), Type::INT4, Type::TEXT, Type::TIMESTAMPTZ, Type::JSONB];
    let rows = BinaryCopyOutStream::new(reader.copy_out(sql.as_str()).await?, &types);
    pin_mut!(rows);
    let mut copied = 0i64;
    let mut done = false;
    while !done {
        let tx = writer.transaction().await?;
        let sink =
            tx.copy_in("COPY log.events (aggregate_id, version, type, ts, payload) FROM STDIN (FORMAT binary)").await?;
        let out = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(out);
        let mut n = 0usize;
        while n < chunk.max(1) {
            let Some(row) = rows.next().await else {
                done = true;
                break;
            };
            let row = row?;
            let id: AggregateId = row.try_get(0)?;
            let v: i32 = row.try_get(1)?;
            if v < 1 {
                return Err(first_version_error(spec.first_version, &id, v));
            }
            let ty: &str = row.try_get(2)?;
            let ts: chrono::DateTime<chrono::Utc> = row.try_get(3)?;
            let payload: Jsonb = row.try_get(4)?;
            out.as_mut().write(&[&id, &v, &ty, &ts, &payload]).await?;
            n += 1;
        }
        out.finish().await?;
        tx.execute("UPDATE log.adoption SET history_rows = history_rows + $1", &[&(n as i64)]).await?;
        tx.commit().await?;
        copied += n as i64;
        metrics::counter!(super::metric::EVENTS_COPIED, "phase" => "history").increment(n as u64);
        progress(adopted.history_rows + copied);
    }
    let seconds = started.elapsed().as_secs_f64();
    let indexing = Instant::now();
    finish_history(&writer, kind).await?;
    let report = HistoryReport {
        rows: copied,
        resumed_from: adopted.history_rows,
        seconds,
        events_per_s: copied as f64 / seconds.max(1e-9),
        index_seconds: indexing.elapsed().as_secs_f64(),
    };
    info!(rows = copied, seconds, index_seconds = report.index_seconds, "history imported");
    Ok(report)
}

/// A version below 1 after numbering from `first_version`: the flag does not fit the table.
fn first_version_error(first_version: i32, id: &AggregateId, mapped: i32) -> Error {
    Error::Adopt(format!(
        "stream {id} has version {} in the app's table, which maps to {mapped} in the log (versions count from \
         1): the table counts from {}; give --first-version {}",
        mapped + first_version - 1,
        mapped + first_version - 1,
        (mapped + first_version - 1).clamp(0, 1),
    ))
}

/// The log's indexes (its unique (stream, version) and its position index), then the feed
/// phase. Two events of one stream at one version cannot both be in the log: the unique
/// index refuses them and the error names the stream.
async fn finish_history(client: &tokio_postgres::Client, kind: IdKind) -> Result<()> {
    match crate::ensure_indexes(client).await {
        Ok(()) => {}
        Err(Error::Db(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_owned();
            return Err(Error::Adopt(format!(
                "the app's table holds two events of one stream at one version ({detail}); the log keeps one \
                 event per version: fix the table, drop this database's log schema and adopt again ({kind} ids)"
            )));
        }
        Err(e) => return Err(e),
    }
    client.execute("UPDATE log.adoption SET phase = 'feed', history_done_at = now()", &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_below_one_names_the_flag_that_fits() {
        let e = first_version_error(1, &AggregateId::from("order-1"), 0).to_string();
        assert!(e.contains("stream order-1 has version 0") && e.contains("--first-version 0"), "{e}");
    }
}
