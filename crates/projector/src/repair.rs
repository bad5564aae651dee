//! Single-aggregate repair: re-fold one aggregate's stream from the log and write it back,
//! leaving every other row untouched.

use std::time::Instant;

use fold::Projection;
use readmodel::Columns;
use tokio_postgres::Client;

use crate::error::Error;
use crate::Result;

/// What a repair did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    pub version: String,
    pub aggregate_id: i64,
    pub events_folded: usize,
    pub before: Option<fold::Account>,
    pub after: Option<fold::Account>,
    pub changed: bool,
    pub seconds: f64,
}

/// Re-folds `aggregate_id` from its whole committed history and overwrites its row when the
/// result is at or past the stored version (a repair never moves a row backwards; events the
/// tailer has not reached yet become no-ops for it later). Unknown aggregate: an error.
pub async fn repair(client: &mut Client, projection: Projection, aggregate_id: i64) -> Result<RepairReport> {
    let started = Instant::now();
    readmodel::version_info(client, projection.name()).await?;
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let raws = eventlog::aggregate_events(client, aggregate_id, far, i64::MAX).await?;
    if raws.is_empty() {
        return Err(Error::UnknownAggregate(aggregate_id));
    }
    let mut events = Vec::with_capacity(raws.len());
    for raw in &raws {
        events.push(raw.decode().map_err(|e| Error::Unfoldable {
            aggregate_id,
            detail: format!("its event at global_seq {} (version {}) is bad: {e}", raw.global_seq, raw.version),
        })?);
    }
    let stream = fold::fold_prefix(projection, events)
        .map_err(|e| Error::Unfoldable { aggregate_id, detail: format!("its history does not fold: {e}") })?;
    let before = readmodel::load_accounts(client, projection, &[aggregate_id]).await?.remove(&aggregate_id);
    let after = stream.state.clone();
    let changed = after != before;
    if let Some(state) = after.clone().filter(|_| changed) {
        let tx = client.transaction().await?;
        let cols = Columns::of(projection);
        let assignments: Vec<String> =
            cols.names().iter().filter(|c| **c != "aggregate_id").map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        let placeholders: Vec<String> = (1..=cols.names().len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {} AS a ({}) VALUES ({}) ON CONFLICT (aggregate_id) DO UPDATE SET {} \
             WHERE a.aggregate_version <= EXCLUDED.aggregate_version",
            readmodel::qualified_table(projection),
            cols.list(),
            placeholders.join(", "),
            assignments.join(", ")
        );
        tx.execute(sql.as_str(), &cols.values(&state)).await?;
        tx.execute(
            "DELETE FROM read.quarantined_aggregates WHERE version = $1 AND aggregate_id = $2",
            &[&projection.name(), &aggregate_id],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(RepairReport {
        version: projection.name().to_owned(),
        aggregate_id,
        events_folded: raws.len(),
        before,
        after,
        changed,
        seconds: started.elapsed().as_secs_f64(),
    })
}
