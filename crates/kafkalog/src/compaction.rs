//! Experiment 7, compaction vs. completeness: one generated history in three logs.
//!
//! (a) the event store (every event kept): the replay's current state and time travel both
//!     correct;
//! (b) a compacted topic of deltas (the events as they are): after compaction only each
//!     aggregate's last event is left, so the replay cannot rebuild the current state (the
//!     version guard holds a version whose predecessors are gone; a naive fold would be wrong
//!     instead) and time travel is refused, naming the lowest offset still complete;
//! (c) a compacted topic of state-carrying events (each record holds the aggregate's row after
//!     the event): the latest record per key is the current state, correct after compaction,
//!     and the history is gone.
//!
//! The true state is v4 rebuilt from the event store and verified against
//! `lab.expected_accounts` in the same run (0 diffs).

use fold::{AggregateId, IdKind};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use fold::{Projection, Row};
use projector::partition_fold::PartitionFold;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::info;

use crate::mirror::{mirror, mirror_states, MirrorConfig, StateCarrying};
use crate::record::decode;
use crate::source::read_partition;
use crate::{Error, KafkaLog, Result};

/// One log's row of the experiment's table.
#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    pub log: String,
    /// Aggregates whose current state from this log differs from the true state (missing
    /// counts).
    pub diffs: u64,
    /// Whether time travel to the middle of the history can be answered from this log.
    pub time_travel: bool,
    /// What a time-travel request got when refused.
    pub time_travel_error: Option<String>,
    pub records_before: u64,
    pub records_after: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The experiment's result: the JSON line of `reproject bench compaction` and its table.
#[derive(Debug, Clone, Serialize)]
pub struct CompactionReport {
    pub aggregates: u64,
    pub events: u64,
    pub partitions: u32,
    pub event_store_diffs: u64,
    pub delta_diffs_after_compaction: u64,
    pub state_diffs_after_compaction: u64,
    pub time_travel_refused: bool,
    pub compaction_wait_s: f64,
    pub rows: Vec<LogRow>,
}

/// The true state, by aggregate: each row as JSON without `applied_seq` (the state records
/// carry it too, but the comparison is of the state and its version).
type Truth = HashMap<AggregateId, Map<String, Value>>;

fn comparable<P: Projection>(projection: &P, row: &Row<P::State>) -> Map<String, Value> {
    let mut json = fold::row_json(projection, row);
    json.remove("applied_seq");
    json
}

fn diffs(truth: &Truth, got: &HashMap<AggregateId, Map<String, Value>>) -> u64 {
    let mut n = truth.iter().filter(|(id, row)| got.get(id) != Some(row)).count() as u64;
    n += got.keys().filter(|id| !truth.contains_key(id)).count() as u64;
    n
}

