//! The projections registry, offsets, held events, and the cutover transaction.

use chrono::{DateTime, Utc};
use eventlog::{partition_table, Position, RawEvent};
use fold::{AnyProjection, IdKind};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::schema::create_version_table;
use crate::{Error, Result};

/// A version's lifecycle state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Building,
    Ready,
    Active,
    Retired,
}

impl State {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Building => "building",
            State::Ready => "ready",
            State::Active => "active",
            State::Retired => "retired",
        }
    }

    fn parse(text: &str) -> State {
        match text {
            "ready" => State::Ready,
            "active" => State::Active,
            "retired" => State::Retired,
            _ => State::Building,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registry row with its positions.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionInfo {
    pub version: String,
    /// The read model this is a version of (`accounts`, `activity`).
    pub family: String,
    pub state: State,
    pub table_name: String,
    pub partitions: u32,
    pub bulk_boundary: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub positions: Vec<Position>,
    pub events_applied: i64,
    pub cutover: Option<serde_json::Value>,
    /// The type of the log's stream ids (the table's `aggregate_id` column).
    pub id_type: IdKind,
}

/// The `log_source` of a version folded from the PostgreSQL event store.
pub const EVENT_STORE: &str = "postgres";

/// A version's log, read so that a registry created before the column existed (by an older
/// build; `ensure_schema` adds it, but the API and `cutover` do not run it) reads as the event
/// store, which every version then was folded from.
const LOG_SOURCE: &str = "coalesce(to_jsonb(p) ->> 'log_source', 'postgres')";
const LOG_SOURCE_OF_VERSION: &str =
    "SELECT coalesce(to_jsonb(p) ->> 'log_source', 'postgres') FROM read.projections p WHERE version = $1";

/// The log `version` is folded from: [`EVENT_STORE`] or a Kafka topic's address.
pub async fn log_source<C: GenericClient>(client: &C, version: &str) -> Result<String> {
    client
        .query_opt(LOG_SOURCE_OF_VERSION, &[&version])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| Error::UnknownVersion(version.to_owned()))
}

/// Checks that `version` is folded from `source`, recording it if the version has never read
/// anything yet (every position at the start: just registered). [`Error::OtherLog`] otherwise.
pub async fn ensure_log_source<C: GenericClient>(client: &C, version: &str, source: &str) -> Result<()> {
    let built_from = log_source(client, version).await?;
    if built_from == source {
        return Ok(());
    }
    let fresh: bool = client
        .query_one(
            "SELECT coalesce(bool_and(position_tx = 0 AND position_seq = 0), true) AND              (SELECT bulk_boundary IS NULL FROM read.projections WHERE version = $1)              FROM read.projection_offsets WHERE version = $1",
            &[&version],
        )
        .await?
        .get(0);
    if fresh {
        client.execute("UPDATE read.projections SET log_source = $2 WHERE version = $1", &[&version, &source]).await?;
        return Ok(());
    }
    Err(Error::OtherLog { version: version.to_owned(), built_from, reading: source.to_owned() })
}

/// Registers `projection` (if it is not yet) in `state`, creates its table (its
/// `aggregate_id` of the log's id type) and its offsets rows at the start of the log. Returns the
/// registry row as it now stands.
pub async fn register(
    client: &mut Client,
    projection: &dyn AnyProjection,
    state: State,
    partitions: u32,
) -> Result<ProjectionInfo> {
    let id = eventlog::id_kind(client).await?;
    create_version_table(client, projection, partitions, id).await?;
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO read.projections (version, family, state, table_name, partitions, id_type) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (version) DO NOTHING",
            &[
                &projection.name(),
                &projection.family(),
                &state.as_str(),
                &projection.table(),
                &(partitions as i32),
                &id.as_str(),
            ],
        )
        .await?;
    if inserted == 1 {
        tx.execute(
            "INSERT INTO read.projection_offsets (version, partition, position_tx, position_seq) \
             SELECT $1, p, 0, 0 FROM generate_series(0, $2 - 1) AS p",
            &[&projection.name(), &(partitions as i32)],
        )
        .await?;
    }
    tx.commit().await?;
    version_info(client, projection.name()).await
}

