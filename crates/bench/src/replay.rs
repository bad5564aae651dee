//! `bench replay`: raw scan vs. full replay vs. naive projector, on one log, in one run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fold::Guarded;
use futures::{pin_mut, StreamExt};
use lab::bank::V4;
use serde::Serialize;
use tokio_postgres::Client;

/// The raw scan: `COPY (SELECT <the columns a replay reads> FROM log.events) TO STDOUT (FORMAT
/// binary)` read by the client and discarded (COPY of a partitioned table needs the query form).
#[derive(Debug, Clone, Serialize)]
pub struct ScanResult {
    pub events: i64,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub mb_per_s: f64,
}

/// Scans the whole log once with binary COPY.
pub async fn scan(client: &Client) -> Result<ScanResult> {
    let events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let started = Instant::now();
    let stream = client.copy_out("COPY (SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id FROM log.events) TO STDOUT (FORMAT binary)").await?;
    pin_mut!(stream);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ScanResult {
        events,
        bytes,
        seconds,
        events_per_s: events as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
    })
}

/// The naive projector: one event, one statement, one commit.
#[derive(Debug, Clone, Serialize)]
pub struct NaiveResult {
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub synchronous_commit: bool,
}

/// Projects the first events of the log (by global_seq) one at a time: each event is one
/// autocommitted upsert of the folded row into `read.accounts_naive`. Stops after `max_events`
/// or `max_time`, whichever comes first.
pub async fn naive(
    client: &Client,
    max_events: i64,
    max_time: Duration,
    synchronous_commit: bool,
) -> Result<NaiveResult> {
    client
        .batch_execute(
            "DROP TABLE IF EXISTS read.accounts_naive; \
             CREATE TABLE read.accounts_naive (aggregate_id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, \
               status TEXT NOT NULL, aggregate_version INT NOT NULL, applied_seq BIGINT NOT NULL)",
        )
        .await?;
    client
        .batch_execute(if synchronous_commit { "SET synchronous_commit = on" } else { "SET synchronous_commit = off" })
        .await?;
    let rows = client
        .query(
            "SELECT global_seq, aggregate_id, version, type, ts, payload, tx_id FROM log.events \
             ORDER BY global_seq LIMIT $1",
            &[&max_events],
        )
        .await?;
    let upsert = client
        .prepare(
            "INSERT INTO read.accounts_naive AS a VALUES ($1, $2, $3, $4, $5) ON CONFLICT (aggregate_id) DO UPDATE \
             SET balance = EXCLUDED.balance, status = EXCLUDED.status, aggregate_version = EXCLUDED.aggregate_version, \
             applied_seq = EXCLUDED.applied_seq WHERE a.aggregate_version < EXCLUDED.aggregate_version",
        )
        .await?;
    let mut streams: std::collections::HashMap<fold::AggregateId, Guarded<V4>> = std::collections::HashMap::new();
    let started = Instant::now();
    let mut events = 0u64;
    for row in rows {
        let raw = eventlog::RawEvent {
            global_seq: row.get(0),
            aggregate_id: row.get(1),
            version: row.get(2),
            event_type: row.get(3),
            ts: row.get(4),
            payload: row.get::<_, eventlog::Jsonb>(5).0,
            tx_id: row.get(6),
        };
        let event = raw.decode(&V4).with_context(|| format!("decoding global_seq {}", raw.global_seq))?;
        let stream = streams.entry(raw.aggregate_id.clone()).or_default();
        stream.offer(&V4, event)?;
        if let Some(r) = &stream.row {
            let a = &r.state;
            client
                .execute(
                    &upsert,
                    &[&r.aggregate_id, &a.balance, &a.status.as_str(), &r.aggregate_version, &r.applied_seq],
                )
                .await?;
        }
        events += 1;
        if started.elapsed() >= max_time {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE read.accounts_naive; RESET synchronous_commit").await?;
    Ok(NaiveResult { events, seconds, events_per_s: events as f64 / seconds, synchronous_commit })
}

/// Configuration of `bench replay`.
#[derive(Debug, Clone)]
pub struct ReplayBenchConfig {
    pub database_url: String,
    pub workers: usize,
    pub naive_events: i64,
    pub naive_time: Duration,
    /// The replay's held limit (`ReplayConfig::held_limit`).
    pub held_limit: Option<usize>,
    pub out_dir: PathBuf,
}

/// Figures of `bench replay`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayBench {
    pub events: i64,
    pub aggregates: i64,
    pub log_bytes: u64,
    pub workers: usize,
    pub scan_events_per_s: f64,
    pub scan_mb_per_s: f64,
    pub scan_seconds: f64,
    pub replay_events_per_s: f64,
    pub replay_mb_per_s: f64,
    pub replay_seconds: f64,
    pub replay_bulk_seconds: f64,
    pub replay_barrier_seconds: f64,
    pub naive_events_per_s: f64,
    pub naive_async_events_per_s: f64,
    pub replay_vs_scan: f64,
    pub replay_vs_naive: f64,
    /// The larger of the two phases' peaks below (whole process, VmHWM).
    pub peak_rss_bytes: u64,
    /// Peak RSS of the process during the scan (the peak is reset before it).
    pub scan_peak_rss_bytes: u64,
    /// Peak RSS of the process during the replay (bulk and barrier; reset before it).
    pub replay_peak_rss_bytes: u64,
    /// RSS of the process when the replay started (what the bench held before).
    pub rss_before_replay_bytes: u64,
    /// Whether the kernel let the peak be reset between phases (else both count from start).
    pub rss_per_phase: bool,
    /// Events of the largest partition, and its aggregates (a worker's hash map).
    pub largest_partition_events: u64,
    pub largest_partition_aggregates: u64,
    /// Events held at some point by the bulk fold, and the most held at once by one fold.
    pub held_total: u64,
    pub held_peak: u64,
    /// The held limit, and what reaching it sent through the spill table.
    pub held_limit: Option<usize>,
    pub deferred_aggregates: u64,
    pub spilled: u64,
    /// Gap lookups at the held limit, and the events they applied ahead of the stream.
    pub gap_lookups: u64,
    pub fetched: u64,
    /// Held events evicted at the limit, and the evicted events read back from the log.
    pub evicted: u64,
    pub refetched: u64,
    pub wall_seconds: f64,
    pub payload_type: String,
}

/// Runs scan, replay (bulk + barrier, v4 from scratch) and the naive projector on the log at
/// `config.database_url`, writes `replay.csv` and `replay.svg` into `out_dir`.
pub async fn replay_bench(config: &ReplayBenchConfig) -> Result<ReplayBench> {
    let wall = Instant::now();
    let mut client = eventlog::connect(&config.database_url).await.context("connecting")?;
    readmodel::ensure_schema(&mut client).await?;
    readmodel::drop_version(&mut client, &V4).await.context("resetting v4 (is it active?)")?;
    let aggregates: i64 = client.query_one("SELECT count(DISTINCT aggregate_id) FROM log.events", &[]).await?.get(0);
    let payload_type: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'log.events'::regclass AND attname = 'payload'",
            &[],
        )
        .await?
        .get(0);
    tracing::info!("scanning the log with COPY TO");
    let mut rss_per_phase = projector::reset_peak_rss();
    let scan = scan(&client).await?;
    let scan_peak_rss_bytes = projector::peak_rss_bytes();
    rss_per_phase &= projector::reset_peak_rss();
    let rss_before_replay_bytes = projector::current_rss_bytes();
    tracing::info!(events_per_s = scan.events_per_s as u64, "scan done; replaying v4");
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let replay_config = projector::ReplayConfig {
        workers: config.workers,
        catch_up: false,
        poll: Duration::from_millis(50),
        progress: true,
        held_limit: config.held_limit,
        ..projector::ReplayConfig::new(&config.database_url, V4)
    };
    let replay = projector::replay(&replay_config, stop).await.context("replay")?;
    let replay_seconds = replay.bulk_seconds + replay.barrier_seconds;
    tracing::info!(seconds = replay_seconds, "replay done; running the naive projector");
    let naive_sync = naive(&client, config.naive_events, config.naive_time, true).await?;
    let naive_async = naive(&client, config.naive_events, config.naive_time, false).await?;
    let replay_events_per_s = replay.bulk_events as f64 / replay_seconds;
    let result = ReplayBench {
        events: scan.events,
        aggregates,
        log_bytes: scan.bytes,
        workers: config.workers,
        scan_events_per_s: scan.events_per_s,
        scan_mb_per_s: scan.mb_per_s,
        scan_seconds: scan.seconds,
        replay_events_per_s,
        replay_mb_per_s: scan.bytes as f64 / 1e6 / replay_seconds,
        replay_seconds,
        replay_bulk_seconds: replay.bulk_seconds,
        replay_barrier_seconds: replay.barrier_seconds,
        naive_events_per_s: naive_sync.events_per_s,
        naive_async_events_per_s: naive_async.events_per_s,
        replay_vs_scan: replay_events_per_s / scan.events_per_s,
        replay_vs_naive: replay_events_per_s / naive_sync.events_per_s,
        peak_rss_bytes: scan_peak_rss_bytes.max(replay.peak_rss_bytes),
        scan_peak_rss_bytes,
        replay_peak_rss_bytes: replay.peak_rss_bytes,
        rss_before_replay_bytes,
        rss_per_phase,
        largest_partition_events: replay.largest_partition_events,
        largest_partition_aggregates: replay.largest_partition_aggregates,
        held_total: replay.bulk_held_total,
        held_peak: replay.bulk_held_peak,
        held_limit: replay.held_limit,
        deferred_aggregates: replay.bulk_deferred_aggregates,
        spilled: replay.bulk_spilled,
        gap_lookups: replay.bulk_gap_lookups,
        fetched: replay.bulk_fetched,
        evicted: replay.bulk_evicted,
        refetched: replay.bulk_refetched,
        wall_seconds: wall.elapsed().as_secs_f64(),
        payload_type,
    };
    crate::write_csv(
        &config.out_dir.join("replay.csv"),
        &["method", "events", "seconds", "events_per_s"],
        &[
            vec![
                "scan".into(),
                scan.events.to_string(),
                format!("{:.3}", scan.seconds),
                format!("{:.0}", scan.events_per_s),
            ],
            vec![
                "replay".into(),
                replay.bulk_events.to_string(),
                format!("{replay_seconds:.3}"),
                format!("{replay_events_per_s:.0}"),
            ],
            vec![
                "naive_sync_commit".into(),
                naive_sync.events.to_string(),
                format!("{:.3}", naive_sync.seconds),
                format!("{:.0}", naive_sync.events_per_s),
            ],
            vec![
                "naive_async_commit".into(),
                naive_async.events.to_string(),
                format!("{:.3}", naive_async.seconds),
                format!("{:.0}", naive_async.events_per_s),
            ],
        ],
    )?;
    crate::plot::figures::render("replay", &config.out_dir)?;
    Ok(result)
}
