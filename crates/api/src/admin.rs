//! `POST /cutover` (the API's only write: it moves the active pointer) and `GET /projections`
//! (the registry with positions, lag and sizes, held / dead-lettered / quarantined counts, a
//! building version's progress and expected completion, and the horizon with the transaction
//! holding it), and `GET /metrics`.

mod dbstats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::ApiError;
use crate::telemetry::{BUILD_ETA, BUILD_PROGRESS, DEAD_LETTERS, HELD_EVENTS, LAG_EVENTS, QUARANTINED};
use crate::AppState;

const TABLE_ROWS: &str = include_str!("sql/table_rows.sql");
const LOG_ROWS: &str = include_str!("sql/log_rows.sql");

/// Below this estimate a table is counted exactly; above it the planner's estimate is close
/// enough and a `count(*)` of 100M rows is not something a status page should start.
const EXACT_COUNT_BELOW: i64 = 1_000_000;

/// How long the exact lag count of one version may scan before the estimate is used: a
/// version still at the start of a 1B-event log lags by the whole log.
const LAG_SCAN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CutoverBody {
    version: String,
}

/// `POST /cutover {"version": "v4"}` (with `Authorization: Bearer <admin token>`, checked by
/// `auth::require_admin` before this runs): promotes a ready version that is at or past the
/// active one on every partition, or rolls back to the version active before, in one
/// transaction (`readmodel::cutover`). Idempotent: repeating it returns the recorded switch
/// with `"switched": false`.
pub(crate) async fn cutover(
    State(state): State<Arc<AppState>>,
    body: Result<Json<CutoverBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    // 413 for a body over the limit; anything else wrong with it (no JSON content type, not
    // JSON, not the expected object) is the client's bad request.
    let Json(body) = body.map_err(|e| {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("body must be {{\"version\": \"v4\"}}: {}", e.body_text()))
    })?;
    if body.version.is_empty() || body.version.len() > 63 {
        return Err(ApiError::bad_request("version must be a registered version name such as \"v4\""));
    }
    let mut client = state.pool.dedicated().await?;
    let started = Instant::now();
    let result = readmodel::cutover(&mut client, &body.version).await?;
    let switch_ms = started.elapsed().as_secs_f64() * 1e3;
    state.active.observe(Some(&result.version));
    if result.switched {
        tracing::info!(version = %result.version, previous = ?result.previous, switch_ms, "cutover committed");
    }
    let mut out = serde_json::to_value(&result).expect("a cutover serialises");
    out["switch_ms"] = json!(switch_ms);
    Ok(Json(out))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Rows of a version's table: exact when small, the planner's estimate otherwise.
async fn table_rows(client: &Client, table: &str) -> Result<(i64, bool), ApiError> {
    let estimate: i64 = client.query_one(TABLE_ROWS, &[&table]).await?.get(0);
    if estimate >= EXACT_COUNT_BELOW {
        return Ok((estimate, false));
    }
    let sql = format!("SELECT count(*) FROM read.{}", quote_ident(table));
    match client.query_one(&sql, &[]).await {
        Ok(row) => Ok((row.get(0), true)),
        // The registry names a table that is gone (dropped by hand): report it, don't fail.
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok((0, true)),
        Err(e) => Err(e.into()),
    }
}

