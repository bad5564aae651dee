//! Catch-up into Redis: the event store read after the positions stored in Redis (the tail
//! path's gap-safe reader, `projector::PgLog`), folded through the version guard on top of the
//! rows read back from Redis, each partition's rows and position then written by one script
//! call with the tail's fencing token.
//!
//! Held events (a version read before its predecessor) are stored with the batch whose position
//! passes them (`rp:{..}:held:<partition>`, in the same script call) and removed in the batch
//! that applies them; a tail that starts loads them first. So a position never passes an
//! event that is neither applied nor stored (invariant 2), and the rows always equal the fold
//! of the log at the positions (what verify checks).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use eventlog::RawEvent;
use fold::{AggregateId, Guarded, Offer, Projection, Row};
use projector::{PgLog, Source};
use tracing::info;

use crate::layout::Layout;
use crate::replay::{ensure_tokens, take_token};
use crate::store::{RedisStore, Written};
use crate::{Error, Result};

/// What to tail, into which Redis.
#[derive(Debug, Clone)]
pub struct RedisTailConfig<P: Projection> {
    pub database_url: String,
    pub redis_url: String,
    pub projection: P,
    /// Events per read of the log.
    pub batch: usize,
    /// Read only transactions below this xid.
    pub until: Option<i64>,
}

/// What a catch-up did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RedisTailReport {
    pub version: String,
    pub token: i64,
    pub reads: u64,
    pub events_read: u64,
    pub events_applied: u64,
    pub rows_written: u64,
    pub rows_skipped: u64,
    /// Events still held when the tail stopped (their predecessor not yet in the log).
    pub held_at_end: u64,
    pub seconds: f64,
}

/// The advisory lock key of a version's Redis tail: one tail per version.
fn tail_key(version: &str) -> String {
    format!("reproject:redis-tail:{version}")
}

/// One aggregate's stream kept between reads because it holds events: the guard with its
/// pending events, and the raw events held (to store them).
struct Holding<P: Projection> {
    stream: Guarded<P>,
    held: BTreeMap<i32, RawEvent>,
}

/// Tails the event store into `config.projection`'s Redis version until everything committed
/// when it started (and below `until`) is applied, then stops.
pub async fn catch_up<P: Projection>(config: &RedisTailConfig<P>) -> Result<RedisTailReport> {
    let started = Instant::now();
    let projection = &config.projection;
    let mut client = eventlog::connect(&config.database_url).await?;
    ensure_tokens(&mut client).await?;
    let locked: bool =
        client.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&tail_key(projection.name())]).await?.get(0);
    if !locked {
        return Err(Error::Config(format!("another tail of {} into redis is running", projection.name())));
    }
    let id = eventlog::id_kind(&client).await?;
    let mut store = RedisStore::open(&config.redis_url, Layout::of(projection)?, id).await?;
    let mut log = PgLog::open(&client, config.until).await?;
    let partitions = log.partitions();
    let token = take_token(&client).await?;
    for p in 0..partitions {
        store.raise_fence(p, token).await?;
    }
    let head = log.head(&client).await?;
    let mut cursor = store.positions(partitions).await?;
    log.start(&cursor).await?;
    let mut holding: HashMap<AggregateId, Holding<P>> = HashMap::new();
    for p in 0..partitions {
        for raw in store.held(p).await? {
            let h = match holding.remove(&raw.aggregate_id) {
                Some(h) => h,
                None => Holding {
                    stream: Guarded::new(store.row(projection, &raw.aggregate_id).await?),
                    held: BTreeMap::new(),
                },
            };
            let mut h = h;
            let event = decode(projection, &raw)?;
            if let Ok(Offer::Held) = h.stream.offer(projection, event) {
                h.held.insert(raw.version, raw.clone());
            }
            holding.insert(raw.aggregate_id.clone(), h);
        }
    }
    let mut report = RedisTailReport { version: projection.name().to_owned(), token, ..Default::default() };
    loop {
        let read = log.read(&client, &cursor, config.batch.max(1)).await?;
        report.reads += 1;
        report.events_read += read.events.len() as u64;
        let mut by_partition: BTreeMap<u32, Vec<RawEvent>> = BTreeMap::new();
        for (p, e) in read.events {
            by_partition.entry(p).or_default().push(e);
        }
        for p in 0..partitions {
            let events = by_partition.remove(&p).unwrap_or_default();
            let moved = read.positions[p as usize] != cursor[p as usize];
            if events.is_empty() && !moved {
                continue;
            }
            let batch = fold_batch(&mut store, projection, &mut holding, events, &mut report).await?;
            let position = Some(read.positions[p as usize]);
            match store
                .write_with_held(projection, p, token, position, &batch.rows, &batch.held, &batch.released)
                .await?
            {
                Written::Applied { written, skipped } => {
                    report.rows_written += written;
                    report.rows_skipped += skipped;
                }
                Written::Fenced { stored } => return Err(Error::Fenced { partition: p, token, stored }),
            }
        }
        cursor = read.positions;
        if read.drained && cursor.iter().zip(&head).all(|(c, h)| c >= h) {
            break;
        }
    }
    report.held_at_end = holding.values().map(|h| h.held.len() as u64).sum();
    report.seconds = started.elapsed().as_secs_f64();
    info!(version = projection.name(), applied = report.events_applied, "redis catch-up done");
    Ok(report)
}