/// The registry row of `version`.
pub async fn version_info<C: GenericClient>(client: &C, version: &str) -> Result<ProjectionInfo> {
    list(client)
        .await?
        .into_iter()
        .find(|p| p.version == version)
        .ok_or_else(|| Error::UnknownVersion(version.to_owned()))
}

/// Every registered version, oldest first.
pub async fn list<C: GenericClient>(client: &C) -> Result<Vec<ProjectionInfo>> {
    let rows = client
        .query(
            "SELECT p.version, p.state, p.table_name, p.partitions, p.bulk_boundary, p.created_at, p.activated_at, \
                    p.cutover, \
                    coalesce(array_agg(o.position_tx ORDER BY o.partition) FILTER (WHERE o.partition IS NOT NULL), '{}'), \
                    coalesce(array_agg(o.position_seq ORDER BY o.partition) FILTER (WHERE o.partition IS NOT NULL), '{}'), \
                    coalesce(sum(o.events_applied), 0)::BIGINT, p.family, \
                    coalesce(to_jsonb(p) ->> 'id_type', 'bigint') \
             FROM read.projections p LEFT JOIN read.projection_offsets o USING (version) \
             GROUP BY p.version ORDER BY p.created_at, p.version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let txs: Vec<i64> = r.get(8);
            let seqs: Vec<i64> = r.get(9);
            ProjectionInfo {
                version: r.get(0),
                family: r.get(11),
                state: State::parse(r.get(1)),
                table_name: r.get(2),
                partitions: r.get::<_, i32>(3) as u32,
                bulk_boundary: r.get(4),
                created_at: r.get(5),
                activated_at: r.get(6),
                cutover: r.get(7),
                positions: txs.into_iter().zip(seqs).map(|(tx, seq)| Position { tx, seq }).collect(),
                events_applied: r.get(10),
                id_type: IdKind::from_name(r.get(12)).unwrap_or_default(),
            }
        })
        .collect())
}

/// Records the bulk boundary W a replay of `version` folds below, unless one is recorded
/// already (by a first run, or by another replay process of the same version), and returns the
/// recorded one: every process and every restart of one build folds below the same W.
pub async fn set_bulk_boundary<C: GenericClient>(client: &C, version: &str, boundary: i64) -> Result<i64> {
    client
        .execute(
            "UPDATE read.projections SET bulk_boundary = $2 WHERE version = $1 AND bulk_boundary IS NULL",
            &[&version, &boundary],
        )
        .await?;
    let row = client.query_opt("SELECT bulk_boundary FROM read.projections WHERE version = $1", &[&version]).await?;
    row.and_then(|r| r.get::<_, Option<i64>>(0)).ok_or_else(|| Error::UnknownVersion(version.to_owned()))
}

/// Moves `version` to `state`. `ready` and `active` record their timestamps.
pub async fn set_state<C: GenericClient>(client: &C, version: &str, state: State) -> Result<()> {
    let n = client
        .execute(
            "UPDATE read.projections SET state = $2, \
                ready_at = CASE WHEN $2 = 'ready' THEN now() ELSE ready_at END, \
                retired_at = CASE WHEN $2 = 'retired' THEN now() ELSE retired_at END \
             WHERE version = $1",
            &[&version, &state.as_str()],
        )
        .await?;
    if n == 0 {
        return Err(Error::UnknownVersion(version.to_owned()));
    }
    Ok(())
}

/// The stored position of every partition of `version`.
pub async fn offsets<C: GenericClient>(client: &C, version: &str) -> Result<Vec<Position>> {
    let rows = client
        .query(
            "SELECT position_tx, position_seq FROM read.projection_offsets WHERE version = $1 ORDER BY partition",
            &[&version],
        )
        .await?;
    if rows.is_empty() {
        return Err(Error::UnknownVersion(version.to_owned()));
    }
    Ok(rows.iter().map(|r| Position { tx: r.get(0), seq: r.get(1) }).collect())
}

