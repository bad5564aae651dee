//! The Kafka benches: `bench compaction` (experiment 7) and `bench kafka` (the replay from a
//! topic against a raw consume of it, and the tail's lag under `produce`). Both use --topic's
//! cluster, or a throwaway `tansu` broker started here.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use kafkalog::{Broker, KafkaLog};
use lab::bank::V4;

use super::{print_files, workers, LogArgs};
use crate::cli::parse_duration;

/// The flags of `bench compaction`.
#[derive(Debug, Args)]
pub struct CompactionArgs {
    /// Events in the history (seeded into the event store, then mirrored into two topics).
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Aggregates in the history.
    #[arg(long, default_value_t = 20_000)]
    pub aggregates: u64,
    /// Partitions of the log and of the topics.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Reseed even when the database already holds this log.
    #[arg(long)]
    pub reseed: bool,
    /// Give up waiting for the broker's compaction after this long.
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub compaction_wait: Duration,
}

/// The flags of `bench kafka`.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Events in the log (seeded into the event store, mirrored into the topic).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Aggregates in the log.
    #[arg(long, default_value_t = 100_000)]
    pub aggregates: u64,
    /// Partitions of the log and of the topic.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Reseed even when the database already holds this log.
    #[arg(long)]
    pub reseed: bool,
    /// Replay workers and raw-consume workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The tail phase: events per second the producer appends (mirrored into the topic).
    #[arg(long, default_value_t = 2_000.0)]
    pub ingest: f64,
    /// The tail phase's length.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,
}

impl CompactionArgs {
    pub fn log(&self) -> LogArgs {
        LogArgs { events: self.events, aggregates: self.aggregates, partitions: self.partitions, reseed: self.reseed }
    }
}

impl KafkaArgs {
    pub fn log(&self) -> LogArgs {
        LogArgs { events: self.events, aggregates: self.aggregates, partitions: self.partitions, reseed: self.reseed }
    }

    pub fn validate(&self) -> Result<()> {
        workers(self.workers)?;
        if !self.ingest.is_finite() || self.ingest <= 0.0 {
            bail!("--ingest must be a positive number of events per second");
        }
        Ok(())
    }
}

/// --topic's cluster, or a throwaway broker (kept alive by the returned guard).
fn cluster(topic: Option<KafkaLog>, name: &str) -> Result<(KafkaLog, Option<Broker>)> {
    match topic {
        Some(t) => Ok((t, None)),
        None => {
            let broker = Broker::start().context("starting a throwaway tansu broker (or pass --topic)")?;
            println!("broker: tansu on {} (throwaway)", broker.bootstrap());
            Ok((broker.log(name), Some(broker)))
        }
    }
}

/// Replays v4 from the event store from scratch (a version dropped first) to the head.
async fn fresh_v4_from_store(url: &str) -> Result<projector::ReplayReport> {
    drop_v4(url).await?;
    let (_keep, stop) = tokio::sync::watch::channel(false);
    Ok(projector::replay(&projector::ReplayConfig::new(url, V4), stop).await?)
}

/// Empties the read side (every version: a bench's database is its own, as its reseed is) so
/// that v4 is rebuilt from nothing.
async fn drop_v4(url: &str) -> Result<()> {
    let mut client = eventlog::connect(url).await?;
    client.batch_execute("DROP SCHEMA IF EXISTS read CASCADE").await?;
    readmodel::ensure_schema(&mut client).await?;
    Ok(())
}

