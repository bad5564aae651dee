//! The replay from a topic: every partition read from its start to the high watermark seen
//! when its turn comes, folded in memory through the version guard ([`PartitionFold`]), its
//! rows written with its position `(high, 0)` in one transaction; then the primary key (the
//! barrier) and catch-up through the tail path ([`KafkaSource`]) to the high watermarks, as
//! the event store's replay does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlog::Position;
use fold::Projection;
use projector::partition_fold::PartitionFold;
use projector::{LiveConfig, LiveReport};
use readmodel::State;
use tracing::info;

use crate::record::decode;
use crate::source::{scan_partition, KafkaSource};
use crate::{Error, KafkaLog, Result};

/// Configuration of a replay from a topic.
#[derive(Debug, Clone)]
pub struct KafkaReplayConfig<P: Projection> {
    pub database_url: String,
    pub log: KafkaLog,
    pub projection: P,
    /// Partitions folded at once (each with its own consumer and connection).
    pub workers: usize,
    /// Tail batch size for catch-up.
    pub batch: usize,
    /// Catch up after the bulk phase (to the high watermarks, then stop or keep tailing).
    pub catch_up: bool,
    pub stop_at_head: bool,
    pub quarantine: bool,
    pub progress: bool,
}

impl<P: Projection> KafkaReplayConfig<P> {
    /// A replay with two workers that catches up and stops at the head.
    pub fn new(database_url: &str, log: KafkaLog, projection: P) -> KafkaReplayConfig<P> {
        KafkaReplayConfig {
            database_url: database_url.to_owned(),
            log,
            projection,
            workers: 2,
            batch: 10_000,
            catch_up: true,
            stop_at_head: true,
            quarantine: false,
            progress: false,
        }
    }
}

/// What a replay from a topic did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct KafkaReplayReport {
    pub version: String,
    pub partitions: u32,
    pub partitions_replayed: u32,
    pub bulk_events: u64,
    pub bulk_bytes: u64,
    pub bulk_rows: u64,
    pub bulk_seconds: f64,
    pub barrier_seconds: f64,
    pub bulk_events_per_s: f64,
    pub bulk_mb_per_s: f64,
    pub held_after_bulk: u64,
    pub catch_up: Option<LiveReport>,
    /// This process folded its share; another replay process of the version passes the
    /// barrier and catches up.
    pub finished_elsewhere: bool,
}

