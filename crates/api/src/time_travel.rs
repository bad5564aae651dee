//! `GET /aggregate/{id}/as-of?ts=RFC3339|offset=GLOBAL_SEQ|position=XID[&version=V|&family=F]`: the aggregate's
//! state at a past instant or log position, folded straight from the log.
//!
//! It reads the aggregate's events up to the cut and folds them with the same version-guarded
//! fold the projectors use (the version guard of `fold`, through `AnyProjection::fold_json`), so "as of the head" equals the projection's
//! row and any earlier cut equals what the projection held when it had applied that prefix.
//! Read-only, and independent of the read model: it works for any fold in this build, active
//! or not. When `reproject snapshot` has stored snapshots of the fold, the fold starts from the
//! newest one whose events all lie inside the cut, so its cost is bounded by the snapshot
//! interval instead of the aggregate's history; the result is the same either way.
//!
//! Every answer says whether it is final (`"final": true`: nothing that commits later can
//! land inside the cut, so the same request answers the same forever) and where the horizon
//! is (`"horizon": {"xid", "final_through_offset"}`). A cut that is not final is still
//! answered, with `"final": false` and the reason: an offset above `final_through_offset`, a
//! position at or above the horizon's xid, or a `ts` alone (a writer's clock can place an
//! event inside any time cut at any later moment; pin it with an offset). ARCHITECTURE.md,
//! "Final cuts", gives the argument for each kind of cut.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use fold::{AnyProjection, FoldError};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

use crate::error::ApiError;
use crate::AppState;

const ACTIVE_VERSION: &str = include_str!("sql/active_version.sql");

/// Where to cut the log: every bound given applies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cut {
    ts: Option<DateTime<Utc>>,
    offset: Option<i64>,
    /// An xid boundary as `reproject position` prints it: events of transactions below it.
    position: Option<i64>,
    /// The projection version to fold with (`?version=`), else the family's active one.
    version: Option<String>,
    family: Option<String>,
}

impl Cut {
    /// Whether the cut is final given the horizon and the offsets proven final; the reason
    /// when it is not. A cut is the intersection of its bounds, so it is final as soon as one
    /// of its offset or position bounds is (a subset of a set that can no longer change
    /// cannot change either).
    fn finality(&self, horizon: i64, final_through: &Result<Option<i64>, String>) -> Result<(), String> {
        if self.position.is_some_and(|x| x <= horizon) {
            return Ok(());
        }
        if let (Some(o), Ok(Some(f))) = (self.offset, final_through) {
            if o <= *f {
                return Ok(());
            }
        }
        let mut reasons = Vec::new();
        if let Some(x) = self.position {
            reasons.push(format!("transactions from xid {horizon} up to position {x} may still be running"));
        }
        if let Some(o) = self.offset {
            match final_through {
                Ok(Some(f)) => {
                    reasons.push(format!("events at or below offset {o} may still commit (final through {f})"))
                }
                Ok(None) => reasons.push(format!("no offset is proven final yet, offset {o} included")),
                Err(why) => reasons.push(format!("offsets cannot be proven final: {why}")),
            }
        }
        if self.offset.is_none() && self.position.is_none() {
            reasons.push(
                "a ts cut alone is never final: a writer's clock can place an event inside it at any later \
                 time; add &offset=<horizon.final_through_offset> to pin it"
                    .to_owned(),
            );
        }
        Err(reasons.join("; "))
    }
}

fn parse_cut(params: &HashMap<String, String>) -> Result<Cut, ApiError> {
    let known = ["ts", "offset", "position", "version", "family"];
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        let shown = crate::http::truncate(unknown, 32);
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {shown:?} (known: ts, offset, position, version, family)"
        )));
    }
    let ts = params
        .get("ts")
        .map(|t| {
            // An unescaped '+' in a query string arrives as a space: accept "…T00:00:00 02:00".
            DateTime::parse_from_rfc3339(&t.replace(' ', "+")).map(|t| t.with_timezone(&Utc)).map_err(|e| {
                // Echo at most a short prefix: the value came from the client.
                let shown = crate::http::truncate(t, 40);
                ApiError::bad_request(format!("ts must be RFC 3339 (e.g. 2025-06-01T00:00:00Z), got {shown:?}: {e}"))
            })
        })
        .transpose()?;
    let offset = params
        .get("offset")
        .map(|o| {
            o.parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .ok_or_else(|| ApiError::bad_request(format!("offset must be a non-negative global_seq, got {o:?}")))
        })
        .transpose()?;
    let position = params
        .get("position")
        .map(|x| {
            x.parse::<i64>().ok().filter(|x| *x >= 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "position must be an xid boundary as `reproject position` prints it, got {x:?}"
                ))
            })
        })
        .transpose()?;
    if ts.is_none() && offset.is_none() && position.is_none() {
        return Err(ApiError::bad_request("give ?ts=RFC3339, ?offset=GLOBAL_SEQ or ?position=XID (or several)"));
    }
    Ok(Cut { ts, offset, position, version: params.get("version").cloned(), family: params.get("family").cloned() })
}

