//! The event store's history written into the topic: the relay from PostgreSQL to Kafka.
//!
//! Writers keep appending to the event store, where `(aggregate_id, version)` is checked (Kafka
//! has no conditional append); the mirror reads the log gap-safely (the same [`PgLog`] as the
//! tail path, below the oldest running transaction), produces each event keyed by its
//! aggregate (idempotent producer, `acks=all`, murmur2 partitioner), waits for every delivery,
//! then records its positions in `log.kafka_mirror`. A crash between the two re-sends the last
//! batch: the projector's version guard turns the copies into no-ops. One aggregate's events
//! come from one log partition in commit order and go to one topic partition in that order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventlog::{Position, RawEvent};
use fold::{Guarded, Offer, Projection};
use projector::{PgLog, Source};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::Client;
use tracing::info;

use crate::record::encode;
use crate::{Error, KafkaLog, Result};

/// Configuration of a mirror run.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub database_url: String,
    pub log: KafkaLog,
    /// Events per produced batch (each waits for its deliveries before the positions move).
    pub batch: usize,
    /// Keep following the log after catching up, until stopped.
    pub follow: bool,
    /// Wait between polls when there is nothing new.
    pub poll: Duration,
}

impl MirrorConfig {
    /// A one-shot mirror of everything committed, 20k events per batch.
    pub fn new(database_url: &str, log: KafkaLog) -> MirrorConfig {
        MirrorConfig {
            database_url: database_url.to_owned(),
            log,
            batch: 20_000,
            follow: false,
            poll: Duration::from_millis(50),
        }
    }
}

/// What a mirror run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MirrorReport {
    pub events: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_s: f64,
}

/// A fold that gives each mirrored event the aggregate's row after it: the records of a
/// state-carrying topic (experiment 7). In memory, from the start of the log: such a mirror is
/// not resumable (its positions are not stored).
pub struct StateCarrying<P: Projection> {
    projection: P,
    streams: HashMap<fold::AggregateId, Guarded<P>>,
}

impl<P: Projection> StateCarrying<P> {
    pub fn new(projection: P) -> StateCarrying<P> {
        StateCarrying { projection, streams: HashMap::new() }
    }

    /// The row after `event`, or `None` while the guard holds it (its record is written when a
    /// later event releases it, carrying the state after both).
    fn offer(&mut self, event: &RawEvent) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let decoded = event
            .decode(&self.projection)
            .map_err(|e| Error::Broker(format!("event {} does not decode: {e}", event.global_seq)))?;
        let stream = self.streams.entry(event.aggregate_id.clone()).or_default();
        match stream.offer(&self.projection, decoded) {
            Ok(Offer::Applied(_)) => Ok(stream.row.as_ref().map(|row| fold::row_json(&self.projection, row))),
            Ok(Offer::Held | Offer::Duplicate) => Ok(None),
            Err(e) => Err(Error::Broker(format!("event {} does not apply: {e}", event.global_seq))),
        }
    }
}

/// The idempotent, murmur2-partitioned producer the mirror uses.
pub(crate) fn producer(log: &KafkaLog) -> Result<FutureProducer> {
    Ok(log
        .config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create()?)
}

/// Produces `records` and waits for every delivery; the first failure is the error.
pub(crate) async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    records: &[crate::record::Record],
) -> Result<()> {
    let mut deliveries = Vec::with_capacity(records.len());
    for r in records {
        let record = FutureRecord::to(topic).key(&r.key).payload(&r.value);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => return Err(e.into()),
        }
    }
    for d in futures::future::join_all(deliveries).await {
        match d {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(Error::Broker("the producer was dropped before a delivery report".into())),
        }
    }
    Ok(())
}

const MIRROR_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS log.kafka_mirror (\
    topic TEXT NOT NULL, partition INT NOT NULL, position_tx BIGINT NOT NULL, position_seq BIGINT NOT NULL, \
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (topic, partition))";

