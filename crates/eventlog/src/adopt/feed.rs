//! The adoption's third step, for as long as the app writes: new rows of the app's table read
//! below the horizon in `(tx, id, version)` order and appended to the log with the cursor, in
//! one transaction.
//!
//! Why nothing is skipped or copied twice: a new row's `tx` is its writer's xid (the column's
//! default); reading only `tx < horizon` (every transaction below it has ended) makes the set
//! of rows at or below the cursor final, exactly as the projectors' reads of the log are
//! (ARCHITECTURE.md, invariant 1). The rows and the cursor that covers them commit together,
//! and the log's unique (stream, version) would refuse a second copy. The feed holds a session
//! lock ([`FEED_LOCK`]): one feeder per database.

use std::time::{Duration, Instant};

use fold::{AggregateId, IdKind};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::setup::{adoption, source_changes, Adoption, Phase};
use super::spec::quote_ident;
use crate::pg::Jsonb;
use crate::{Error, Result};

/// The advisory lock one feeder holds for its session.
pub const FEED_LOCK: &str = "reproject:adopt:feed";

/// What one step of the feed did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedStep {
    /// Rows copied into the log.
    pub copied: usize,
    /// Every row below the horizon is copied.
    pub drained: bool,
    /// The horizon the step read below.
    pub horizon: i64,
}

/// The feed of one adopted table.
pub struct Feeder {
    adoption: Adoption,
    select: String,
    insert: String,
    batch: usize,
    /// When the feed last found everything below the horizon copied.
    caught_up_at: Instant,
    last_changes_check: Option<Instant>,
    reported_changes: i64,
}

impl Feeder {
    /// Opens the feed: takes the feed lock (an error if another feeder holds it) and reads the
    /// cursor. The history must be in (phase `feed`).
    pub async fn open(client: &Client, batch: usize) -> Result<Feeder> {
        let locked: bool = client.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&FEED_LOCK]).await?.get(0);
        if !locked {
            return Err(Error::Adopt("another feeder of this database's adopted table is running".into()));
        }
        let adoption = adoption(client)
            .await?
            .ok_or_else(|| Error::Adopt("this database's log was not adopted from a table".into()))?;
        if adoption.phase != Phase::Feed {
            return Err(Error::Adopt("the history import has not finished: run reproject adopt again".into()));
        }
        let spec = &adoption.spec;
        let id_type = fold::ColumnType::AggregateId.sql(adoption.id_kind);
        let (tx, id, version) =
            (quote_ident(&spec.tx_column), quote_ident(&spec.id_column), quote_ident(&spec.version_column));
        let select = format!(
            "SELECT {list}, src.{tx}, src.{id}::TEXT, src.{version} FROM {table} AS src \
             WHERE src.{tx} IS NOT NULL AND (src.{tx}, src.{id}, src.{version}) > ($1, $2::TEXT::{id_type}, $3::INT) \
             AND src.{tx} < $4 ORDER BY src.{tx}, src.{id}, src.{version} LIMIT $5",
            list = spec.select_list(id_type),
            table = spec.table.quoted(),
        );
        let insert = format!(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT i, v, t, s, p FROM unnest($1::{id_type}[], $2::INT[], $3::TEXT[], $4::TIMESTAMPTZ[], $5::JSONB[]) \
             WITH ORDINALITY AS r(i, v, t, s, p, n) ORDER BY n"
        );
        let reported_changes = adoption.changes_baseline;
        Ok(Feeder {
            adoption,
            select,
            insert,
            batch: batch.max(1),
            caught_up_at: Instant::now(),
            last_changes_check: None,
            reported_changes,
        })
    }

    /// The adoption as the feed last committed it.
    pub fn adoption(&self) -> &Adoption {
        &self.adoption
    }

    /// Reads up to `batch` new rows below the horizon and appends them with the cursor.
    pub async fn step(&mut self, client: &mut Client) -> Result<FeedStep> {
        let step = feed_step(client, &mut self.adoption, &self.select, &self.insert, self.batch).await?;
        if step.drained {
            self.caught_up_at = Instant::now();
        }
        metrics::gauge!(super::metric::LAG_SECONDS).set(self.caught_up_at.elapsed().as_secs_f64());
        self.watch_changes(client).await;
        Ok(step)
    }

    /// Every ten seconds: whether the app's table had updates or deletes since its adoption
    /// (PostgreSQL's statistics), which the log does not follow; a WARN when the count grows.
    async fn watch_changes(&mut self, client: &Client) {
        if self.last_changes_check.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        self.last_changes_check = Some(Instant::now());
        let Ok(now) = source_changes(client, &self.adoption.spec).await else {
            return;
        };
        let since = (now - self.adoption.changes_baseline).max(0);
        metrics::gauge!(super::metric::SOURCE_CHANGES).set(since as f64);
        if now > self.reported_changes {
            warn!(
                table = %self.adoption.spec.table,
                updated_or_deleted = since,
                "rows of the adopted table were updated or deleted since its adoption: the log keeps the events as \
                 they were inserted; `reproject adopt --check` names the rows that differ"
            );
            self.reported_changes = now;
        }
    }
}

