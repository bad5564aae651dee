//! `GET /aggregate/{id}[?family=F]`: the aggregate's row in the family's active version (when
//! none is named: the service's default family, or else the one family with an active version).
//!
//! The version is resolved per request, inside the same statement that reads the row
//! (`read.current_row`), never cached: a cutover takes effect on the next request, and no
//! request can pair the new version's name with the old table's row or the reverse.

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::telemetry::ServedVersion;
use crate::AppState;

const QUARANTINE_REASON: &str = include_str!("sql/quarantine_reason.sql");

/// `GET /aggregate/{id}`. The response carries the version that served it (for the latency
/// histogram's `version` label).
pub(crate) async fn current(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let mut served = None;
    let family = match params {
        Ok(Query(params)) => match params.keys().find(|k| k.as_str() != "family") {
            Some(unknown) => {
                let shown = crate::http::truncate(unknown, 32);
                return ApiError::bad_request(format!("unknown query parameter {shown:?} (known: family)"))
                    .into_response();
            }
            None => params.get("family").cloned(),
        },
        Err(e) => return ApiError::bad_request(format!("bad query string: {e}")).into_response(),
    };
    let family = family.or_else(|| state.default_family().map(str::to_owned));
    let mut response = match read_current(&state, family.as_deref(), &id, &mut served).await {
        Ok(json) => json.into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(version) = served {
        response.extensions_mut().insert(ServedVersion(version));
    }
    response
}

async fn read_current(
    state: &AppState,
    family: Option<&str>,
    id: &str,
    served: &mut Option<String>,
) -> Result<Json<Value>, ApiError> {
    let id = state.parse_id(id).await?;
    let id_text = id.to_string();
    let conn = state.pool.get().await?;
    let statement = conn.current_row().await?;
    let is_default = family == state.default_family();
    let Some(row) = conn.query_opt(statement, &[&family, &id_text]).await? else {
        if is_default {
            state.active.observe(None);
        }
        return Err(match family {
            Some(family) => {
                let shown = crate::http::truncate(family, 32);
                ApiError::unavailable(format!("no projection version of {shown:?} is active"))
            }
            None => ApiError::unavailable("no read model is active yet (no version has caught up with the log)"),
        });
    };
    let version: String = row.try_get(0)?;
    let quarantined: bool = row.try_get(1)?;
    let account: Option<Value> = row.try_get(2)?;
    if is_default {
        state.active.observe(Some(&version));
    }
    *served = Some(version.clone());
    // A quarantined aggregate (its row, if any, is not served), or one with no row whose first
    // event was dead-lettered: "cannot say", with the event that could not be folded and why.
    // A row with no quarantine record needs no second look.
    if quarantined || account.is_none() {
        if let Some(q) = conn.query_opt(QUARANTINE_REASON, &[&version, &id_text]).await? {
            return Err(quarantined_error(&id, &version, q.try_get(0)?, q.try_get(1)?));
        }
    }
    let Some(Value::Object(mut account)) = account else {
        return Err(ApiError::not_found(format!("aggregate {id} is unknown to {version}"))
            .with(json!({ "aggregate_id": id.to_json(), "projection_version": version })));
    };
    account.insert("projection_version".into(), Value::String(version));
    Ok(Json(Value::Object(account)))
}

fn quarantined_error(id: &fold::AggregateId, version: &str, global_seq: i64, reason: String) -> ApiError {
    ApiError::conflict(format!(
        "aggregate {id} is quarantined in {version}: an event of it could not be folded, so its row is not served"
    ))
    .with(json!({
        "aggregate_id": id.to_json(),
        "projection_version": version,
        "quarantined": true,
        "global_seq": global_seq,
        "reason": reason,
    }))
}