async fn load_positions(client: &Client, topic: &str, partitions: u32) -> Result<Vec<Position>> {
    client.batch_execute(MIRROR_SCHEMA).await?;
    let mut positions = vec![Position::START; partitions as usize];
    for row in client
        .query("SELECT partition, position_tx, position_seq FROM log.kafka_mirror WHERE topic = $1", &[&topic])
        .await?
    {
        let p: i32 = row.get(0);
        if let Some(slot) = positions.get_mut(p as usize) {
            *slot = Position { tx: row.get(1), seq: row.get(2) };
        }
    }
    Ok(positions)
}

async fn store_positions(client: &Client, topic: &str, positions: &[Position]) -> Result<()> {
    let partitions: Vec<i32> = (0..positions.len() as i32).collect();
    let txs: Vec<i64> = positions.iter().map(|p| p.tx).collect();
    let seqs: Vec<i64> = positions.iter().map(|p| p.seq).collect();
    client
        .execute(
            "INSERT INTO log.kafka_mirror (topic, partition, position_tx, position_seq) \
             SELECT $1, * FROM unnest($2::INT[], $3::BIGINT[], $4::BIGINT[]) \
             ON CONFLICT (topic, partition) DO UPDATE SET position_tx = EXCLUDED.position_tx, \
             position_seq = EXCLUDED.position_seq, updated_at = now()",
            &[&topic, &partitions, &txs, &seqs],
        )
        .await?;
    Ok(())
}

/// Mirrors the event store into `config.log`'s topic (which must exist), each event as it is,
/// from the positions stored by an earlier run, until caught up (or, with `follow`, until
/// `stop`).
pub async fn mirror(config: &MirrorConfig, stop: tokio::sync::watch::Receiver<bool>) -> Result<MirrorReport> {
    run(config, None, stop).await
}

/// Mirrors the event store into a state-carrying topic: each record also holds the
/// aggregate's row after its event, folded by `state` from the start of the log (not
/// resumable: its positions are not stored).
pub async fn mirror_states<P: Projection>(
    config: &MirrorConfig,
    mut state: StateCarrying<P>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<MirrorReport> {
    run(config, Some(&mut state), stop).await
}

/// What gives a mirrored event the row after it (a state-carrying topic).
trait RowAfter: Send {
    fn offer(&mut self, event: &RawEvent) -> Result<Option<serde_json::Map<String, serde_json::Value>>>;
}

impl<P: Projection> RowAfter for StateCarrying<P> {
    fn offer(&mut self, event: &RawEvent) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        StateCarrying::offer(self, event)
    }
}

async fn run(
    config: &MirrorConfig,
    mut state: Option<&mut dyn RowAfter>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<MirrorReport> {
    let client = eventlog::connect(&config.database_url).await?;
    config.log.partitions()?;
    let mut source = PgLog::open(&client, None).await?;
    let persist = state.is_none();
    let mut positions = if persist {
        load_positions(&client, &config.log.topic, source.partitions()).await?
    } else {
        vec![Position::START; source.partitions() as usize]
    };
    let producer = producer(&config.log)?;
    let started = Instant::now();
    let mut report = MirrorReport::default();
    loop {
        if *stop.borrow() {
            break;
        }
        let read = source.read(&client, &positions, config.batch.max(1)).await?;
        let mut records = Vec::with_capacity(read.events.len());
        for (_, event) in &read.events {
            match &mut state {
                None => records.push(encode(event, None)),
                Some(fold) => {
                    if let Some(row) = fold.offer(event)? {
                        records.push(encode(event, Some(&row)));
                    }
                }
            }
        }
        produce_all(&producer, &config.log.topic, &records).await?;
        report.events += read.events.len() as u64;
        report.bytes += records.iter().map(|r| (r.key.len() + r.value.len()) as u64).sum::<u64>();
        if persist && read.positions != positions {
            store_positions(&client, &config.log.topic, &read.positions).await?;
        }
        positions = read.positions;
        if read.drained && read.events.is_empty() {
            if !config.follow {
                break;
            }
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(config.poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_s = report.events as f64 / report.seconds.max(1e-9);
    info!(topic = %config.log.topic, events = report.events, events_per_s = report.events_per_s as u64, "mirrored");
    Ok(report)
}
