//! `bench adopt`: what adopting an app's events table costs the app and the replay, in one run.
//!
//! The seeded bank log (reproject's native layout, written by the seeder) is the baseline.
//! The same events, in log order, are written into an app-shaped table keyed by the chosen id
//! type (`app_events`, and an identical `app_events_control` that is never adopted) in a
//! database of their own; `app_events` is adopted (claim, history import, feed). Then:
//!
//! - **the app's inserts**: batches of new events into the adopted table and into the control
//!   table, alternating, while the feed runs (the cost of the position column's default, its
//!   index, and the feed's reads); `app_insert_overhead` = adopted / control (medians);
//! - **the replay**: v4 rebuilt from the native log and from the adopted one, alternating;
//!   `replay_vs_native` = adopted / native events/s (medians);
//! - **disk**: the log copy and the feed's index, beside the app's table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eventlog::adopt::{self, AdoptSpec, QualifiedName};
use fold::IdKind;
use futures::{pin_mut, SinkExt, StreamExt};
use lab::bank::V4;
use serde::Serialize;
use tokio_postgres::Client;

/// How to run `bench adopt`.
#[derive(Debug, Clone)]
pub struct AdoptBenchConfig {
    /// The seeded database (the native log).
    pub database_url: String,
    /// The app's stream id type.
    pub id: IdKind,
    /// Events per insert of the app (one transaction each).
    pub batch: usize,
    /// Insert rounds (each: one batch into each table) and replay rounds (each: one replay of
    /// each log).
    pub insert_rounds: usize,
    pub replay_rounds: usize,
    pub workers: usize,
    pub out_dir: PathBuf,
}

/// The figures of `bench adopt`.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptBench {
    pub events: i64,
    pub id_type: IdKind,
    /// Seconds to claim the table (one short transaction) and to build the feed's index
    /// concurrently.
    pub claim_seconds: f64,
    pub index_seconds: f64,
    /// The history import: events/s (COPY out of the app's table, into the log) and the
    /// seconds to index the log after it.
    pub history_events_per_s: f64,
    pub history_index_seconds: f64,
    pub insert_batch: usize,
    /// Median milliseconds per batch into the control table and into the adopted one.
    pub control_batch_ms: f64,
    pub adopted_batch_ms: f64,
    pub app_insert_overhead: f64,
    /// Events the feed copied while the inserts ran, and its rate.
    pub fed_events: i64,
    pub native_events_per_s: Vec<f64>,
    pub adopted_events_per_s: Vec<f64>,
    pub replay_vs_native: f64,
    pub app_table_bytes: i64,
    pub feed_index_bytes: i64,
    pub adopted_log_bytes: i64,
    pub native_log_bytes: i64,
    pub seconds: f64,
}

/// The URL of database `db` on the server of `url`.
fn database(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => format!("{url}/{db}"),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The app's table DDL (`{name}`) for ids of `id`, as the example's app has it.
fn app_table(name: &str, id: IdKind) -> String {
    format!(
        "CREATE TABLE {name} (event_id UUID PRIMARY KEY DEFAULT gen_random_uuid(), stream_id {} NOT NULL, \
         stream_version INT NOT NULL, event_type TEXT NOT NULL, data JSONB NOT NULL, \
         recorded_at TIMESTAMPTZ NOT NULL, UNIQUE (stream_id, stream_version))",
        fold::ColumnType::AggregateId.sql(id)
    )
}

/// A bank account id as the app keys it.
fn app_id(id: IdKind) -> &'static str {
    match id {
        IdKind::Bigint => "aggregate_id",
        IdKind::Uuid => {
            "('00000000-0000-0000-' || overlay(lpad(to_hex(aggregate_id), 16, '0') PLACING '-' FROM 5 FOR 0))::UUID"
        }
        IdKind::Text => "'acct-' || aggregate_id",
    }
}