fn decode<P: Projection>(projection: &P, raw: &RawEvent) -> Result<fold::Decoded<P::Event>> {
    raw.decode(projection)
        .map_err(|e| Error::BadData(format!("aggregate {} version {}: {e}", raw.aggregate_id, raw.version)))
}

/// What one partition's read changes: rows, events newly held, held events now applied.
struct Batch<P: Projection> {
    rows: Vec<Row<P::State>>,
    held: Vec<RawEvent>,
    released: Vec<(AggregateId, i32)>,
}

/// Folds one partition's events of a read on top of the rows stored in Redis (or the streams
/// kept because they hold events).
async fn fold_batch<P: Projection>(
    store: &mut RedisStore,
    projection: &P,
    holding: &mut HashMap<AggregateId, Holding<P>>,
    events: Vec<RawEvent>,
    report: &mut RedisTailReport,
) -> Result<Batch<P>> {
    let mut streams: HashMap<AggregateId, Holding<P>> = HashMap::new();
    let mut before: Vec<(AggregateId, i32)> = Vec::new();
    for e in &events {
        if streams.contains_key(&e.aggregate_id) {
            continue;
        }
        let h = match holding.remove(&e.aggregate_id) {
            Some(h) => {
                before.extend(h.held.keys().map(|v| (e.aggregate_id.clone(), *v)));
                h
            }
            None => {
                Holding { stream: Guarded::new(store.row(projection, &e.aggregate_id).await?), held: BTreeMap::new() }
            }
        };
        streams.insert(e.aggregate_id.clone(), h);
    }
    let mut changed: Vec<AggregateId> = Vec::new();
    for raw in events {
        let h = streams.get_mut(&raw.aggregate_id).expect("loaded above");
        match h.stream.offer(projection, decode(projection, &raw)?) {
            Ok(Offer::Applied(n)) => {
                report.events_applied += n as u64;
                changed.push(raw.aggregate_id.clone());
            }
            Ok(Offer::Held) => {
                h.held.insert(raw.version, raw);
            }
            Ok(Offer::Duplicate) => {}
            Err(e) => return Err(Error::BadData(e.to_string())),
        }
        let applied = h.stream.version();
        h.held.retain(|v, _| *v > applied);
    }
    changed.sort();
    changed.dedup();
    let rows = changed.iter().filter_map(|id| streams.get(id).and_then(|h| h.stream.row.clone())).collect();
    let mut held = Vec::new();
    let mut released = Vec::new();
    for (id, version) in before {
        if !streams.get(&id).is_some_and(|h| h.held.contains_key(&version)) {
            released.push((id, version));
        }
    }
    for (id, h) in streams {
        if !h.held.is_empty() {
            held.extend(h.held.values().cloned());
            holding.insert(id, h);
        }
    }
    Ok(Batch { rows, held, released })
}
