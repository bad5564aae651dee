//! `GET /aggregate/{id}`: the aggregate's row in the active version.
//!
//! The version is resolved per request, inside the same statement that reads the row
//! (`read.current_account`), never cached: a cutover takes effect on the next request, and no
//! request can pair the new version's name with the old table's row or the reverse.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fold::{Account, Projection};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::routes::parse_id;
use crate::telemetry::ServedVersion;
use crate::AppState;

const QUARANTINE_REASON: &str = include_str!("sql/quarantine_reason.sql");

/// `GET /aggregate/{id}`. The response carries the version that served it (for the latency
/// histogram's `version` label).
pub(crate) async fn current(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let mut served = None;
    let mut response = match read_current(&state, &id, &mut served).await {
        Ok(json) => json.into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(version) = served {
        response.extensions_mut().insert(ServedVersion(version));
    }
    response
}

async fn read_current(state: &AppState, id: &str, served: &mut Option<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(id)?;
    let conn = state.pool.get().await?;
    let statement = conn.current_account().await?;
    let Some(row) = conn.query_opt(statement, &[&id]).await? else {
        state.active.observe(None);
        return Err(ApiError::unavailable("no projection version is active"));
    };
    let version: String = row.try_get(0)?;
    let quarantined: bool = row.try_get(1)?;
    let account: Option<Value> = row.try_get(2)?;
    state.active.observe(Some(&version));
    *served = Some(version.clone());
    // A quarantined aggregate (its row, if any, is not served), or one with no row whose first
    // event was dead-lettered: "cannot say", with the event that could not be folded and why.
    // A row with no quarantine record needs no second look.
    if quarantined || account.is_none() {
        if let Some(q) = conn.query_opt(QUARANTINE_REASON, &[&version, &id]).await? {
            return Err(quarantined_error(id, &version, q.try_get(0)?, q.try_get(1)?));
        }
    }
    let Some(Value::Object(mut account)) = account else {
        return Err(ApiError::not_found(format!("aggregate {id} is unknown to {version}"))
            .with(json!({ "aggregate_id": id, "projection_version": version })));
    };
    account.insert("projection_version".into(), Value::String(version));
    Ok(Json(Value::Object(account)))
}

fn quarantined_error(id: i64, version: &str, global_seq: i64, reason: String) -> ApiError {
    ApiError::conflict(format!(
        "aggregate {id} is quarantined in {version}: an event of it could not be folded, so its row is not served"
    ))
    .with(json!({
        "aggregate_id": id,
        "projection_version": version,
        "quarantined": true,
        "global_seq": global_seq,
        "reason": reason,
    }))
}

/// An account in the shape of a stored row as `GET /aggregate/{id}` serves it (the version's
/// columns, plus `projection_version`), so that time travel and current reads compare field
/// by field.
pub(crate) fn account_json(projection: Projection, a: &Account) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("aggregate_id".into(), json!(a.aggregate_id));
    m.insert("owner".into(), json!(a.owner));
    m.insert("currency".into(), json!(a.currency));
    m.insert("status".into(), json!(a.status.as_str()));
    m.insert("balance".into(), json!(a.balance));
    if projection.has_activity_columns() {
        m.insert("lifetime_deposits".into(), json!(a.lifetime_deposits));
        m.insert(
            "last_activity_at".into(),
            json!(a.last_activity_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))),
        );
    }
    m.insert("aggregate_version".into(), json!(a.version));
    m.insert("applied_seq".into(), json!(a.applied_seq));
    m.insert("projection_version".into(), json!(projection.name()));
    m
}