/// Rebuilds `config.projection` from the topic (see the module docs).
pub async fn replay<P: Projection>(
    config: &KafkaReplayConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<KafkaReplayReport> {
    let projection = &config.projection;
    let mut client = eventlog::connect(&config.database_url).await?;
    let partitions = config.log.partitions()?;
    readmodel::ensure_schema(&mut client).await?;
    // Shared for the bulk phase: several replay processes may fold one version together (a
    // live projector or a catch-up holds it exclusively). Registration is serialised.
    projector::lock_version_shared(&client, projection).await?;
    client.execute("SELECT pg_advisory_lock(hashtext('reproject:register'))", &[]).await?;
    let info = match readmodel::version_info(&client, projection.name()).await {
        Ok(info) => Ok(info),
        Err(readmodel::Error::UnknownVersion(_)) => {
            readmodel::register(&mut client, projection, State::Building, partitions).await
        }
        Err(e) => Err(e),
    };
    let checked = match info {
        Ok(info) => {
            readmodel::ensure_log_source(&client, projection.name(), &config.log.to_string()).await.map(|()| info)
        }
        Err(e) => Err(e),
    };
    client.execute("SELECT pg_advisory_unlock(hashtext('reproject:register'))", &[]).await?;
    let info = checked?;
    if info.partitions != partitions {
        return Err(Error::Projector(projector::Error::Config(format!(
            "version {} was built from a log of {} partitions; {} has {partitions}",
            projection.name(),
            info.partitions,
            config.log
        ))));
    }
    let mut report = KafkaReplayReport { version: projection.name().to_owned(), partitions, ..Default::default() };
    if !readmodel::has_primary_key(&client, projection).await? {
        let started = Instant::now();
        bulk_phase(&client, config, &mut report, stop.clone()).await?;
        report.bulk_seconds = started.elapsed().as_secs_f64();
        if *stop.borrow() {
            return Ok(report);
        }
        if !projector::take_over(&client, projection).await? {
            info!(
                version = projection.name(),
                "bulk share done; another replay process passes the barrier and catches up"
            );
            report.finished_elsewhere = true;
            report.bulk_events_per_s = report.bulk_events as f64 / report.bulk_seconds.max(1e-9);
            report.bulk_mb_per_s = report.bulk_bytes as f64 / 1e6 / report.bulk_seconds.max(1e-9);
            return Ok(report);
        }
        let barrier = Instant::now();
        readmodel::add_primary_key(&client, projection).await?;
        report.barrier_seconds = barrier.elapsed().as_secs_f64();
    } else {
        let key = format!("reproject:{}", projection.name());
        client.execute("SELECT pg_advisory_unlock_shared(hashtext($1))", &[&key]).await?;
        projector::lock_version(&client, projection).await?;
    }
    let total = (report.bulk_seconds + report.barrier_seconds).max(1e-9);
    report.bulk_events_per_s = report.bulk_events as f64 / total;
    report.bulk_mb_per_s = report.bulk_bytes as f64 / 1e6 / total;
    info!(
        version = projection.name(),
        topic = %config.log,
        events = report.bulk_events,
        events_per_s = report.bulk_events_per_s as u64,
        "bulk phase from the topic done"
    );
    if config.catch_up {
        let live = LiveConfig {
            batch: config.batch,
            stop_at_head: config.stop_at_head,
            quarantine: config.quarantine,
            progress: config.progress,
            poll: Duration::from_millis(20),
            ..LiveConfig::new(&config.database_url, projection.clone())
        };
        let source = KafkaSource::open(&config.log)?;
        report.catch_up = Some(projector::run_tail_on(&mut client, &live, stop, None, source).await?);
    }
    Ok(report)
}

struct Totals {
    events: AtomicU64,
    bytes: AtomicU64,
    rows: AtomicU64,
    held: AtomicU64,
    partitions: AtomicU64,
}

async fn bulk_phase<P: Projection>(
    client: &tokio_postgres::Client,
    config: &KafkaReplayConfig<P>,
    report: &mut KafkaReplayReport,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let positions = readmodel::offsets(client, config.projection.name()).await?;
    let todo: VecDeque<u32> = (0..report.partitions).filter(|p| positions[*p as usize] == Position::START).collect();
    let elsewhere = Arc::new(Mutex::new(Vec::new()));
    info!(version = config.projection.name(), topic = %config.log, partitions = todo.len(), "bulk phase from the topic");
    let queue = Arc::new(Mutex::new(todo));
    let totals = Arc::new(Totals {
        events: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        rows: AtomicU64::new(0),
        held: AtomicU64::new(0),
        partitions: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for _ in 0..config.workers.max(1) {
        let (queue, elsewhere, totals, config, stop) =
            (queue.clone(), elsewhere.clone(), totals.clone(), config.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = eventlog::connect(&config.database_url).await?;
            let key = projector::bulk_lock_key(config.projection.name());
            loop {
                if *stop.borrow() {
                    return Ok::<_, Error>(());
                }
                let Some(p) = claim(&client, &key, &config, &queue, &elsewhere).await? else { return Ok(()) };
                fold_partition(&mut client, &config, p, &totals).await?;
                client.query_one(projector::PARTITION_UNLOCK, &[&key, &(p as i32)]).await?;
            }
        }));
    }
    let mut first_error = None;
    for t in tasks {
        if let Err(e) = t.await.map_err(|e| Error::Broker(e.to_string())).and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    report.bulk_events = totals.events.load(Ordering::Relaxed);
    report.bulk_bytes = totals.bytes.load(Ordering::Relaxed);
    report.bulk_rows = totals.rows.load(Ordering::Relaxed);
    report.held_after_bulk = totals.held.load(Ordering::Relaxed);
    report.partitions_replayed = totals.partitions.load(Ordering::Relaxed) as u32;
    Ok(())
}

/// The next partition this worker folds: taken from the queue, locked with a session lock of
/// this worker's connection (the same claim as the event store's replay), and not yet written
/// (another process may have written it). One another process holds is set aside and tried
/// again every 200 ms until it is written or free (its holder died, and its session's lock with
/// it). `None` when every partition is written.
async fn claim<P: Projection>(
    client: &tokio_postgres::Client,
    key: &str,
    config: &KafkaReplayConfig<P>,
    queue: &Mutex<VecDeque<u32>>,
    elsewhere: &Mutex<Vec<u32>>,
) -> Result<Option<u32>> {
    loop {
        let next = queue.lock().expect("queue").pop_front();
        let Some(p) = next else {
            let waiting = std::mem::take(&mut *elsewhere.lock().expect("elsewhere"));
            if waiting.is_empty() {
                return Ok(None);
            }
            let positions = readmodel::offsets(client, config.projection.name()).await?;
            let open: Vec<u32> = waiting.into_iter().filter(|p| positions[*p as usize] == Position::START).collect();
            if open.is_empty() {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            queue.lock().expect("queue").extend(open);
            continue;
        };
        let taken: bool = client.query_one(projector::PARTITION_LOCK, &[&key, &(p as i32)]).await?.get(0);
        if !taken {
            elsewhere.lock().expect("elsewhere").push(p);
            continue;
        }
        let positions = readmodel::offsets(client, config.projection.name()).await?;
        if positions[p as usize] != Position::START {
            client.query_one(projector::PARTITION_UNLOCK, &[&key, &(p as i32)]).await?;
            continue;
        }
        return Ok(Some(p));
    }
}

async fn fold_partition<P: Projection>(
    client: &mut tokio_postgres::Client,
    config: &KafkaReplayConfig<P>,
    p: u32,
    totals: &Totals,
) -> Result<()> {
    let started = Instant::now();
    let id = eventlog::id_kind(client).await?;
    let (low, high) = config.log.watermark(p)?;
    let mut fold = PartitionFold::new(config.projection.clone(), p, config.quarantine);
    let mut fold_error = None;
    if high > low {
        scan_partition(&config.log, p, high, |offset, key, value| {
            totals.events.fetch_add(1, Ordering::Relaxed);
            totals
                .bytes
                .fetch_add((key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64, Ordering::Relaxed);
            let record = decode(p, offset, id, key, value)?;
            if let Err(e) = fold.offer(record.event) {
                fold_error = Some(e);
                return Ok(false);
            }
            Ok(true)
        })
        .await?;
    }
    if let Some(e) = fold_error {
        return Err(e.into());
    }
    let batch = fold.finish(Position::boundary(high));
    totals.rows.fetch_add(batch.rows.len() as u64, Ordering::Relaxed);
    totals.held.fetch_add(batch.held.len() as u64, Ordering::Relaxed);
    readmodel::write_source_partition(client, &batch).await?;
    totals.partitions.fetch_add(1, Ordering::Relaxed);
    info!(
        partition = p,
        high,
        rows = batch.rows.len(),
        seconds = started.elapsed().as_secs_f64(),
        "topic partition replayed"
    );
    Ok(())
}
