//! Reading the topic: the tail path's [`KafkaSource`], one partition's scan for the bulk
//! replay, and the raw consume the replay is measured against.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlog::Position;
use projector::{Read, Source};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_postgres::Client;

use crate::address::watermarks;
use crate::record::{decode, Decoded};
use crate::{Error, KafkaLog, Result};

/// How long a read waits for a record it knows is there (below the high watermark) before it
/// returns what it has.
const STALL: Duration = Duration::from_secs(5);

fn stream_consumer(log: &KafkaLog) -> Result<StreamConsumer> {
    Ok(log.assign_only().create()?)
}

/// The topic as the tail path's [`Source`]: every partition assigned at the version's stored
/// position (the next offset to read), records read to the high watermarks measured at each
/// step. Positions are `(next offset, 0)`.
pub struct KafkaSource {
    log: KafkaLog,
    consumer: StreamConsumer,
    /// A consumer for watermark requests (never assigned).
    meta: rdkafka::consumer::BaseConsumer,
    partitions: u32,
    next: Vec<i64>,
    /// The high watermarks last asked for.
    high: Vec<i64>,
    /// The type of the keys' stream ids (the mirrored event store's), read on the first read.
    id: Option<fold::IdKind>,
}

/// Whether any partition's next offset is below its high watermark.
fn behind(next: &[i64], high: &[i64]) -> bool {
    next.iter().zip(high).any(|(n, h)| n < h)
}

impl KafkaSource {
    /// A source over `log` (the topic must exist).
    pub fn open(log: &KafkaLog) -> Result<KafkaSource> {
        let partitions = log.partitions()?;
        Ok(KafkaSource {
            log: log.clone(),
            consumer: stream_consumer(log)?,
            meta: log.consumer()?,
            partitions,
            next: vec![0; partitions as usize],
            high: vec![0; partitions as usize],
            id: None,
        })
    }

    fn high_watermarks(&self) -> Result<Vec<i64>> {
        Ok(watermarks(&self.meta, &self.log.topic, self.partitions)?.into_iter().map(|(_, high)| high).collect())
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn start(&mut self, positions: &[Position]) -> projector::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, pos) in positions.iter().enumerate() {
            tpl.add_partition_offset(&self.log.topic, p as i32, Offset::Offset(pos.tx)).map_err(Error::from)?;
            self.next[p] = pos.tx;
        }
        self.consumer.assign(&tpl).map_err(Error::from)?;
        self.high = self.high_watermarks()?;
        Ok(())
    }

    async fn read(&mut self, client: &Client, _positions: &[Position], limit: usize) -> projector::Result<Read> {
        let id = match self.id {
            Some(id) => id,
            None => *self.id.insert(eventlog::id_kind(client).await?),
        };
        // The high watermarks cost a request per partition: asked again (below) only once the
        // reader has reached the ones it last saw, not on every batch of a long catch-up.
        let mut events = Vec::new();
        while events.len() < limit && behind(&self.next, &self.high) {
            let message = match tokio::time::timeout(STALL, self.consumer.recv()).await {
                Ok(m) => m.map_err(Error::from)?,
                Err(_) => {
                    tracing::warn!(topic = %self.log.topic, "no record for {STALL:?} below the high watermark");
                    break;
                }
            };
            let p = message.partition() as u32;
            let offset = message.offset();
            let Decoded { event, .. } = decode(p, offset, id, message.key(), message.payload())?;
            self.next[p as usize] = offset + 1;
            events.push((p, event));
        }
        if !behind(&self.next, &self.high) {
            self.high = self.high_watermarks()?;
        }
        let drained = !behind(&self.next, &self.high);
        let positions = self.next.iter().map(|n| Position::boundary(*n)).collect();
        Ok(Read { events, positions, drained, boundary: 0 })
    }

    async fn head(&mut self, _client: &Client) -> projector::Result<Vec<Position>> {
        Ok(self.high_watermarks()?.into_iter().map(Position::boundary).collect())
    }

    async fn lag(&mut self, _client: &Client, positions: &[Position]) -> projector::Result<u64> {
        let high = self.high_watermarks()?;
        Ok(positions.iter().zip(high).map(|(p, h)| (h - p.tx).max(0) as u64).sum())
    }

    fn watches_horizon(&self) -> bool {
        false
    }

    fn log_name(&self) -> String {
        self.log.to_string()
    }
}

/// Reads partition `p` of `log` from its start to `high` (exclusive), handing each record's
/// partition, offset, key and value to `each`; stops early when `each` returns false.
pub(crate) async fn scan_partition(
    log: &KafkaLog,
    p: u32,
    high: i64,
    mut each: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>) -> Result<bool>,
) -> Result<()> {
    if high <= 0 {
        return Ok(());
    }
    let consumer = stream_consumer(log)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&log.topic, p as i32, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    loop {
        let message = match tokio::time::timeout(STALL, consumer.recv()).await {
            Ok(m) => m?,
            Err(_) => {
                return Err(Error::Broker(format!(
                    "partition {p} of {}: no record for {STALL:?} below its high watermark {high}",
                    log.topic
                )))
            }
        };
        let offset = message.offset();
        if offset >= high {
            return Ok(());
        }
        if !each(offset, message.key(), message.payload())? || offset + 1 >= high {
            return Ok(());
        }
    }
}

/// What a raw consume of the topic read.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ConsumeReport {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_s: f64,
}

/// Reads every partition to its high watermark with `workers` consumers (one partition at a
/// time each, as the replay's workers), touching nothing but the bytes: the baseline of
/// `replay_vs_consume`.
pub async fn consume_all(log: &KafkaLog, workers: usize) -> Result<ConsumeReport> {
    let high: Vec<i64> = log.watermarks()?.into_iter().map(|(_, h)| h).collect();
    let queue = Arc::new(Mutex::new((0..high.len() as u32).collect::<VecDeque<u32>>()));
    let records = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (queue, records, bytes, log, high) =
            (queue.clone(), records.clone(), bytes.clone(), log.clone(), high.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(p) = queue.lock().expect("queue").pop_front() else { return Ok::<_, Error>(()) };
                scan_partition(&log, p, high[p as usize], |_, key, value| {
                    records.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(
                        (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64,
                        Ordering::Relaxed,
                    );
                    Ok(true)
                })
                .await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::Broker(e.to_string()))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let records = records.load(Ordering::Relaxed);
    Ok(ConsumeReport {
        records,
        bytes: bytes.load(Ordering::Relaxed),
        seconds,
        records_per_s: records as f64 / seconds.max(1e-9),
    })
}

/// Every record of partition `p` now in the topic: `(offset, key, value)`, in offset order.
pub async fn read_partition(log: &KafkaLog, p: u32) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>> {
    let (low, high) = log.watermark(p)?;
    let mut records = Vec::new();
    if high > low {
        scan_partition(log, p, high, |offset, key, value| {
            records.push((offset, key.unwrap_or_default().to_vec(), value.unwrap_or_default().to_vec()));
            Ok(true)
        })
        .await?;
    }
    Ok(records)
}