/// The held events of `version`, with their partitions.
pub async fn held_events<C: GenericClient>(client: &C, version: &str) -> Result<Vec<(u32, RawEvent)>> {
    let rows = client
        .query(
            "SELECT h.partition, h.global_seq, h.aggregate_id, h.aggregate_version, h.type, h.ts, h.payload, h.tx_id, \
                    coalesce(to_jsonb(p) ->> 'id_type', 'bigint') \
             FROM read.held_events h JOIN read.projections p USING (version) WHERE h.version = $1",
            &[&version],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let kind = IdKind::from_name(r.try_get(8)?).unwrap_or_default();
            let text: String = r.try_get(2)?;
            let aggregate_id = kind.parse(&text).map_err(|e| Error::BadRow {
                table: "read.held_events".into(),
                aggregate_id: text.clone(),
                reason: e.to_string(),
            })?;
            Ok((
                r.try_get::<_, i32>(0)? as u32,
                RawEvent {
                    global_seq: r.try_get(1)?,
                    aggregate_id,
                    version: r.try_get(3)?,
                    event_type: r.try_get(4)?,
                    ts: r.try_get(5)?,
                    payload: r.try_get::<_, eventlog::Jsonb>(6)?.0,
                    tx_id: r.try_get(7)?,
                },
            ))
        })
        .collect()
}

/// Events committed in the log after each position, summed over partitions. Costs a scan of
/// the lag itself, so use it for reports and refusals, not per batch.
pub async fn lag_events<C: GenericClient>(client: &C, positions: &[Position]) -> Result<i64> {
    let mut total = 0;
    for (p, pos) in positions.iter().enumerate() {
        let sql =
            format!("SELECT count(*) FROM log.{} WHERE (tx_id, global_seq) > ($1, $2)", partition_table(p as u32));
        total += client.query_one(&sql, &[&pos.tx, &pos.seq]).await?.get::<_, i64>(0);
    }
    Ok(total)
}

fn lag_between<'a>(
    behind: &'a [Position],
    ahead: &'a [Position],
) -> impl Iterator<Item = (usize, Position, Position)> + 'a {
    behind.iter().zip(ahead).enumerate().filter(|(_, (b, a))| b < a).map(|(p, (b, a))| (p, *b, *a))
}

/// The result of a cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Cutover {
    pub version: String,
    /// The version that was active before, if any.
    pub previous: Option<String>,
    /// The previous version's positions at the switch: the new one was at or past each.
    pub switch_positions: Vec<Position>,
    /// The new version's positions at the switch.
    pub new_positions: Vec<Position>,
    pub activated_at: DateTime<Utc>,
    /// False when the version was already active and this call changed nothing.
    pub switched: bool,
    /// True when the version was `retired` (the one active before `previous`): a rollback.
    #[serde(default)]
    pub rollback: bool,
}