/// The projection to fold with: `?version=` if given, else the active version of the family
/// (`?family=`, or the service's default, or the one family of the catalog, or the one family
/// with an active version), else the family's newest version in this build (the read schema
/// need not exist: time travel needs only the log).
async fn projection_for(
    state: &AppState,
    client: &tokio_postgres::Client,
    cut: &Cut,
) -> Result<&'static dyn AnyProjection, ApiError> {
    let known = || state.projections.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
    if let Some(version) = &cut.version {
        return state.projection(version).ok_or_else(|| {
            let shown = crate::http::truncate(version, 32);
            ApiError::bad_request(format!("unknown projection version {shown:?} (known: {})", known()))
        });
    }
    let family = match cut.family.as_deref().or(state.default_family()) {
        Some(family) => family.to_owned(),
        None => implicit_family(state, client).await?,
    };
    let family = family.as_str();
    let active = match client.query_opt(ACTIVE_VERSION, &[&family]).await {
        Ok(row) => row.map(|r| r.get::<_, String>(0)),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
        Err(e) => return Err(e.into()),
    };
    match active {
        Some(name) => state.projection(&name).ok_or_else(|| {
            ApiError::unavailable(format!(
                "the active version {name} has no fold in this service (it folds: {}); pass ?version=",
                known()
            ))
        }),
        None => state.projections.iter().rev().copied().find(|p| p.family() == family).ok_or_else(|| {
            let shown = crate::http::truncate(family, 32);
            ApiError::bad_request(format!("no projection of family {shown:?} in this build (known: {})", known()))
        }),
    }
}