/// Creates the app's database with `app_events` and `app_events_control` holding the native
/// log's events in log order (the order the app wrote them).
async fn app_database(native: &Client, admin_url: &str, app_url: &str, id: IdKind) -> Result<Client> {
    let admin = eventlog::connect(admin_url).await?;
    admin.batch_execute("DROP DATABASE IF EXISTS reproject_bench_app WITH (FORCE)").await?;
    admin.batch_execute("CREATE DATABASE reproject_bench_app").await?;
    let app = eventlog::connect(app_url).await?;
    app.batch_execute(&format!("{}; {};", app_table("app_events", id), app_table("app_events_control", id))).await?;
    for table in ["app_events", "app_events_control"] {
        let out = native
            .copy_out(
                format!(
                    "COPY (SELECT {}, version, type, payload, ts FROM log.events ORDER BY global_seq) TO STDOUT",
                    app_id(id)
                )
                .as_str(),
            )
            .await?;
        let sink = app
            .copy_in(
                format!("COPY {table} (stream_id, stream_version, event_type, data, recorded_at) FROM STDIN").as_str(),
            )
            .await?;
        pin_mut!(out);
        pin_mut!(sink);
        while let Some(chunk) = out.next().await {
            sink.send(chunk?).await?;
        }
        sink.as_mut().finish().await?;
        app.batch_execute(&format!("ANALYZE {table}")).await?;
    }
    Ok(app)
}