/// How long one cutover transaction waits for a lock (the family's registry rows, the offsets)
/// before it gives up with [`Error::LockTimeout`], so a session holding one (a DBA's `LOCK
/// TABLE`, a stuck transaction) cannot hang a cutover; [`cutover_waiting`] tries again.
pub const CUTOVER_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// [`cutover`], tried again every 20 ms while the version lags the active one, is not ready
/// yet or waited out its lock timeout, until `deadline` (`None`: tried once). The error of the
/// last try when it passes.
pub async fn cutover_waiting(
    client: &mut Client,
    version: &str,
    deadline: Option<tokio::time::Instant>,
) -> Result<Cutover> {
    loop {
        match cutover(client, version).await {
            Err(e @ (Error::Lagging { .. } | Error::WrongState { .. } | Error::LockTimeout { .. }))
                if deadline.is_some_and(|d| tokio::time::Instant::now() < d) =>
            {
                tracing::debug!(error = %e, "cutover not yet possible: trying again");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Promotes a `ready` version to `active` in one transaction, only if its position is at or
/// past the active version's on every partition. The previous version becomes `retired` (its
/// table stays; readers that resolved it before the switch keep a complete table).
/// Idempotent: on an already active version it returns the recorded switch.
///
/// Rollback: the `retired` version that was active just before the current one (the current
/// one's recorded `previous`) can be promoted back, under the same position check, while its
/// table exists. Its table is complete (a retired version is never truncated: the replay
/// refuses it) and it is exact up to its positions, so the check makes it as safe as any
/// cutover; its projector must have been tailing it (`projector --mode live --version OLD`) for
/// it to have kept up.
pub async fn cutover(client: &mut Client, version: &str) -> Result<Cutover> {
    match switch(client, version).await {
        Err(Error::Db(e)) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(Error::LockTimeout { version: version.to_owned(), waited_ms: CUTOVER_LOCK_TIMEOUT.as_millis() as u64 })
        }
        other => other,
    }
}

/// The transaction of [`cutover`]; a lock it cannot get within [`CUTOVER_LOCK_TIMEOUT`] ends it
/// with SQLSTATE 55P03 and rolls back everything it did.
async fn switch(client: &mut Client, version: &str) -> Result<Cutover> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{}ms'", CUTOVER_LOCK_TIMEOUT.as_millis())).await?;
    // Lock the registry rows of the version's family: its cutovers serialise, and its active
    // version cannot change under us. Other families switch independently.
    let rows = tx
        .query(
            "SELECT version, state, cutover FROM read.projections \
             WHERE family = (SELECT family FROM read.projections WHERE version = $1) ORDER BY version FOR UPDATE",
            &[&version],
        )
        .await?;
    let target = rows
        .iter()
        .find(|r| r.get::<_, &str>(0) == version)
        .ok_or_else(|| Error::UnknownVersion(version.to_owned()))?;
    let state = State::parse(target.get(1));
    let logs = tx
        .query(
            &format!(
                "SELECT version, {LOG_SOURCE} FROM read.projections p \
                 WHERE family = (SELECT family FROM read.projections WHERE version = $1) \
                 AND (version = $1 OR state = 'active')"
            ),
            &[&version],
        )
        .await?;
    let source_log = logs.iter().find(|r| r.get::<_, &str>(0) == version).map(|r| r.get::<_, String>(1));
    if let (Some(source_log), Some(active)) = (&source_log, logs.iter().find(|r| r.get::<_, &str>(0) != version)) {
        let active_log: String = active.get(1);
        if &active_log != source_log {
            return Err(Error::MixedLogs {
                version: version.to_owned(),
                source_log: source_log.clone(),
                active: active.get(0),
                active_log,
            });
        }
    }
    if state == State::Active {
        let recorded: Option<serde_json::Value> = target.get(2);
        tx.commit().await?;
        let recorded =
            recorded.ok_or_else(|| Error::WrongState { version: version.to_owned(), state, expected: "ready" })?;
        let mut c: Cutover = serde_json::from_value(recorded).map_err(|e| Error::BadRow {
            table: "projections".into(),
            aggregate_id: String::new(),
            reason: e.to_string(),
        })?;
        c.switched = false;
        return Ok(c);
    }
    let active = rows.iter().find(|r| State::parse(r.get(1)) == State::Active);
    let previous = active.map(|r| r.get::<_, String>(0));
    // The version the active one replaced, from its recorded switch.
    let replaced = active
        .and_then(|r| r.get::<_, Option<serde_json::Value>>(2))
        .and_then(|c| c.get("previous").and_then(|p| p.as_str()).map(str::to_owned));
    let rollback = state == State::Retired && replaced.as_deref() == Some(version);
    if state != State::Ready && !rollback {
        return Err(Error::WrongState {
            version: version.to_owned(),
            state,
            expected: "ready (or retired by the last cutover, to roll back to it)",
        });
    }
    if rollback {
        let table: String =
            tx.query_one("SELECT table_name FROM read.projections WHERE version = $1", &[&version]).await?.get(0);
        let exists: bool =
            tx.query_one("SELECT to_regclass(format('read.%I', $1::TEXT)) IS NOT NULL", &[&table]).await?.get(0);
        if !exists {
            return Err(Error::TableGone { version: version.to_owned(), table });
        }
    }
    // FOR SHARE on the active version's offsets blocks its projector's next commit until the
    // switch is done, so "new >= active" holds at the instant the switch becomes visible.
    let lock_offsets = "SELECT position_tx, position_seq FROM read.projection_offsets \
                        WHERE version = $1 ORDER BY partition FOR SHARE";
    let new_positions: Vec<Position> =
        tx.query(lock_offsets, &[&version]).await?.iter().map(|r| Position { tx: r.get(0), seq: r.get(1) }).collect();
    let switch_positions: Vec<Position> = match &previous {
        Some(prev) => {
            tx.query(lock_offsets, &[prev]).await?.iter().map(|r| Position { tx: r.get(0), seq: r.get(1) }).collect()
        }
        None => new_positions.clone(),
    };
    if let Some(prev) = &previous {
        let lagging: Vec<_> = lag_between(&new_positions, &switch_positions).collect();
        if !lagging.is_empty() || new_positions.len() != switch_positions.len() {
            let mut lag_events = 0;
            // A topic's positions are next offsets: the lag is their difference.
            let on_topic = source_log.as_deref().is_some_and(|l| l != EVENT_STORE);
            for (p, behind, ahead) in &lagging {
                if on_topic {
                    lag_events += ahead.tx - behind.tx;
                    continue;
                }
                let sql = format!(
                    "SELECT count(*) FROM log.{} WHERE (tx_id, global_seq) > ($1, $2) AND (tx_id, global_seq) <= ($3, $4)",
                    partition_table(*p as u32)
                );
                lag_events +=
                    tx.query_one(&sql, &[&behind.tx, &behind.seq, &ahead.tx, &ahead.seq]).await?.get::<_, i64>(0);
            }
            return Err(Error::Lagging {
                version: version.to_owned(),
                active: prev.clone(),
                lag_events,
                lagging: lagging.len(),
                partitions: switch_positions.len(),
            });
        }
        tx.execute("UPDATE read.projections SET state = 'retired', retired_at = now() WHERE version = $1", &[prev])
            .await?;
    }
    let activated_at: DateTime<Utc> = tx.query_one("SELECT now()", &[]).await?.get(0);
    let result = Cutover {
        version: version.to_owned(),
        previous,
        switch_positions,
        new_positions,
        activated_at,
        switched: true,
        rollback,
    };
    let recorded = serde_json::to_value(&result).expect("cutover serialises");
    tx.execute(
        "UPDATE read.projections SET state = 'active', activated_at = $2, cutover = $3, retired_at = NULL \
         WHERE version = $1",
        &[&version, &activated_at, &recorded],
    )
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// Up to `n` aggregate ids (as text) that exist in the active version of `family` (or of the
/// one family with an active version), in a fixed order: what a load driver reads. A large
/// table is sampled by pages (`TABLESAMPLE SYSTEM ... REPEATABLE`), so this reads about twice
/// the pages `n` rows need, not the table. Returns the version sampled and the ids.
pub async fn sample_ids<C: GenericClient>(client: &C, family: Option<&str>, n: u64) -> Result<(String, Vec<String>)> {
    let infos = list(client).await?;
    let active: Vec<&ProjectionInfo> = infos.iter().filter(|p| p.state == State::Active).collect();
    let info = match family {
        Some(f) => active.iter().find(|p| p.family == f).copied(),
        None if active.len() == 1 => active.first().copied(),
        None if active.is_empty() => None,
        None => {
            let families: Vec<&str> = active.iter().map(|p| p.family.as_str()).collect();
            return Err(Error::NoFamily(format!("several families are active ({}): name one", families.join(", "))));
        }
    };
    let info = info.ok_or_else(|| {
        Error::NoFamily(match family {
            Some(f) => format!("no version of family {f} is active"),
            None => "no version is active yet".to_owned(),
        })
    })?;
    let table = format!("read.\"{}\"", info.table_name.replace('"', "\"\""));
    let estimate: f64 = client
        .query_one(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::FLOAT8 FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)",
            &[&table],
        )
        .await?
        .get(0);
    let sample = if estimate > (n as f64) * 4.0 {
        let percent = (n as f64 * 2.0 / estimate * 100.0).clamp(0.001, 100.0);
        format!(" TABLESAMPLE SYSTEM ({percent}) REPEATABLE (7)")
    } else {
        String::new()
    };
    let sql = format!("SELECT aggregate_id::TEXT FROM {table}{sample} LIMIT {n}");
    let ids = client.query(&sql, &[]).await?.iter().map(|r| r.get(0)).collect();
    Ok((info.version.clone(), ids))
}