/// Runs the experiment on the seeded database at `url`, with topics `<prefix>-deltas` and
/// `<prefix>-states` of `partitions` partitions on `cluster` (recreated). `v4` must be the
/// verified replay of the event store (the caller builds and verifies it: row (a)).
pub async fn run<P: Projection>(
    url: &str,
    cluster: &KafkaLog,
    partitions: u32,
    projection: P,
    event_store: LogRow,
    wait: Duration,
) -> Result<CompactionReport> {
    let client = eventlog::connect(url).await?;
    let truth: Truth = readmodel::load_all_rows(&client, &projection)
        .await?
        .iter()
        .map(|row| (row.aggregate_id.clone(), comparable(&projection, row)))
        .collect();
    let events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let id = eventlog::id_kind(&client).await?;
    let sample: AggregateId = client
        .query_one("SELECT aggregate_id FROM log.events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1", &[])
        .await?
        .get(0);
    let (_keep, never) = tokio::sync::watch::channel(false);
    let started = Instant::now();

    // (b) deltas.
    let deltas = cluster.with_topic(&format!("{}-deltas", cluster.topic));
    deltas.delete().await?;
    deltas.create(partitions, true).await?;
    let produced = mirror(&MirrorConfig::new(url, deltas.clone()), never.clone()).await?;
    // (c) state-carrying events, from the same history.
    let states = cluster.with_topic(&format!("{}-states", cluster.topic));
    states.delete().await?;
    states.create(partitions, true).await?;
    let produced_states =
        mirror_states(&MirrorConfig::new(url, states.clone()), StateCarrying::new(projection.clone()), never).await?;
    let keys = truth.len() as u64;
    let waited = Instant::now();
    let delta_records = wait_compacted(&deltas, keys, wait).await?;
    let state_records = wait_compacted(&states, keys, wait).await?;
    let compaction_wait_s = waited.elapsed().as_secs_f64();

    let (delta_state, delta_bytes) = fold_deltas(&deltas, &projection, id).await?;
    let delta_diffs = diffs(&truth, &delta_state);
    // Time travel: the sample aggregate as of the middle of its partition.
    let middle = |log: &KafkaLog| -> Result<i64> {
        let p = crate::murmur2::partition_of(sample.to_string().as_bytes(), partitions);
        Ok(log.watermark(p)?.1 / 2)
    };
    let delta_tt = crate::history::aggregate_history(&deltas, &sample, middle(&deltas)?).await;
    let (state_state, state_bytes) = latest_states(&states, id).await?;
    let state_diffs = diffs(&truth, &state_state);
    let state_tt = crate::history::aggregate_history(&states, &sample, middle(&states)?).await;
    let refused = |r: &Result<crate::history::History>| match r {
        Err(e @ Error::Compacted { .. }) => Some(e.to_string()),
        _ => None,
    };
    let rows = vec![
        event_store.clone(),
        LogRow {
            log: "compacted topic of deltas".into(),
            diffs: delta_diffs,
            time_travel: delta_tt.is_ok(),
            time_travel_error: refused(&delta_tt),
            records_before: produced.events,
            records_after: delta_records,
            bytes_before: produced.bytes,
            bytes_after: delta_bytes,
        },
        LogRow {
            log: "compacted topic of state-carrying events".into(),
            diffs: state_diffs,
            time_travel: state_tt.is_ok(),
            time_travel_error: refused(&state_tt),
            records_before: produced_states.events,
            records_after: state_records,
            bytes_before: produced_states.bytes,
            bytes_after: state_bytes,
        },
    ];
    info!(seconds = started.elapsed().as_secs_f64(), "compaction experiment done");
    Ok(CompactionReport {
        aggregates: keys,
        events: events as u64,
        partitions,
        event_store_diffs: event_store.diffs,
        delta_diffs_after_compaction: delta_diffs,
        state_diffs_after_compaction: state_diffs,
        time_travel_refused: refused(&delta_tt).is_some() && refused(&state_tt).is_some(),
        compaction_wait_s,
        rows,
    })
}

/// Waits until the broker's compaction has left one record per key in `log` (polling it), up
/// to `within`; returns the records left.
pub async fn wait_compacted(log: &KafkaLog, keys: u64, within: Duration) -> Result<u64> {
    let deadline = Instant::now() + within;
    loop {
        let mut records = 0u64;
        for p in 0..log.partitions()? {
            records += read_partition(log, p).await?.len() as u64;
        }
        if records <= keys {
            return Ok(records);
        }
        if Instant::now() > deadline {
            return Err(Error::Broker(format!(
                "{log}: {records} records for {keys} keys after {within:?}: compaction has not run"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The replay's fold of what is left of a delta topic, in memory: the rows the version guard
/// produces, and the bytes read.
async fn fold_deltas<P: Projection>(
    log: &KafkaLog,
    projection: &P,
    id: IdKind,
) -> Result<(HashMap<AggregateId, Map<String, Value>>, u64)> {
    let mut state = HashMap::new();
    let mut bytes = 0u64;
    for p in 0..log.partitions()? {
        let mut fold = PartitionFold::new(projection.clone(), p, true);
        for (offset, key, value) in read_partition(log, p).await? {
            bytes += (key.len() + value.len()) as u64;
            fold.offer(decode(p, offset, id, Some(&key), Some(&value))?.event)?;
        }
        for row in fold.finish(eventlog::Position::START).rows {
            state.insert(row.aggregate_id.clone(), comparable(projection, &row));
        }
    }
    Ok((state, bytes))
}

/// The latest record per key of a state-carrying topic: its state.
async fn latest_states(log: &KafkaLog, id: IdKind) -> Result<(HashMap<AggregateId, Map<String, Value>>, u64)> {
    let mut state = HashMap::new();
    let mut bytes = 0u64;
    for p in 0..log.partitions()? {
        for (offset, key, value) in read_partition(log, p).await? {
            bytes += (key.len() + value.len()) as u64;
            let record = decode(p, offset, id, Some(&key), Some(&value))?;
            let Some(Value::Object(mut row)) = record.state else {
                return Err(Error::BadRecord {
                    partition: p,
                    offset,
                    reason: "no state in a state-carrying topic".into(),
                });
            };
            row.remove("applied_seq");
            state.insert(record.event.aggregate_id, row);
        }
    }
    Ok((state, bytes))
}
