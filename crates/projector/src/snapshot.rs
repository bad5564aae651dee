//! Materializing aggregate snapshots for time travel: one pass over the log, partition by
//! partition (binary COPY up to a tail boundary), folding every aggregate through the version
//! guard and recording its state each time its applied version crosses a multiple of `every`.
//!
//! The log is only read. Snapshots are immutable (see `readmodel::Snapshot`), so a run inserts
//! the ones missing and leaves the rest: a crash mid-run loses nothing, and a rerun after the
//! log has grown adds the snapshots of the new versions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use fold::{AggregateId, Decoded, Guarded, Projection};
use futures::{pin_mut, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use readmodel::Snapshot;
use tracing::info;

use crate::error::BadEvent;
use crate::Result;

/// What to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotConfig<P: Projection> {
    pub database_url: String,
    pub projection: P,
    /// Snapshot an aggregate each time its version crosses a multiple of this.
    pub every: i32,
    /// Partitions folded concurrently, each on its own connection.
    pub workers: u32,
    pub progress: bool,
}

impl<P: Projection> SnapshotConfig<P> {
    /// Every 100 versions, 2 workers, no progress bar.
    pub fn new(database_url: &str, projection: P) -> SnapshotConfig<P> {
        SnapshotConfig { database_url: database_url.to_owned(), projection, every: 100, workers: 2, progress: false }
    }
}

/// What a snapshot run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotReport {
    pub version: String,
    pub every: i32,
    /// The tail boundary (an xid) the run read up to.
    pub boundary: i64,
    pub events_read: u64,
    /// Snapshots taken in this pass, and how many of them were new.
    pub snapshots: u64,
    pub inserted: u64,
    /// Rows of this fold's snapshots, and the bytes of the whole snapshot table with its index.
    pub total_rows: i64,
    pub table_bytes: i64,
    pub seconds: f64,
    pub events_per_s: f64,
}

/// One aggregate's fold in progress: the largest sequence number and timestamp among its
/// applied events, and the events read ahead of a gap. Storage order is not version order
/// (concurrent loaders interleave pages), so events are applied here one version at a time,
/// which puts a snapshot at exactly every multiple of `every` and keeps the maxima exact.
struct Folding<P: Projection> {
    stream: Guarded<P>,
    max_seq: i64,
    max_ts: DateTime<Utc>,
    held: BTreeMap<i32, Decoded<P::Event>>,
}

impl<P: Projection> Folding<P> {
    /// Applies `event` (the next version) and every held event it releases; pushes a snapshot
    /// at each multiple of `every` passed. An event the fold refuses is the error, named.
    fn apply_run(
        &mut self,
        config: &SnapshotConfig<P>,
        partition: u32,
        mut event: Decoded<P::Event>,
        taken: &mut Vec<Snapshot<P::State>>,
    ) -> Result<(), BadEvent> {
        loop {
            let (seq, ts, at) = (event.meta.global_seq, event.meta.ts, event.meta.aggregate_version);
            let aggregate_id = event.meta.aggregate_id.clone();
            self.stream.offer(&config.projection, event).map_err(|e| BadEvent {
                partition,
                global_seq: seq,
                aggregate_id,
                version: at,
                reason: e.to_string(),
            })?;
            self.max_seq = self.max_seq.max(seq);
            self.max_ts = self.max_ts.max(ts);
            let version = self.stream.version();
            // An aggregate with only skipped events so far has no state to store.
            if version % config.every == 0 {
                if let Some(row) = self.stream.row.clone() {
                    taken.push(Snapshot { row, max_seq: self.max_seq, max_ts: self.max_ts });
                }
            }
            match self.held.remove(&(version + 1)) {
                Some(next) => event = next,
                None => return Ok(()),
            }
        }
    }
}