/// One step of the feed (see [`Feeder::step`]); `adoption`'s cursor moves with the commit.
pub async fn feed_step(
    client: &mut Client,
    adoption: &mut Adoption,
    select: &str,
    insert: &str,
    batch: usize,
) -> Result<FeedStep> {
    let horizon = crate::boundary(client).await?;
    let cursor_id = adoption.cursor_id.clone().unwrap_or_else(|| lowest_id(adoption.id_kind));
    let tx = client.transaction().await?;
    let rows = tx
        .query(select, &[&adoption.cursor_tx, &cursor_id, &adoption.cursor_version, &horizon, &(batch as i64)])
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(FeedStep { copied: 0, drained: true, horizon });
    }
    let mut ids: Vec<AggregateId> = Vec::with_capacity(rows.len());
    let mut versions: Vec<i32> = Vec::with_capacity(rows.len());
    let mut types: Vec<String> = Vec::with_capacity(rows.len());
    let mut tss: Vec<chrono::DateTime<chrono::Utc>> = Vec::with_capacity(rows.len());
    let mut payloads: Vec<Jsonb> = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: AggregateId = r.try_get(0)?;
        let v: i32 = r.try_get(1)?;
        if v < 1 {
            return Err(Error::Adopt(format!(
                "stream {id}: a new row at version {} maps below version 1 (--first-version {}): it is not copied; \
                 the feed stops here until the table or the adoption is fixed",
                v + adoption.spec.first_version - 1,
                adoption.spec.first_version
            )));
        }
        ids.push(id);
        versions.push(v);
        types.push(r.try_get(2)?);
        tss.push(r.try_get(3)?);
        payloads.push(r.try_get(4)?);
    }
    let last = rows.last().expect("rows is not empty");
    let (next_tx, next_id, next_version): (i64, String, i64) =
        (last.try_get(5)?, last.try_get(6)?, int_column(last, 7)?);
    tx.execute(insert, &[&ids, &versions, &types, &tss, &payloads]).await.map_err(|e| duplicate(e, adoption))?;
    let next_version = i32::try_from(next_version)
        .map_err(|_| Error::Adopt(format!("stream {next_id}: version {next_version} does not fit the log")))?;
    tx.execute(
        "UPDATE log.adoption SET cursor_tx = $1, cursor_id = $2, cursor_version = $3, \
         fed_rows = fed_rows + $4, fed_at = now()",
        &[&next_tx, &next_id, &next_version, &(rows.len() as i64)],
    )
    .await?;
    tx.commit().await?;
    adoption.cursor_tx = next_tx;
    adoption.cursor_id = Some(next_id);
    adoption.cursor_version = next_version;
    adoption.fed_rows += rows.len() as i64;
    metrics::counter!(super::metric::EVENTS_COPIED, "phase" => "feed").increment(rows.len() as u64);
    Ok(FeedStep { copied: rows.len(), drained: rows.len() < batch, horizon })
}

/// The app's version column read back as it is stored (any integer width).
fn int_column(row: &tokio_postgres::Row, i: usize) -> Result<i64> {
    Ok(match row.columns()[i].type_() {
        t if *t == postgres_types::Type::INT2 => i64::from(row.try_get::<_, i16>(i)?),
        t if *t == postgres_types::Type::INT4 => i64::from(row.try_get::<_, i32>(i)?),
        _ => row.try_get::<_, i64>(i)?,
    })
}

/// A copy the log refuses as a second event at one (stream, version): a row of the app's
/// table whose stream or version an UPDATE moved onto an event the log already has.
fn duplicate(e: tokio_postgres::Error, adoption: &Adoption) -> Error {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_owned();
        return Error::Adopt(format!(
            "a new row of {} is a second event at one (stream, version) of the log ({detail}): an UPDATE moved it, or \
             the table has no unique (stream, version); the feed stops here (`reproject adopt --check` names it)",
            adoption.spec.table
        ));
    }
    e.into()
}

/// The cursor's id before the first row: below every id of the kind.
pub(crate) fn lowest_id(kind: IdKind) -> String {
    match kind {
        IdKind::Bigint => i64::MIN.to_string(),
        IdKind::Uuid => "00000000-0000-0000-0000-000000000000".into(),
        IdKind::Text => String::new(),
    }
}

/// Feeds until `stop` flips, or with `stop_at_head` until every row of a transaction that had
/// started when the feed did is copied; polls every `poll` while idle. Returns the rows copied.
pub async fn follow(
    client: &mut Client,
    feeder: &mut Feeder,
    poll: Duration,
    stop_at_head: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64> {
    let target = crate::snapshot_xmax(client).await?;
    let mut copied = 0u64;
    let mut last_log = Instant::now();
    while !*stop.borrow() {
        let step = feeder.step(client).await?;
        copied += step.copied as u64;
        if last_log.elapsed() > Duration::from_secs(10) && copied > 0 {
            info!(copied, cursor_tx = feeder.adoption.cursor_tx, "feeding the log from the adopted table");
            last_log = Instant::now();
        }
        if step.drained && stop_at_head && step.horizon >= target {
            break;
        }
        if step.drained {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cursor_is_below_every_id() {
        assert_eq!(lowest_id(IdKind::Bigint), "-9223372036854775808");
        assert!(IdKind::Uuid.parse(&lowest_id(IdKind::Uuid)).is_ok());
        assert_eq!(lowest_id(IdKind::Text), "");
    }
}
