//! Single-aggregate repair: re-fold one aggregate's stream from the log and write it back,
//! leaving every other row untouched.

use std::time::Instant;

use fold::Projection;
use tokio_postgres::Client;

use crate::error::Error;
use crate::Result;

/// What a repair did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    pub version: String,
    pub aggregate_id: fold::AggregateId,
    pub events_folded: usize,
    /// The stored row before and after, as `to_jsonb` renders it.
    pub before: Option<serde_json::Map<String, serde_json::Value>>,
    pub after: Option<serde_json::Map<String, serde_json::Value>>,
    pub changed: bool,
    pub seconds: f64,
}

/// Re-folds `aggregate_id` from its whole committed history and overwrites its row when the
/// result is at or past the stored version (a repair never moves a row backwards; events the
/// tailer has not reached yet become no-ops for it later). Unknown aggregate: an error.
pub async fn repair<P: Projection>(
    client: &mut Client,
    projection: &P,
    aggregate_id: &fold::AggregateId,
) -> Result<RepairReport> {
    let started = Instant::now();
    readmodel::version_info(client, Projection::name(projection)).await?;
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let raws = eventlog::aggregate_events(client, aggregate_id, far, i64::MAX).await?;
    if raws.is_empty() {
        return Err(Error::UnknownAggregate(aggregate_id.clone()));
    }
    let mut events = Vec::with_capacity(raws.len());
    for raw in &raws {
        events.push(raw.decode(projection).map_err(|e| Error::Unfoldable {
            aggregate_id: aggregate_id.clone(),
            detail: format!("its event at global_seq {} (version {}) is bad: {e}", raw.global_seq, raw.version),
        })?);
    }
    let stream = fold::fold_from(projection, None, events).map_err(|e| Error::Unfoldable {
        aggregate_id: aggregate_id.clone(),
        detail: format!("its history does not fold: {e}"),
    })?;
    let before =
        readmodel::load_rows(client, projection, std::slice::from_ref(aggregate_id)).await?.remove(aggregate_id);
    let after = stream.row.clone();
    let changed = after != before;
    if let Some(row) = after.as_ref().filter(|_| changed) {
        readmodel::repair_row(client, projection, row).await?;
    }
    Ok(RepairReport {
        version: projection.name().to_owned(),
        aggregate_id: aggregate_id.clone(),
        events_folded: raws.len(),
        before: before.map(|r| fold::row_json(projection, &r)),
        after: after.map(|r| fold::row_json(projection, &r)),
        changed,
        seconds: started.elapsed().as_secs_f64(),
    })
}