/// Folds the whole committed log and stores `config.projection`'s snapshots.
pub async fn build_snapshots<P: Projection>(config: &SnapshotConfig<P>) -> Result<SnapshotReport> {
    if config.every < 1 {
        return Err(crate::Error::Config(format!("--every must be at least 1, got {}", config.every)));
    }
    let started = Instant::now();
    let mut client = eventlog::connect(&config.database_url).await?;
    readmodel::ensure_schema(&mut client).await?;
    let partitions = eventlog::partition_count(&client).await?;
    let boundary = eventlog::boundary(&client).await?;
    info!(version = config.projection.name(), every = config.every, boundary, partitions, "snapshotting");
    let bar = if config.progress { ProgressBar::new(partitions as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("snapshots {bar:30} {pos}/{len} partitions [{elapsed_precise}]")
            .expect("valid template"),
    );
    let next = AtomicU32::new(0);
    let (events, snapshots, inserted) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let worker = || async {
        let mut client = eventlog::connect(&config.database_url).await?;
        loop {
            let p = next.fetch_add(1, Ordering::Relaxed);
            if p >= partitions {
                return Ok::<_, crate::Error>(());
            }
            let (read, taken) = fold_partition(&client, config, p, boundary).await?;
            let new = readmodel::write_snapshots(&mut client, &config.projection, &taken).await?;
            events.fetch_add(read, Ordering::Relaxed);
            snapshots.fetch_add(taken.len() as u64, Ordering::Relaxed);
            inserted.fetch_add(new, Ordering::Relaxed);
            bar.inc(1);
            tracing::debug!(
                partition = p,
                events = read,
                snapshots = taken.len(),
                inserted = new,
                "partition snapshotted"
            );
        }
    };
    futures::future::try_join_all((0..config.workers.clamp(1, partitions.max(1))).map(|_| worker())).await?;
    bar.finish_and_clear();
    let (total_rows, table_bytes) = readmodel::snapshot_stats(&client, &config.projection).await?;
    let seconds = started.elapsed().as_secs_f64();
    let events = events.into_inner();
    let report = SnapshotReport {
        version: config.projection.name().to_owned(),
        every: config.every,
        boundary,
        events_read: events,
        snapshots: snapshots.into_inner(),
        inserted: inserted.into_inner(),
        total_rows,
        table_bytes,
        seconds,
        events_per_s: events as f64 / seconds.max(1e-9),
    };
    info!(
        events = report.events_read,
        snapshots = report.snapshots,
        inserted = report.inserted,
        seconds,
        "snapshots stored"
    );
    Ok(report)
}

/// Folds partition `p` below `boundary`; returns the events read and the snapshots taken.
async fn fold_partition<P: Projection>(
    client: &tokio_postgres::Client,
    config: &SnapshotConfig<P>,
    p: u32,
    boundary: i64,
) -> Result<(u64, Vec<Snapshot<P::State>>)> {
    let mut folding: HashMap<AggregateId, Folding<P>> = HashMap::new();
    let mut taken = Vec::new();
    let mut read = 0u64;
    let events = eventlog::copy_partition(client, p, eventlog::Position::START, boundary).await?;
    pin_mut!(events);
    while let Some(raw) = events.next().await {
        let raw = raw?;
        read += 1;
        let bad = |reason: String| BadEvent {
            partition: p,
            global_seq: raw.global_seq,
            aggregate_id: raw.aggregate_id.clone(),
            version: raw.version,
            reason,
        };
        let event = raw.decode(&config.projection).map_err(|e| bad(e.to_string()))?;
        let f = folding.entry(raw.aggregate_id.clone()).or_insert_with(|| Folding {
            stream: Guarded::default(),
            max_seq: i64::MIN,
            max_ts: DateTime::<Utc>::MIN_UTC,
            held: BTreeMap::new(),
        });
        let next = f.stream.version() + 1;
        match event.meta.aggregate_version.cmp(&next) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Greater => {
                f.held.entry(event.meta.aggregate_version).or_insert(event);
            }
            std::cmp::Ordering::Equal => f.apply_run(config, p, event, &mut taken)?,
        }
    }
    Ok((read, taken))
}
