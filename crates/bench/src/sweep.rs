//! `bench batch-sweep` (experiment 1): tail-path throughput against write batch size.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lab::bank::V4;
use serde::Serialize;
use tokio_postgres::Client;

/// Configuration of the sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub database_url: String,
    pub batches: Vec<usize>,
    /// Each point stops after this many events or this long, whichever comes first.
    pub max_events: u64,
    pub max_time: Duration,
    /// Commit with synchronous_commit=on (each commit waits for its WAL flush).
    pub synchronous_commit: bool,
    pub out_dir: PathBuf,
}

/// One point of the sweep, with the WAL and checkpointer deltas that explain it.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub batch: usize,
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub commits: u64,
    /// Projected time to rebuild the whole log at this rate.
    pub rebuild_seconds: f64,
    pub wal_bytes_per_event: f64,
    pub wal_syncs: i64,
    pub wal_sync_ms: f64,
    pub wal_write_ms: f64,
    pub buffers_backend: i64,
    pub checkpoints: i64,
}

/// Figures of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub log_events: i64,
    pub points: Vec<SweepPoint>,
    /// The smallest batch reaching 90% of the best throughput.
    pub knee_batch: usize,
    pub best_events_per_s: f64,
    pub synchronous_commit: bool,
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    wal_bytes: f64,
    wal_sync: i64,
    wal_sync_ms: f64,
    wal_write_ms: f64,
    buffers_backend: i64,
    checkpoints: i64,
}

async fn stats(client: &Client) -> Result<Stats> {
    let r = client
        .query_one(
            "SELECT w.wal_bytes::FLOAT8, w.wal_sync, w.wal_sync_time, w.wal_write_time, \
                    b.buffers_backend, b.checkpoints_timed + b.checkpoints_req \
             FROM pg_stat_wal w, pg_stat_bgwriter b",
            &[],
        )
        .await?;
    Ok(Stats {
        wal_bytes: r.get(0),
        wal_sync: r.get(1),
        wal_sync_ms: r.get(2),
        wal_write_ms: r.get(3),
        buffers_backend: r.get(4),
        checkpoints: r.get(5),
    })
}

/// Rebuilds v4 from scratch through the tail path once per batch size, bounded per point.
pub async fn batch_sweep(config: &SweepConfig) -> Result<Sweep> {
    let mut client = eventlog::connect(&config.database_url).await.context("connecting")?;
    readmodel::ensure_schema(&mut client).await?;
    let partitions = eventlog::partition_count(&client).await?;
    let log_events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    // Timing columns of pg_stat_wal are filled only with track_wal_io_timing.
    let _ = client.batch_execute("SET track_wal_io_timing = on").await;
    client
        .batch_execute(if config.synchronous_commit {
            "SET synchronous_commit = on"
        } else {
            "SET synchronous_commit = off"
        })
        .await?;
    let mut points = Vec::new();
    for &batch in &config.batches {
        readmodel::drop_version(&mut client, &V4).await.context("resetting v4 (is it active?)")?;
        readmodel::register(&mut client, &V4, readmodel::State::Building, partitions).await?;
        readmodel::add_primary_key(&client, &V4).await?;
        let mut tailer = projector::Tailer::open(&client, V4, projector::TailOptions::batch(batch)).await?;
        let before = stats(&client).await?;
        let started = Instant::now();
        let (mut events, mut commits) = (0u64, 0u64);
        while events < config.max_events && started.elapsed() < config.max_time {
            let out = tailer.step(&mut client).await?;
            if out.read == 0 && out.drained {
                break;
            }
            events += out.read as u64;
            commits += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        let after = stats(&client).await?;
        let events_per_s = events as f64 / seconds;
        let point = SweepPoint {
            batch,
            events,
            seconds,
            events_per_s,
            commits,
            rebuild_seconds: log_events as f64 / events_per_s,
            wal_bytes_per_event: (after.wal_bytes - before.wal_bytes) / events.max(1) as f64,
            wal_syncs: after.wal_sync - before.wal_sync,
            wal_sync_ms: after.wal_sync_ms - before.wal_sync_ms,
            wal_write_ms: after.wal_write_ms - before.wal_write_ms,
            buffers_backend: after.buffers_backend - before.buffers_backend,
            checkpoints: after.checkpoints - before.checkpoints,
        };
        tracing::info!(batch, events, events_per_s = events_per_s as u64, wal_syncs = point.wal_syncs, "sweep point");
        points.push(point);
    }
    readmodel::drop_version(&mut client, &V4).await?;
    let best = points.iter().map(|p| p.events_per_s).fold(0.0, f64::max);
    let curve: Vec<(f64, f64)> = points.iter().map(|p| (p.batch as f64, p.events_per_s)).collect();
    let knee_batch = crate::plot::figures::knee(&curve).map_or(0, |b| b as usize);
    crate::write_csv(
        &config.out_dir.join("batch_sweep.csv"),
        &[
            "batch",
            "events",
            "seconds",
            "events_per_s",
            "commits",
            "rebuild_seconds",
            "wal_bytes_per_event",
            "wal_syncs",
            "wal_sync_ms",
        ],
        &points
            .iter()
            .map(|p| {
                vec![
                    p.batch.to_string(),
                    p.events.to_string(),
                    format!("{:.3}", p.seconds),
                    format!("{:.0}", p.events_per_s),
                    p.commits.to_string(),
                    format!("{:.0}", p.rebuild_seconds),
                    format!("{:.0}", p.wal_bytes_per_event),
                    p.wal_syncs.to_string(),
                    format!("{:.1}", p.wal_sync_ms),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    crate::plot::figures::render("batch_sweep", &config.out_dir)?;
    Ok(Sweep { log_events, points, knee_batch, best_events_per_s: best, synchronous_commit: config.synchronous_commit })
}
