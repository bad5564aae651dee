//! `bench store` (experiment 8): the same log rebuilt into PostgreSQL and into Redis, beside
//! the raw COPY scan of it, in one run; the Redis rows verified against the log; then rebuilds
//! into a fresh Redis from snapshots at several cuts against the rebuild from offset 0.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lab::bank::V4;
use redisstore::{Layout, RedisReplayConfig, RedisStore, Throwaway};
use serde::Serialize;

/// Configuration of `bench store`.
#[derive(Debug, Clone)]
pub struct StoreBenchConfig {
    pub database_url: String,
    pub workers: usize,
    /// Snapshot points, as fractions of the log's events below the cut (0 < f < 1).
    pub snapshot_points: Vec<f64>,
    pub out_dir: PathBuf,
}

/// One rebuild from a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotPoint {
    /// The fraction asked for, and the one the cut gives (cuts fall between transactions).
    pub asked: f64,
    pub fraction: f64,
    pub cut: i64,
    /// Events after the cut: what the rebuild still reads (the snapshot's staleness).
    pub events_after: u64,
    /// Taking the snapshot (folding the log below the cut, storing it).
    pub take_seconds: f64,
    /// The rebuild into a fresh Redis from the snapshot plus the log after it.
    pub rebuild_seconds: f64,
    pub bytes: i64,
    pub diffs: u64,
}

/// Figures of `bench store`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreBench {
    pub scale_events: i64,
    pub scale_aggregates: i64,
    pub partitions: u32,
    pub workers: usize,
    pub log_bytes: i64,
    pub scan_events_per_s: f64,
    pub pg_events_per_s: f64,
    pub pg_seconds: f64,
    pub pg_table_bytes: i64,
    pub redis_events_per_s: f64,
    pub redis_vs_scan: f64,
    pub redis_vs_pg: f64,
    pub redis_diffs: u64,
    pub redis_rows: u64,
    pub redis_used_memory_bytes: u64,
    pub redis_bytes_per_aggregate: f64,
    pub redis_aof_bytes: u64,
    pub redis_verify_seconds: f64,
    pub offset0_seconds: f64,
    pub snapshots: Vec<SnapshotPoint>,
    pub snapshot_seconds: Vec<f64>,
    pub snapshot_bytes: Vec<i64>,
    pub wall_seconds: f64,
}

/// Runs the bench on the log at `config.database_url`; writes `store.csv`, `store_rates.svg`
/// and `store_rebuild.svg` into `out_dir`.
pub async fn store_bench(config: &StoreBenchConfig) -> Result<StoreBench> {
    let wall = Instant::now();
    let url = &config.database_url;
    let mut client = eventlog::connect(url).await.context("connecting")?;
    readmodel::ensure_schema(&mut client).await?;
    readmodel::drop_version(&mut client, &V4).await.context("resetting v4 (is it active?)")?;
    let partitions = eventlog::partition_count(&client).await?;
    let aggregates: i64 = client.query_one("SELECT count(DISTINCT aggregate_id) FROM log.events", &[]).await?.get(0);
    let log_bytes = relation_bytes(&client, "log.events").await?;

    tracing::info!("scanning the log with COPY TO");
    let scan = crate::scan(&client).await?;

    tracing::info!("replaying v4 into PostgreSQL");
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let pg_config = projector::ReplayConfig {
        workers: config.workers,
        catch_up: false,
        poll: Duration::from_millis(50),
        ..projector::ReplayConfig::new(url, V4)
    };
    let pg = projector::replay(&pg_config, stop).await.context("replay into PostgreSQL")?;
    let pg_seconds = pg.bulk_seconds + pg.barrier_seconds;
    let pg_table_bytes = relation_bytes(&client, "read.accounts_v4").await?;

    tracing::info!("replaying v4 into Redis");
    let redis = Throwaway::start().context("starting redis-server")?;
    let id = eventlog::id_kind(&client).await?;
    let mut store = RedisStore::open(&redis.url(), Layout::of(&V4)?, id).await?;
    let memory_before = store.used_memory().await?;
    let replay_config = RedisReplayConfig { workers: config.workers, ..RedisReplayConfig::new(url, &redis.url(), V4) };
    let offset0 = redisstore::replay(&replay_config).await.context("replay into Redis")?;
    let memory_after = store.used_memory().await?;
    let aof_bytes = dir_bytes(redis.dir());
    let verified = Instant::now();
    let verdict = redisstore::verify(&client, &mut store, &V4).await.context("verifying the Redis rows")?;
    let redis_verify_seconds = verified.elapsed().as_secs_f64();
    drop(store);
    drop(redis);
    let boundary = offset0.boundary;

    let mut snapshots = Vec::new();
    for &asked in &config.snapshot_points {
        let (cut, below) = cut_at(&client, asked, scan.events, boundary).await?;
        tracing::info!(asked, cut, below, "snapshot point");
        let taken = Instant::now();
        let snap = redisstore::snapshot::take(url, &V4, cut).await.context("taking a snapshot")?;
        let take_seconds = taken.elapsed().as_secs_f64();
        let fresh = Throwaway::start().context("starting redis-server")?;
        let rebuild = redisstore::replay(&RedisReplayConfig {
            workers: config.workers,
            from_snapshot: Some(cut),
            until: Some(boundary),
            ..RedisReplayConfig::new(url, &fresh.url(), V4)
        })
        .await
        .context("rebuild from a snapshot")?;
        let mut store = RedisStore::open(&fresh.url(), Layout::of(&V4)?, id).await?;
        let diffs = redisstore::verify(&client, &mut store, &V4).await?.diffs;
        snapshots.push(SnapshotPoint {
            asked,
            fraction: below as f64 / scan.events.max(1) as f64,
            cut,
            events_after: rebuild.events,
            take_seconds,
            rebuild_seconds: rebuild.seconds,
            bytes: snap.bytes,
            diffs,
        });
        client.execute("DELETE FROM read.cut_snapshots WHERE fold = 'v4' AND cut = $1", &[&cut]).await?;
    }

    let redis_events_per_s = offset0.events_per_s;
    let pg_events_per_s = pg.bulk_events as f64 / pg_seconds.max(1e-9);
    let result = StoreBench {
        scale_events: scan.events,
        scale_aggregates: aggregates,
        partitions,
        workers: config.workers,
        log_bytes,
        scan_events_per_s: scan.events_per_s,
        pg_events_per_s,
        pg_seconds,
        pg_table_bytes,
        redis_events_per_s,
        redis_vs_scan: redis_events_per_s / scan.events_per_s,
        redis_vs_pg: redis_events_per_s / pg_events_per_s,
        redis_diffs: verdict.diffs,
        redis_rows: verdict.stored_rows,
        redis_used_memory_bytes: memory_after.saturating_sub(memory_before),
        redis_bytes_per_aggregate: memory_after.saturating_sub(memory_before) as f64
            / verdict.stored_rows.max(1) as f64,
        redis_aof_bytes: aof_bytes,
        redis_verify_seconds,
        offset0_seconds: offset0.seconds,
        snapshot_seconds: snapshots.iter().map(|s| s.rebuild_seconds).collect(),
        snapshot_bytes: snapshots.iter().map(|s| s.bytes).collect(),
        snapshots,
        wall_seconds: wall.elapsed().as_secs_f64(),
    };
    write_outputs(config, &result, scan.seconds)?;
    Ok(result)
}