/// The family of a time-travel request that names none: the catalog's only family, else the
/// one family with an active version; several is a 400 naming them.
async fn implicit_family(state: &AppState, client: &tokio_postgres::Client) -> Result<String, ApiError> {
    let mut families: Vec<&str> = state.projections.iter().map(|p| p.family()).collect();
    families.dedup();
    if let [only] = families.as_slice() {
        return Ok((*only).to_owned());
    }
    match client.query_one("SELECT read.only_active_family()", &[]).await {
        Ok(row) => row.get::<_, Option<String>>(0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no read model is active: name a family ({}) or a version with ?family= or ?version=",
                families.join(", ")
            ))
        }),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) => Err(ApiError::bad_request(format!(
            "name a family ({}) or a version with ?family= or ?version=",
            families.join(", ")
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `GET /aggregate/{id}/as-of`.
pub(crate) async fn as_of(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = state.parse_id(&id).await?;
    let kind = id.kind();
    let Query(params) = params.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let cut = parse_cut(&params)?;
    let conn = state.pool.get().await?;
    let projection = projection_for(&state, &conn, &cut).await?;
    // The horizon is read before the events, in an earlier statement: everything it proves
    // ended has committed before the events' snapshot is taken.
    let horizon = eventlog::boundary(&conn).await?;
    let final_through = state.finality.final_through(horizon);
    let finality = cut.finality(horizon, &final_through);
    let until_ts = cut.ts.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let until_seq = cut.offset.unwrap_or(i64::MAX);
    // Start from the newest snapshot whose events all lie inside the cut, if any, and read
    // the log only up to the next snapshot (past it the guard could apply nothing). Both
    // statements are prepared once per connection. Snapshots do not record their events'
    // xids, so a position cut folds the whole history below it.
    let hit = match (cut.position, conn.latest_snapshot().await?) {
        (None, Some(statement)) => {
            readmodel::latest_snapshot(&conn, statement, projection, &id, until_ts, until_seq).await?
        }
        _ => readmodel::SnapshotHit::default(),
    };
    let after_version = hit.snapshot.as_ref().map_or(0, |s| s.0);
    let statement = conn.aggregate_events().await?;
    let versions = after_version..=hit.next_version.unwrap_or(i32::MAX);
    let mut raws = eventlog::aggregate_events_after(&conn, statement, &id, versions, until_ts, until_seq).await?;
    drop(conn);
    if let Some(x) = cut.position {
        raws.retain(|e| e.tx_id < x);
    }
    let events: Vec<(fold::Meta, &str, &[u8])> =
        raws.iter().map(|r| (r.meta(), r.event_type.as_str(), r.payload.as_slice())).collect();
    let folded = projection.fold_json(hit.snapshot.as_ref().map(|s| &s.1), kind, &events).map_err(|e| match e {
        FoldError::Decode { global_seq, error } => ApiError::conflict(format!(
            "aggregate {id} has an event that cannot be decoded at global_seq {global_seq}: {error}"
        ))
        .with(json!({ "aggregate_id": id.to_json(), "global_seq": global_seq })),
        other => ApiError::conflict(format!("aggregate {id} cannot be folded by {}: {other}", projection.name())),
    })?;
    let as_of = json!({
        "ts": cut.ts.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        "offset": cut.offset,
        "position": cut.position,
    });
    let horizon = json!({
        "xid": horizon,
        "final_through_offset": final_through.as_ref().ok().copied().flatten(),
    });
    let is_final = finality.is_ok();
    let not_final_because = finality.err();
    let Some(mut body) = folded.row else {
        return Err(ApiError::not_found(format!("aggregate {id} has no events by then")).with(json!({
            "aggregate_id": id.to_json(),
            "as_of": as_of,
            "events_read": raws.len(),
            "final": is_final,
            "not_final_because": not_final_because,
            "horizon": horizon,
        })));
    };
    body.insert("projection_version".into(), json!(projection.name()));
    body.insert("stopped_at_seq".into(), json!(folded.applied_seq));
    // Versions start at 1 and the guard applies them without gaps, so the version is the count.
    body.insert("events_folded".into(), json!(folded.aggregate_version));
    body.insert("events_read".into(), json!(raws.len()));
    body.insert("snapshot_version".into(), json!((after_version > 0).then_some(after_version)));
    // Events read past a missing version, which the guard holds instead of skipping the gap (up
    // to the next snapshot: none past it can apply).
    body.insert("pending_versions".into(), json!(folded.pending_versions));
    body.insert("as_of".into(), as_of);
    body.insert("final".into(), json!(is_final));
    if let Some(why) = not_final_because {
        body.insert("not_final_because".into(), json!(why));
    }
    body.insert("horizon".into(), horizon);
    Ok(Json(Value::Object(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_cuts_and_refuses_bad_ones() {
        let cut = parse_cut(&params(&[("ts", "2025-01-01T00:00:00 01:00"), ("version", "v3")])).unwrap();
        assert_eq!(cut.ts.unwrap().to_rfc3339(), "2024-12-31T23:00:00+00:00");
        assert_eq!(cut.version.as_deref(), Some("v3"));
        assert_eq!(parse_cut(&params(&[("offset", "42")])).unwrap().offset, Some(42));
        assert_eq!(parse_cut(&params(&[("position", "7")])).unwrap().position, Some(7));
        for bad in [
            params(&[("position", "x")]),
            params(&[]),
            params(&[("ts", "yesterday")]),
            params(&[("offset", "-1")]),
            params(&[("offset", "1"), ("at", "x")]),
        ] {
            let e = parse_cut(&bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_cut_is_final_when_one_of_its_offset_or_position_bounds_is() {
        let cut = |q: &[(&str, &str)]| parse_cut(&params(q)).unwrap();
        let proven: Result<Option<i64>, String> = Ok(Some(100));
        assert!(cut(&[("offset", "100")]).finality(50, &proven).is_ok());
        assert!(cut(&[("offset", "101")]).finality(50, &proven).is_err());
        assert!(cut(&[("offset", "1")]).finality(50, &Ok(None)).is_err());
        assert!(cut(&[("offset", "1")]).finality(50, &Err("no log".into())).is_err());
        assert!(cut(&[("position", "50")]).finality(50, &Ok(None)).is_ok());
        assert!(cut(&[("position", "51")]).finality(50, &proven).is_err());
        assert!(cut(&[("position", "51"), ("offset", "99")]).finality(50, &proven).is_ok());
        let ts = cut(&[("ts", "2020-01-01T00:00:00Z")]);
        assert!(ts.finality(i64::MAX, &Ok(Some(i64::MAX))).unwrap_err().contains("never final"));
        assert!(cut(&[("ts", "2020-01-01T00:00:00Z"), ("offset", "7")]).finality(50, &proven).is_ok());
    }
}