pub async fn compaction(url: String, out: &Path, a: CompactionArgs, topic: Option<KafkaLog>) -> Result<()> {
    let (cluster, _broker) = cluster(topic, "exp7")?;
    // (a) the event store: v4 from the log, verified; one aggregate's history, whole.
    let replayed = fresh_v4_from_store(&url).await?;
    let client = eventlog::connect(&url).await?;
    let verified = lab::verify::against_expected(&client, &V4).await?;
    let sample: i64 = client
        .query_one("SELECT aggregate_id FROM log.events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1", &[])
        .await?
        .get(0);
    let history = eventlog::aggregate_events(&client, &sample.into(), chrono::Utc::now(), i64::MAX).await?;
    let whole = history.iter().enumerate().all(|(i, e)| e.version == i as i32 + 1);
    let on_disk: i64 = client
        .query_one(
            "SELECT sum(pg_total_relation_size(inhrelid))::BIGINT FROM pg_inherits WHERE inhparent = 'log.events'::regclass",
            &[],
        )
        .await?
        .get(0);
    let events = replayed.bulk_events + replayed.catch_up.as_ref().map_or(0, |c| c.events_read);
    let store = kafkalog::compaction::LogRow {
        log: "event store (PostgreSQL)".into(),
        diffs: verified.diffs,
        time_travel: whole,
        time_travel_error: None,
        records_before: events,
        records_after: events,
        bytes_before: on_disk as u64,
        bytes_after: on_disk as u64,
    };
    let r = kafkalog::compaction::run(&url, &cluster, a.partitions, V4, store, a.compaction_wait).await?;
    println!(
        "scale: {} events, {} aggregates, {} partitions; compaction took {:.1} s to show",
        r.events, r.aggregates, r.partitions, r.compaction_wait_s
    );
    println!(
        "{:<44} {:>8} {:>12} {:>22} {:>24}",
        "log", "diffs", "time travel", "records before/after", "bytes before/after"
    );
    let mut rows = Vec::new();
    for row in &r.rows {
        println!(
            "{:<44} {:>8} {:>12} {:>22} {:>24}",
            row.log,
            row.diffs,
            if row.time_travel { "yes" } else { "refused" },
            format!("{}/{}", row.records_before, row.records_after),
            format!("{}/{}", row.bytes_before, row.bytes_after)
        );
        rows.push(vec![
            row.log.clone(),
            r.aggregates.to_string(),
            row.diffs.to_string(),
            row.time_travel.to_string(),
            row.records_before.to_string(),
            row.records_after.to_string(),
            row.bytes_before.to_string(),
            row.bytes_after.to_string(),
        ]);
    }
    for row in &r.rows {
        if let Some(e) = &row.time_travel_error {
            println!("{}: time travel: {e}", row.log);
        }
    }
    bench::write_csv(
        &out.join("compaction.csv"),
        &[
            "log",
            "aggregates",
            "diffs",
            "time_travel",
            "records_before",
            "records_after",
            "bytes_before",
            "bytes_after",
        ],
        &rows,
    )?;
    bench::plot::figures::render("compaction", out)?;
    print_files(out, "compaction.csv", "compaction.svg");
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

pub async fn kafka(url: String, out: &Path, a: KafkaArgs, topic: Option<KafkaLog>) -> Result<()> {
    let workers = workers(a.workers)?;
    let (log, _broker) = cluster(topic, "bench")?;
    let client = eventlog::connect(&url).await?;
    let in_store: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    log.create(a.partitions, false).await?;
    let in_topic: i64 = log.watermarks()?.iter().map(|(_, h)| h).sum();
    let (_keep, never) = tokio::sync::watch::channel(false);
    if in_topic != in_store {
        println!("mirroring {in_store} events into {log} ...");
        let m = kafkalog::mirror(&kafkalog::MirrorConfig::new(&url, log.clone()), never.clone()).await?;
        println!("mirrored {} events in {:.1} s: {:.0} events/s", m.events, m.seconds, m.events_per_s);
    }
    // The baseline and the replay, back to back on the same topic.
    let consume = kafkalog::consume_all(&log, workers).await?;
    drop_v4(&url).await?;
    let config = kafkalog::KafkaReplayConfig {
        workers,
        progress: false,
        ..kafkalog::KafkaReplayConfig::new(&url, log.clone(), V4)
    };
    let started = Instant::now();
    let replay = kafkalog::replay(&config, never.clone()).await?;
    let replay_seconds = started.elapsed().as_secs_f64();
    let replay_vs_consume = replay.bulk_events_per_s / consume.records_per_s.max(1e-9);

    // The tail under produce: the producer appends to the event store, the mirror follows it
    // into the topic, the live projector tails the topic; the lag is sampled every 250 ms.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let producer = {
        let (url, stop) = (url.clone(), stop.clone());
        let config = lab::ProduceConfig::new(a.ingest, Some(a.duration), 11);
        tokio::spawn(async move { lab::produce::run(&url, config, stop).await })
    };
    let mirror = {
        let config = kafkalog::MirrorConfig { follow: true, ..kafkalog::MirrorConfig::new(&url, log.clone()) };
        let stop = stop.clone();
        tokio::spawn(async move { kafkalog::mirror(&config, stop).await })
    };
    let tail = {
        let (url, log, stop) = (url.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            let mut client = eventlog::connect(&url).await?;
            let source = kafkalog::KafkaSource::open(&log)?;
            let config =
                projector::LiveConfig { poll: Duration::from_millis(10), ..projector::LiveConfig::new(&url, V4) };
            anyhow::Ok(projector::run_tail_on(&mut client, &config, stop, None, source).await?)
        })
    };
    let mut samples: Vec<(f64, f64, f64)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < a.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let high: i64 = log.watermarks()?.iter().map(|(_, h)| h).sum();
        let applied: i64 = client
            .query_one(
                "SELECT coalesce(sum(position_tx), 0)::BIGINT FROM read.projection_offsets WHERE version = 'v4'",
                &[],
            )
            .await?
            .get(0);
        let store_lag: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get::<_, i64>(0) - high;
        samples.push((started.elapsed().as_secs_f64(), (high - applied).max(0) as f64, store_lag.max(0) as f64));
    }
    let produced = producer.await.context("producer task")??;
    stop_tx.send_replace(true);
    mirror.await.context("mirror task")??;
    tail.await.context("tail task")??;
    let mut lags: Vec<f64> = samples.iter().map(|s| s.1).collect();
    lags.sort_by(f64::total_cmp);
    let pct = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let rows: Vec<Vec<String>> =
        samples.iter().map(|(t, l, m)| vec![format!("{t:.2}"), format!("{l:.0}"), format!("{m:.0}")]).collect();
    bench::write_csv(&out.join("kafka_tail.csv"), &["t_s", "projector_lag_records", "mirror_lag_events"], &rows)?;
    bench::plot::figures::render("kafka_tail", out)?;
    println!("scale: {} events, {} aggregates, {} partitions; {workers} workers", in_store, a.aggregates, a.partitions);
    println!(
        "raw consume:      {:>10.0} records/s  {:>7.1} MB/s  {:>7.2}s",
        consume.records_per_s,
        consume.bytes as f64 / 1e6 / consume.seconds,
        consume.seconds
    );
    println!(
        "replay (bulk):    {:>10.0} events/s   {:>7.1} MB/s  {:>7.2}s (whole replay with catch-up {:.2}s)",
        replay.bulk_events_per_s,
        replay.bulk_mb_per_s,
        replay.bulk_seconds + replay.barrier_seconds,
        replay_seconds
    );
    println!("replay_vs_consume = {replay_vs_consume:.2}");
    println!(
        "tail under produce: {:.0} events/s achieved; projector lag p50 {:.0}, p99 {:.0}, max {:.0} records",
        produced.events_per_s,
        pct(0.5),
        pct(0.99),
        lags.last().copied().unwrap_or(0.0)
    );
    print_files(out, "kafka_tail.csv", "kafka_tail.svg");
    let verified = lab::verify::against_expected(&client, &V4).await?;
    println!("v4 from the topic vs the true state: {} diffs", verified.diffs);
    let json = serde_json::json!({
        "events": in_store,
        "partitions": a.partitions,
        "workers": workers,
        "consume_events_per_s": consume.records_per_s,
        "replay_events_per_s": replay.bulk_events_per_s,
        "replay_vs_consume": replay_vs_consume,
        "produce_events_per_s": produced.events_per_s,
        "tail_lag_p50_records": pct(0.5),
        "tail_lag_p99_records": pct(0.99),
        "tail_lag_max_records": lags.last().copied().unwrap_or(0.0),
        "diffs": verified.diffs,
    });
    println!("{json}");
    Ok(())
}