/// One batch of the app's inserts into `table`: `n` new accounts opened (ids past the log's),
/// as one multi-row INSERT; returns its milliseconds.
async fn insert_batch(app: &Client, table: &str, id: IdKind, first: i64, n: usize) -> Result<f64> {
    let sql = format!(
        "INSERT INTO {table} (stream_id, stream_version, event_type, data, recorded_at) \
         SELECT {}, 1, 'account_opened', jsonb_build_object('owner', 'c-' || aggregate_id, 'currency', 'EUR'), now() \
         FROM generate_series($1::BIGINT, $1::BIGINT + $2::BIGINT - 1) AS aggregate_id",
        app_id(id)
    );
    let started = Instant::now();
    app.execute(&sql, &[&first, &(n as i64)]).await?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// One replay of v4 from the log at `url`, from scratch; its events/s.
async fn replay_once(url: &str, workers: usize) -> Result<f64> {
    let mut client = eventlog::connect(url).await?;
    readmodel::ensure_schema(&mut client).await?;
    readmodel::drop_version(&mut client, &V4).await.context("resetting v4 (is it active?)")?;
    let config = projector::ReplayConfig {
        workers,
        catch_up: false,
        progress: false,
        poll: Duration::from_millis(50),
        ..projector::ReplayConfig::new(url, V4)
    };
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let report = projector::replay(&config, stop).await.context("replay")?;
    Ok(report.bulk_events as f64 / (report.bulk_seconds + report.barrier_seconds).max(1e-9))
}

/// A size in bytes, by `sql`.
async fn bytes(client: &Client, sql: &str) -> Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Runs `bench adopt` (see the module docs).
pub async fn adopt_bench(config: &AdoptBenchConfig) -> Result<AdoptBench> {
    let wall = Instant::now();
    let native = eventlog::connect(&config.database_url).await.context("connecting")?;
    let events: i64 = native.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let partitions = eventlog::partition_count(&native).await?;
    let app_url = database(&config.database_url, "reproject_bench_app");
    tracing::info!(events, id = %config.id, "copying the log into the app's tables");
    let mut app = app_database(&native, &config.database_url, &app_url, config.id).await?;
    let spec = AdoptSpec::new(
        QualifiedName::parse("app_events")?,
        ["stream_id", "stream_version", "event_type", "data", "recorded_at"],
    );
    let claimed = Instant::now();
    adopt::claim(&mut app, &spec, partitions, Duration::from_secs(2), 10).await?;
    let claim_seconds = claimed.elapsed().as_secs_f64();
    let indexed = Instant::now();
    adopt::ensure_feed_index(&app, &spec).await?;
    let index_seconds = indexed.elapsed().as_secs_f64();
    tracing::info!("importing the history");
    let history = adopt::import_history(&app_url, 50_000, |_| {}).await?;

    // The replays first, while both logs hold the same events.
    let (mut native_rates, mut adopted_rates) = (Vec::new(), Vec::new());
    for round in 0..config.replay_rounds {
        tracing::info!(round, "replaying v4 from the native log and from the adopted one");
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for is_native in order {
            if is_native {
                native_rates.push(replay_once(&config.database_url, config.workers).await?);
            } else {
                adopted_rates.push(replay_once(&app_url, config.workers).await?);
            }
        }
    }
    // The app's inserts, alternating between the tables, with the feed running.
    let (stop_feed, stop) = tokio::sync::watch::channel(false);
    let feed_url = app_url.clone();
    let feed = tokio::spawn(async move {
        let mut client = eventlog::connect(&feed_url).await?;
        let mut feeder = adopt::Feeder::open(&client, 5_000).await?;
        adopt::follow(&mut client, &mut feeder, Duration::from_millis(20), false, stop).await
    });
    let max_id: i64 = native.query_one("SELECT max(aggregate_id) FROM log.events", &[]).await?.get(0);
    let (mut control, mut adopted) = (Vec::new(), Vec::new());
    for round in 0..config.insert_rounds {
        let first = max_id + 1 + (round * config.batch) as i64;
        let tables =
            if round % 2 == 0 { ["app_events_control", "app_events"] } else { ["app_events", "app_events_control"] };
        for table in tables {
            let ms = insert_batch(&app, table, config.id, first, config.batch).await?;
            if table == "app_events" {
                adopted.push(ms)
            } else {
                control.push(ms)
            }
        }
    }
    // Everything inserted is fed before the feed stops.
    let target: i64 = app.query_one("SELECT count(*) FROM app_events", &[]).await?.get(0);
    let fed_by = Instant::now() + Duration::from_secs(120);
    while app.query_one("SELECT count(*) FROM log.events", &[]).await?.get::<_, i64>(0) < target {
        anyhow::ensure!(Instant::now() < fed_by, "the feed did not catch up with the app's inserts in 2 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_feed.send_replace(true);
    let fed = feed.await.context("feed task")??;
    const LOG_BYTES: &str = "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::BIGINT \
                             FROM pg_inherits WHERE inhparent = 'log.events'::regclass";
    let report = AdoptBench {
        events,
        id_type: config.id,
        claim_seconds,
        index_seconds,
        history_events_per_s: history.events_per_s,
        history_index_seconds: history.index_seconds,
        insert_batch: config.batch,
        control_batch_ms: median(&control),
        adopted_batch_ms: median(&adopted),
        app_insert_overhead: median(&adopted) / median(&control).max(1e-9),
        fed_events: fed as i64,
        replay_vs_native: median(&adopted_rates) / median(&native_rates).max(1e-9),
        native_events_per_s: native_rates,
        adopted_events_per_s: adopted_rates,
        app_table_bytes: bytes(&app, "SELECT pg_total_relation_size('app_events')").await?,
        feed_index_bytes: bytes(&app, "SELECT pg_relation_size('app_events_reproject_tx')").await?,
        adopted_log_bytes: bytes(&app, LOG_BYTES).await?,
        native_log_bytes: bytes(&native, LOG_BYTES).await?,
        seconds: wall.elapsed().as_secs_f64(),
    };
    let rows: Vec<Vec<String>> = control
        .iter()
        .zip(&adopted)
        .enumerate()
        .map(|(i, (c, a))| vec![i.to_string(), format!("{c:.3}"), format!("{a:.3}")])
        .collect();
    crate::write_csv(&config.out_dir.join("adopt_inserts.csv"), &["round", "control_ms", "adopted_ms"], &rows)?;
    crate::plot::bars(
        &config.out_dir.join("adopt.svg"),
        &format!("Adopting an app's table ({} events, {} ids): the app's inserts and the replay", events, config.id),
        "ratio to the baseline (1 = no cost)",
        &[
            ("app insert, adopted / control".to_owned(), report.app_insert_overhead),
            ("replay, adopted / native".to_owned(), report.replay_vs_native),
        ],
    )?;
    Ok(report)
}