/// `GET /projections`: every registered version with its state, per-partition positions, lag
/// to the head of the log (events) and rows. Runs on a connection of its own so that its scans
/// never queue point reads behind them.
pub(crate) async fn projections(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let client = state.pool.dedicated().await?;
    client.batch_execute(&format!("SET statement_timeout = {}", LAG_SCAN_TIMEOUT.as_millis())).await?;
    let log_estimate: i64 = match client.query_one(LOG_ROWS, &[]).await {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => 0,
        Err(e) => return Err(e.into()),
    };
    let infos = readmodel::list(&client).await?;
    let counts = readmodel::counts(&client).await?;
    let progress = readmodel::build_progress(&client).await?;
    let now = chrono::Utc::now();
    // "active" is the default family's active version; "active_by_family" has every family's.
    // The default family's, or the only family's when the service names none.
    let active_families: Vec<&readmodel::ProjectionInfo> =
        infos.iter().filter(|p| p.state == readmodel::State::Active).collect();
    let active = match state.default_family() {
        Some(family) => active_families.iter().find(|p| p.family == family),
        None if active_families.len() == 1 => active_families.first(),
        None => None,
    }
    .map(|p| p.version.clone());
    state.active.observe(active.as_deref());
    let active_by_family: serde_json::Map<String, Value> = infos
        .iter()
        .filter(|p| p.state == readmodel::State::Active)
        .map(|p| (p.family.clone(), json!(p.version)))
        .collect();
    let mut out = Vec::with_capacity(infos.len());
    for p in infos {
        let (lag, lag_exact) = match readmodel::lag_events(&client, &p.positions).await {
            Ok(lag) => (lag, true),
            Err(readmodel::Error::Db(e)) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                ((log_estimate - p.events_applied).max(0), false)
            }
            Err(e) => return Err(e.into()),
        };
        let (rows, rows_exact) = table_rows(&client, &p.table_name).await?;
        metrics::gauge!(LAG_EVENTS, "version" => p.version.clone()).set(lag as f64);
        let c = counts.get(&p.version).copied().unwrap_or_default();
        metrics::gauge!(HELD_EVENTS, "version" => p.version.clone()).set(c.held_events as f64);
        metrics::gauge!(DEAD_LETTERS, "version" => p.version.clone()).set(c.dead_letters as f64);
        metrics::gauge!(QUARANTINED, "version" => p.version.clone()).set(c.quarantined_aggregates as f64);
        let build = build_status(p.state, progress.get(&p.version), lag, now);
        if let Some(ratio) = build["progress_ratio"].as_f64() {
            metrics::gauge!(BUILD_PROGRESS, "version" => p.version.clone()).set(ratio);
        }
        if let Some(eta) = build["eta_seconds"].as_f64() {
            metrics::gauge!(BUILD_ETA, "version" => p.version.clone()).set(eta);
        }
        let positions: Vec<Value> = p
            .positions
            .iter()
            .enumerate()
            .map(|(partition, pos)| json!({ "partition": partition, "tx": pos.tx, "seq": pos.seq }))
            .collect();
        out.push(json!({
            "version": p.version,
            "family": p.family,
            "state": p.state,
            "table": p.table_name,
            "partitions": p.partitions,
            "positions": positions,
            "events_applied": p.events_applied,
            "lag_events": lag,
            "lag_exact": lag_exact,
            "rows": rows,
            "rows_exact": rows_exact,
            "created_at": p.created_at,
            "activated_at": p.activated_at,
            "cutover": p.cutover,
            "held_events": c.held_events,
            "dead_letters": c.dead_letters,
            "quarantined_aggregates": c.quarantined_aggregates,
            "build": build,
        }));
    }
    let horizon = horizon(&client).await?;
    Ok(Json(json!({
        "active": active,
        "active_by_family": active_by_family,
        "log_events_estimate": log_estimate,
        "projections": out,
        "horizon": horizon,
    })))
}

/// The horizon every version's projector waits on: its xid, its age, whether events wait
/// behind it, and the transaction holding it (null before the log exists).
async fn horizon(client: &Client) -> Result<Value, ApiError> {
    match eventlog::horizon_status(client).await {
        Ok(h) => {
            metrics::gauge!(eventlog::HORIZON_AGE_SECONDS).set(h.age_seconds);
            Ok(serde_json::to_value(&h).expect("a horizon serialises"))
        }
        Err(eventlog::Error::Db(e)) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Value::Null),
        Err(e) => Err(e.into()),
    }
}

/// A version's build status: for a version still building, its replay's phase, progress and
/// expected completion (from the rate the replay measured); `{"progress_ratio": 1}` for one
/// that is built; `progress_ratio: 0` and no estimate for one whose replay has recorded nothing.
fn build_status(
    state: readmodel::State,
    progress: Option<&readmodel::BuildProgress>,
    lag: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    if state != readmodel::State::Building {
        return json!({ "progress_ratio": 1.0, "eta_seconds": 0.0 });
    }
    let Some(p) = progress else {
        return json!({ "phase": null, "progress_ratio": 0.0, "eta_seconds": null, "expected_ready_at": null });
    };
    let e = p.estimate(lag, now);
    json!({
        "phase": p.phase,
        "events_done": p.events_done,
        "events_total": p.events_total,
        "events_per_s": p.events_per_s,
        "progress_ratio": e.progress_ratio,
        "eta_seconds": e.eta_seconds,
        "expected_ready_at": e.expected_ready_at,
        "recorded_at": p.updated_at,
    })
}

/// `GET /metrics`: the Prometheus exposition, after refreshing the gauges read from the
/// database (at most once a second; see [`dbstats`]).
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> impl axum::response::IntoResponse {
    dbstats::refresh(&state.pool).await;
    crate::telemetry::render().await
}