/// The cut below which about `fraction` of the log's events lie: one past the transaction of
/// the event at that rank in `tx_id` order (cuts fall between transactions). Returns the cut
/// and the events below it.
async fn cut_at(client: &tokio_postgres::Client, fraction: f64, events: i64, boundary: i64) -> Result<(i64, i64)> {
    let rank = ((events as f64 * fraction) as i64).clamp(0, events.saturating_sub(1));
    let tx: i64 =
        client.query_one("SELECT tx_id FROM log.events ORDER BY tx_id OFFSET $1 LIMIT 1", &[&rank]).await?.get(0);
    let cut = (tx + 1).min(boundary);
    let below: i64 = client.query_one("SELECT count(*) FROM log.events WHERE tx_id < $1", &[&cut]).await?.get(0);
    Ok((cut, below))
}

/// Bytes of a partitioned table: its partitions with their indexes and TOAST.
async fn relation_bytes(client: &tokio_postgres::Client, table: &str) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::BIGINT + pg_total_relation_size($1::TEXT::regclass) \
             FROM pg_inherits WHERE inhparent = $1::TEXT::regclass",
            &[&table],
        )
        .await?
        .get(0))
}

/// Bytes of the files in `dir` and its subdirectories (the append-only files).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn write_outputs(config: &StoreBenchConfig, r: &StoreBench, scan_seconds: f64) -> Result<()> {
    let events = r.scale_events as f64;
    let mut rows = vec![
        vec![
            "scan".into(),
            r.scale_events.to_string(),
            format!("{scan_seconds:.3}"),
            format!("{:.0}", r.scan_events_per_s),
        ],
        vec![
            "postgres".into(),
            r.scale_events.to_string(),
            format!("{:.3}", r.pg_seconds),
            format!("{:.0}", r.pg_events_per_s),
        ],
        vec![
            "redis offset 0".into(),
            r.scale_events.to_string(),
            format!("{:.3}", r.offset0_seconds),
            format!("{:.0}", r.redis_events_per_s),
        ],
    ];
    for s in &r.snapshots {
        rows.push(vec![
            format!("redis from snapshot at {:.0}%", s.fraction * 100.0),
            s.events_after.to_string(),
            format!("{:.3}", s.rebuild_seconds),
            format!("{:.0}", s.events_after as f64 / s.rebuild_seconds.max(1e-9)),
        ]);
    }
    crate::write_csv(&config.out_dir.join("store.csv"), &["method", "events", "seconds", "events_per_s"], &rows)?;
    crate::plot::bars(
        &config.out_dir.join("store_rates.svg"),
        &format!("Rebuilding v4 from {} events: PostgreSQL vs Redis vs the raw scan", r.scale_events),
        "events/s",
        &[
            ("raw COPY scan".to_owned(), r.scan_events_per_s),
            ("replay into PostgreSQL".to_owned(), r.pg_events_per_s),
            ("replay into Redis".to_owned(), r.redis_events_per_s),
        ],
    )?;
    let mut bars = vec![("from offset 0".to_owned(), r.offset0_seconds)];
    for s in &r.snapshots {
        bars.push((format!("from a snapshot at {:.0}% of the log", s.fraction * 100.0), s.rebuild_seconds));
    }
    crate::plot::bars(
        &config.out_dir.join("store_rebuild.svg"),
        &format!("Rebuilding v4 into a fresh Redis ({} events)", events),
        "seconds",
        &bars,
    )?;
    Ok(())
}
