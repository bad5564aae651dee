//! The bulk replay into Redis: the event store's partitions folded exactly as the PostgreSQL
//! replay folds them (`projector::partition_fold::PartitionFold`, with its held limit, gap
//! lookups and spill: `projector::spill::Spiller`), each partition's rows then written with its
//! position by one script call ([`crate::RedisStore::write_batch`]) instead of a COPY.
//!
//! This reuses the fold, not the PostgreSQL replay's driver: claims, boundary and the write
//! are this module's (a `Store` seam in `projector::replay` is the next step; see
//! ARCHITECTURE.md). Claims are PostgreSQL session advisory locks per (version, partition), as
//! in the PostgreSQL replay, and each claim takes a fencing token from a sequence.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlog::Position;
use fold::Projection;
use futures::{pin_mut, StreamExt};
use projector::partition_fold::PartitionFold;
use projector::spill::Spiller;
use projector::{bulk_lock_key, CpuPriority, PARTITION_LOCK, PARTITION_UNLOCK};
use tokio_postgres::Client;
use tracing::info;

use crate::layout::Layout;
use crate::store::{RedisStore, Written};
use crate::{Error, Result};

/// What to replay, from where, into which Redis.
#[derive(Debug, Clone)]
pub struct RedisReplayConfig<P: Projection> {
    pub database_url: String,
    pub redis_url: String,
    pub projection: P,
    /// Partitions folded at once, each with its own PostgreSQL connection.
    pub workers: usize,
    /// Fold only transactions below this xid.
    pub until: Option<i64>,
    /// The most events one partition's fold holds at once (`None`: unbounded); see
    /// `projector::ReplayConfig::held_limit`.
    pub held_limit: Option<usize>,
    /// Start from `projection`'s snapshot at this cut ([`crate::snapshot`]) instead of from
    /// offset 0: each partition's fold is seeded with it and reads the log after the cut.
    pub from_snapshot: Option<i64>,
}

impl<P: Projection> RedisReplayConfig<P> {
    /// Two workers, the PostgreSQL replay's default held limit.
    pub fn new(database_url: &str, redis_url: &str, projection: P) -> RedisReplayConfig<P> {
        RedisReplayConfig {
            database_url: database_url.to_owned(),
            redis_url: redis_url.to_owned(),
            projection,
            workers: 2,
            until: None,
            held_limit: Some(projector::spill::DEFAULT_HELD_LIMIT),
            from_snapshot: None,
        }
    }
}

/// What a replay into Redis did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RedisReplayReport {
    pub version: String,
    /// The Redis keys' hash tag.
    pub hash_tag: String,
    pub boundary: i64,
    /// The snapshot's cut the replay started from (`None`: offset 0).
    pub from_snapshot: Option<i64>,
    pub partitions: u32,
    pub partitions_replayed: u32,
    pub events: u64,
    pub rows_written: u64,
    /// Rows the script's version guard skipped (a stored row as new: a partition rewritten).
    pub rows_skipped: u64,
    /// Events still held at the boundary (their predecessor is above it), stored with their
    /// partition's rows (`rp:{..}:held:<partition>`) for the catch-up.
    pub held_at_end: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    /// The catch-up after the bulk phase, when one ran.
    pub catch_up: Option<crate::tail::RedisTailReport>,
}

struct Shared<P: Projection> {
    config: RedisReplayConfig<P>,
    layout: Layout,
    id: fold::IdKind,
    boundary: i64,
    queue: Mutex<VecDeque<u32>>,
    elsewhere: Mutex<Vec<u32>>,
    partitions: AtomicU64,
    events: AtomicU64,
    written: AtomicU64,
    skipped: AtomicU64,
    held: AtomicU64,
}

/// The PostgreSQL side of a store claim: the advisory lock key of `version`'s partitions in a
/// Redis build (apart from the PostgreSQL build's of the same version).
pub fn claim_key(version: &str) -> String {
    bulk_lock_key(&format!("redis:{version}"))
}

/// Makes sure the token sequence exists (and the read schema it lives in).
pub async fn ensure_tokens(client: &mut Client) -> Result<()> {
    readmodel::ensure_schema(client).await?;
    client.batch_execute(include_str!("sql/fence.sql")).await?;
    Ok(())
}

/// A new fencing token: greater than every token taken before it.
pub async fn take_token(client: &Client) -> Result<i64> {
    Ok(client.query_one("SELECT nextval('read.store_fence_tokens')", &[]).await?.get(0))
}

/// Rebuilds `config.projection` into Redis from the start of the log up to a boundary fixed at
/// the first run (kept in the version's meta hash: a restart folds below the same one and
/// skips the partitions already there).
pub async fn replay<P: Projection>(config: &RedisReplayConfig<P>) -> Result<RedisReplayReport> {
    let started = Instant::now();
    let projection = &config.projection;
    let layout = Layout::of(projection)?;
    let mut client = eventlog::connect(&config.database_url).await?;
    ensure_tokens(&mut client).await?;
    let partitions = eventlog::partition_count(&client).await?;
    let id = eventlog::id_kind(&client).await?;
    let mut store = RedisStore::open(&config.redis_url, layout.clone(), id).await?;
    let mut w = eventlog::boundary(&client).await?;
    if let Some(until) = config.until {
        w = w.min(until);
    }
    let boundary: i64 = store
        .meta_set_once("bulk_boundary", &w.to_string())
        .await?
        .parse()
        .map_err(|e| Error::BadData(format!("bulk_boundary: {e}")))?;
    if let Some(cut) = config.from_snapshot {
        if cut > boundary {
            return Err(Error::Config(format!("snapshot cut {cut} is above the replay's boundary {boundary}")));
        }
    }
    store.meta_set_once("partitions", &partitions.to_string()).await?;
    store.meta_set_once("id_type", id.as_str()).await?;
    let positions = store.positions(partitions).await?;
    let todo: VecDeque<u32> =
        (0..partitions).filter(|p| positions[*p as usize] < Position::boundary(boundary)).collect();
    info!(version = projection.name(), boundary, partitions = todo.len(), "replaying into redis");
    let shared = Arc::new(Shared {
        config: config.clone(),
        layout: layout.clone(),
        id,
        boundary,
        queue: Mutex::new(todo),
        elsewhere: Mutex::new(Vec::new()),
        partitions: AtomicU64::new(0),
        events: AtomicU64::new(0),
        written: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        held: AtomicU64::new(0),
    });
    let workers = config.workers.clamp(1, partitions.max(1) as usize);
    let handles: Vec<_> = (0..workers).map(|_| tokio::spawn(worker(shared.clone()))).collect();
    let mut first_error = None;
    for h in handles {
        if let Err(e) = h.await.map_err(|e| Error::Worker(e.to_string())).and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    let events = shared.events.load(Ordering::Relaxed);
    Ok(RedisReplayReport {
        version: projection.name().to_owned(),
        hash_tag: layout.hash_tag().to_owned(),
        boundary,
        from_snapshot: config.from_snapshot,
        partitions,
        partitions_replayed: shared.partitions.load(Ordering::Relaxed) as u32,
        events,
        rows_written: shared.written.load(Ordering::Relaxed),
        rows_skipped: shared.skipped.load(Ordering::Relaxed),
        held_at_end: shared.held.load(Ordering::Relaxed),
        seconds,
        events_per_s: events as f64 / seconds.max(1e-9),
        catch_up: None,
    })
}

/// A partition claimed: its lock held by this worker's session, and the token taken with it.
pub struct Claim {
    pub partition: u32,
    pub token: i64,
}

/// Claims `partition` of `version`'s Redis build for this session, if no other session holds
/// it: the advisory lock, then a fencing token, raised in Redis at once so that any earlier
/// holder (a zombie) is refused from now on. `None` when another session holds it.
pub async fn claim(client: &Client, store: &mut RedisStore, version: &str, partition: u32) -> Result<Option<Claim>> {
    let taken: bool = client.query_one(PARTITION_LOCK, &[&claim_key(version), &(partition as i32)]).await?.get(0);
    if !taken {
        return Ok(None);
    }
    let token = take_token(client).await?;
    store.raise_fence(partition, token).await?;
    Ok(Some(Claim { partition, token }))
}

/// Releases a claim's lock.
pub async fn release(client: &Client, version: &str, partition: u32) -> Result<()> {
    client.query_one(PARTITION_UNLOCK, &[&claim_key(version), &(partition as i32)]).await?;
    Ok(())
}

async fn next_claim<P: Projection>(
    client: &Client,
    store: &mut RedisStore,
    shared: &Shared<P>,
) -> Result<Option<Claim>> {
    let version = shared.config.projection.name();
    let boundary = Position::boundary(shared.boundary);
    let partitions = eventlog::partition_count(client).await?;
    loop {
        let next = shared.queue.lock().expect("queue lock").pop_front();
        let Some(p) = next else {
            let waiting: Vec<u32> = std::mem::take(&mut *shared.elsewhere.lock().expect("elsewhere lock"));
            if waiting.is_empty() {
                return Ok(None);
            }
            let positions = store.positions(partitions).await?;
            let open: Vec<u32> = waiting.into_iter().filter(|p| positions[*p as usize] < boundary).collect();
            if open.is_empty() {
                return Ok(None);
            }
            // Another process holds them: try again, as the PostgreSQL replay does.
            tokio::time::sleep(Duration::from_millis(200)).await;
            shared.queue.lock().expect("queue lock").extend(open);
            continue;
        };
        let Some(claim) = claim(client, store, version, p).await? else {
            shared.elsewhere.lock().expect("elsewhere lock").push(p);
            continue;
        };
        if store.positions(partitions).await?[p as usize] >= boundary {
            release(client, version, p).await?;
            continue;
        }
        return Ok(Some(claim));
    }
}

async fn worker<P: Projection>(shared: Arc<Shared<P>>) -> Result<()> {
    let client = eventlog::connect(&shared.config.database_url).await?;
    let mut store = RedisStore::open(&shared.config.redis_url, shared.layout.clone(), shared.id).await?;
    let projection = &shared.config.projection;
    while let Some(claim) = next_claim(&client, &mut store, &shared).await? {
        let p = claim.partition;
        let started = Instant::now();
        let config = &shared.config;
        let from = config.from_snapshot.map(|cut| (cut, shared.id));
        let (events, batch) =
            fold_partition(&client, &config.database_url, projection, p, shared.boundary, config.held_limit, from)
                .await?;
        let written = store
            .write_with_held(projection, p, claim.token, Some(batch.position), &batch.rows, &batch.held, &[])
            .await?;
        let (written, skipped) = match written {
            Written::Applied { written, skipped } => (written, skipped),
            Written::Fenced { stored } => return Err(Error::Fenced { partition: p, token: claim.token, stored }),
        };
        release(&client, projection.name(), p).await?;
        shared.partitions.fetch_add(1, Ordering::Relaxed);
        shared.events.fetch_add(events, Ordering::Relaxed);
        shared.written.fetch_add(written, Ordering::Relaxed);
        shared.skipped.fetch_add(skipped, Ordering::Relaxed);
        shared.held.fetch_add(batch.held.len() as u64, Ordering::Relaxed);
        info!(
            partition = p,
            events,
            rows = batch.rows.len(),
            token = claim.token,
            seconds = started.elapsed().as_secs_f64(),
            "partition replayed into redis"
        );
    }
    Ok(())
}

/// Folds partition `p` of the event store below `boundary` exactly as the PostgreSQL replay
/// does (held limit, gap lookups, spill); returns the events read and the partition's batch
/// (rows, marks, held events, position `(boundary, 0)`). With `from = Some((cut, id))`, the
/// fold starts from the partition's snapshot at `cut` and reads the log after it.
pub async fn fold_partition<P: Projection>(
    client: &Client,
    database_url: &str,
    projection: &P,
    p: u32,
    boundary: i64,
    held_limit: Option<usize>,
    from: Option<(i64, fold::IdKind)>,
) -> Result<(u64, readmodel::PartitionBatch<P>)> {
    let mut fold = PartitionFold::new(projection.clone(), p, false).with_held_limit(held_limit);
    let mut spill = Spiller::new(database_url, CpuPriority::NORMAL).with_gap_lookups(p, boundary);
    let mut after = Position::START;
    if let Some((cut, id)) = from {
        let snapshot = crate::snapshot::load_partition(client, projection, cut, p, id).await?;
        fold.resume(snapshot.rows, snapshot.marks);
        for raw in snapshot.held {
            fold.offer(raw)?;
        }
        after = crate::snapshot::start_after(cut);
    }
    let mut read = 0u64;
    let events = eventlog::copy_partition(client, p, after, boundary).await?;
    pin_mut!(events);
    while let Some(raw) = events.next().await {
        read += 1;
        fold.offer(raw?)?;
        spill.keep_up(&mut fold).await?;
    }
    spill.drain(&mut fold).await?;
    Ok((read, fold.finish(Position::boundary(boundary))))
}
