//! The replay: rebuild a version from the start of the log, partition by partition, at the
//! speed of reading the log once; then hand over to the tail path to catch up.
//!
//! Bulk phase: fix a boundary W (an xid: every transaction below it has finished). Each log
//! partition is one unit of work: stream it with binary COPY up to W, fold it in a hash map,
//! write the folded rows with binary COPY into the version's matching partition (truncated in
//! the same transaction) together with the partition's position (W, 0) and its held events.
//! A crash rolls back only the partition in flight; a restart skips partitions already at W.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlog::Position;
use fold::Projection;
use futures::{pin_mut, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use readmodel::{BuildPhase, BuildProgress, PartitionBatch, State};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::adaptive::{AdaptiveConfig, AdaptiveReport, Controller};
use crate::error::Error;
use crate::locks::{
    lock_registration, lock_version, lock_version_shared, partition_key, take_over, unlock_registration,
    unlock_version_shared, PARTITION_LOCK, PARTITION_UNLOCK,
};
use crate::partition_fold::{FoldFootprint, PartitionFold};
use crate::priority::CpuPriority;
use crate::ratelimit::RateLimiter;
use crate::spill::Spiller;
use crate::tail::{tail_reconnecting, LiveConfig, LiveReport};
use crate::{metric, Result};

/// Configuration of a replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig<P: Projection> {
    pub database_url: String,
    pub projection: P,
    /// Partitions folded at once (each with its own connection: the replay's bounded pool).
    pub workers: usize,
    /// Tail batch size for catch-up.
    pub batch: usize,
    /// Events per second across all workers (backpressure), if any; also caps catch-up unless
    /// `catch_up_rate_limit` is set.
    pub rate_limit: Option<f64>,
    /// Events per second in catch-up, if different from `rate_limit`.
    pub catch_up_rate_limit: Option<f64>,
    /// After the bulk phase, tail the log until lag is 0, then keep tailing (or stop at head).
    pub catch_up: bool,
    pub stop_at_head: bool,
    /// Fold only transactions below this xid (bulk and catch-up).
    pub until: Option<i64>,
    pub quarantine: bool,
    /// Catch-up re-reads from this boundary (overlap).
    pub from_offset: Option<i64>,
    pub poll: Duration,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Adaptive backpressure: the rate limit follows the live API's p99 (bulk and catch-up,
    /// unless `catch_up_rate_limit` is set); `rate_limit`, if set, is then its ceiling.
    pub adaptive: Option<AdaptiveConfig>,
    /// The CPU priority of the replay: of this process's threads and of the PostgreSQL
    /// backends serving its connections, so live serving keeps the CPU when both want it.
    pub priority: CpuPriority,
    /// Apply `priority` to this process's threads as well as to the backends (off when the
    /// process runs other work that must keep its priority, such as a benchmark's producer).
    pub priority_process: bool,
    /// Catch-up's stall warning threshold (`LiveConfig::stall_after`).
    pub stall_after: Duration,
    /// The most events one partition's bulk fold holds at once (read before their
    /// predecessor); past it, the aggregates holding the most go to a spill table and are
    /// folded from it, sorted, at the end of the partition ([`crate::spill`]). `None`: no limit.
    pub held_limit: Option<usize>,
    /// At the held limit, look the missing predecessors up in the log before deferring
    /// aggregates to the spill (off only to test the spill alone).
    pub gap_lookups: bool,
    /// After catch-up, when a cutover retires this version, how long its tail goes on (for a
    /// rollback; see [`LiveConfig::retired_window`]).
    pub retired_window: Duration,
    /// How long the catch-up accepts the database being unreachable before giving up (see
    /// [`LiveConfig::max_outage`]).
    pub max_outage: Duration,
}

impl<P: Projection> ReplayConfig<P> {
    /// A full-speed replay of `projection` with the machine's cores as workers, 10k-event
    /// catch-up batches, catch-up to the head and stop there, no limits, no progress bars.
    pub fn new(database_url: &str, projection: P) -> ReplayConfig<P> {
        ReplayConfig {
            database_url: database_url.to_owned(),
            projection,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch: 10_000,
            rate_limit: None,
            catch_up_rate_limit: None,
            catch_up: true,
            stop_at_head: true,
            until: None,
            quarantine: false,
            from_offset: None,
            poll: Duration::from_millis(20),
            progress: false,
            adaptive: None,
            priority: CpuPriority::NORMAL,
            priority_process: true,
            stall_after: Duration::from_secs(30),
            held_limit: Some(crate::spill::DEFAULT_HELD_LIMIT),
            gap_lookups: true,
            retired_window: crate::tail::DEFAULT_RETIRED_WINDOW,
            max_outage: eventlog::DEFAULT_MAX_OUTAGE,
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayReport {
    pub version: String,
    pub bulk_boundary: i64,
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
    /// Events of the largest partition folded.
    pub largest_partition_events: u64,
    /// Aggregates of the largest partition folded: the size of a worker's hash map.
    pub largest_partition_aggregates: u64,
    /// Events held at some point during the bulk fold (read before their predecessor).
    pub bulk_held_total: u64,
    /// The most events one partition's fold held at once (at most the held limit).
    pub bulk_held_peak: u64,
    /// The held limit the folds ran with (`None`: unbounded).
    pub held_limit: Option<usize>,
    /// Aggregates deferred to a spill table because a fold reached its held limit.
    pub bulk_deferred_aggregates: u64,
    /// Events folded from a spill table instead of in storage order.
    pub bulk_spilled: u64,
    /// Gap lookups (a fold at its held limit), and the events they applied ahead of the stream.
    pub bulk_gap_lookups: u64,
    pub bulk_fetched: u64,
    /// Held events evicted at the limit (short runs of later versions), and the evicted
    /// events read back from the log.
    pub bulk_evicted: u64,
    pub bulk_refetched: u64,
    /// This process's peak resident set size (VmHWM) at the end of the bulk phase: since the
    /// process started, or since the caller last called [`reset_peak_rss`].
    pub peak_rss_bytes: u64,
    pub catch_up: Option<LiveReport>,
    /// This process folded its share of the partitions, and another replay process of the same
    /// version (which held the version when this one finished) passes the barrier and catches up.
    pub finished_elsewhere: bool,
    /// What the adaptive controller did, when the replay had one.
    pub adaptive: Option<AdaptiveReport>,
}

/// Peak resident set size of this process (VmHWM), in bytes: since it started, or since the
/// last successful [`reset_peak_rss`].
pub fn peak_rss_bytes() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

/// Current resident set size of this process (VmRSS), in bytes.
pub fn current_rss_bytes() -> u64 {
    proc_status_kb("VmRSS:") * 1024
}

/// Resets this process's peak resident set size to its current one (Linux: `5` into
/// `/proc/self/clear_refs`), so that [`peak_rss_bytes`] measures one phase. Returns false when
/// the kernel refused (the peak then still counts from the start).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

struct Shared<P: Projection> {
    config: ReplayConfig<P>,
    boundary: i64,
    queue: Mutex<VecDeque<u32>>,
    /// Partitions another process held when this one tried them: tried again once the queue
    /// is empty, until they are done.
    elsewhere: Mutex<Vec<u32>>,
    /// Partitions this process folded and wrote.
    partitions: AtomicU64,
    limiter: Option<Arc<RateLimiter>>,
    events: AtomicU64,
    bytes: AtomicU64,
    rows: AtomicU64,
    held: AtomicU64,
    footprint: Mutex<FoldFootprint>,
    bar: ProgressBar,
    /// Each log partition's size as the statistics knew it at the start of the bulk phase:
    /// the yardstick of the progress gauges.
    sizes: Vec<u64>,
}

/// Rebuilds `config.projection` from the start of the log (see the module docs), then
/// optionally catches up with the tail.
///
/// With `config.adaptive`, the live API's baseline p99 is measured first (before any replay
/// work), and a controller drives the shared limiter until the replay ends.
pub async fn replay<P: Projection>(
    config: &ReplayConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<ReplayReport> {
    if config.priority_process {
        config.priority.apply_to_this_process();
    }
    let controller = match &config.adaptive {
        Some(adaptive) => Some(Controller::start(adaptive, config.rate_limit, config.projection.name()).await?),
        None => None,
    };
    let limiter = controller.as_ref().map(|c| c.limiter.clone());
    let result = rebuild(config, stop, limiter).await;
    match controller {
        Some(c) => {
            let adaptive = c.finish().await;
            result.map(|report| ReplayReport { adaptive: Some(adaptive), ..report })
        }
        None => result,
    }
}

async fn rebuild<P: Projection>(
    config: &ReplayConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
    adaptive: Option<Arc<RateLimiter>>,
) -> Result<ReplayReport> {
    let projection = &config.projection;
    let name = format!("reproject replay {}", projection.name());
    let mut client = eventlog::connect_as(&config.database_url, &name).await?;
    config.priority.apply_to_backend(&client).await;
    let partitions = eventlog::partition_count(&client).await?;
    let boundary = claim_version(&mut client, config, partitions).await?;
    let mut report = ReplayReport {
        version: projection.name().to_owned(),
        bulk_boundary: boundary,
        partitions,
        ..ReplayReport::default()
    };
    let client = if !readmodel::has_primary_key(&client, projection).await? {
        let bulk_started = Instant::now();
        bulk_phase(&client, config, boundary, partitions, adaptive.clone(), stop.clone(), &mut report).await?;
        report.bulk_seconds = bulk_started.elapsed().as_secs_f64();
        if *stop.borrow() {
            // Stopped mid-bulk: the figures say how far it got (events read, including those of
            // partitions abandoned in memory); committed partitions are skipped on restart.
            report.bulk_events_per_s = report.bulk_events as f64 / report.bulk_seconds.max(1e-9);
            report.bulk_mb_per_s = report.bulk_bytes as f64 / 1e6 / report.bulk_seconds.max(1e-9);
            report.peak_rss_bytes = peak_rss_bytes();
            return Ok(report);
        }
        let client = alive_after_bulk(client, config).await?;
        if !take_over(&client, projection).await? {
            info!(
                version = projection.name(),
                "bulk share done; another replay process of this version passes the barrier and catches up"
            );
            report.finished_elsewhere = true;
            report.peak_rss_bytes = peak_rss_bytes();
            let total = report.bulk_seconds;
            report.bulk_events_per_s = report.bulk_events as f64 / total.max(1e-9);
            report.bulk_mb_per_s = report.bulk_bytes as f64 / 1e6 / total.max(1e-9);
            return Ok(report);
        }
        pass_barrier(&client, projection, &mut report).await?;
        client
    } else {
        unlock_version_shared(&client, projection).await?;
        lock_version(&client, projection).await?;
        client
    };
    let total = report.bulk_seconds + report.barrier_seconds;
    report.bulk_events_per_s = report.bulk_events as f64 / total.max(1e-9);
    report.bulk_mb_per_s = report.bulk_bytes as f64 / 1e6 / total.max(1e-9);
    report.peak_rss_bytes = peak_rss_bytes();
    if config.catch_up {
        report.catch_up = Some(catch_up(client, config, stop, adaptive).await?);
    }
    Ok(report)
}

/// The replay's own connection after the bulk phase: the same one if it is alive; else (the
/// database dropped it while the workers rode an outage out on their own) a new one, holding
/// the version's shared lock again, as the connection it replaces did (its lock died with it).
async fn alive_after_bulk<P: Projection>(client: Client, config: &ReplayConfig<P>) -> Result<Client> {
    if !client.is_closed() {
        return Ok(client);
    }
    let name = format!("reproject replay {}", config.projection.name());
    let mut retry = eventlog::Reconnect::new("replay", config.max_outage);
    loop {
        let reopened = async {
            let client = eventlog::connect_as(&config.database_url, &name).await?;
            config.priority.apply_to_backend(&client).await;
            lock_version_shared(&client, &config.projection).await?;
            Ok::<_, Error>(client)
        };
        match reopened.await {
            Ok(client) => {
                retry.recovered();
                return Ok(client);
            }
            Err(e) if eventlog::is_transient(&e) => {
                retry.wait(&eventlog::reconnect::reason(&e)).await.map_err(eventlog::Error::from)?
            }
            Err(e) => return Err(e),
        }
    }
}

/// Takes the version's lock in shared mode (the bulk phase may run in several processes; a
/// live projector or a catch-up holds it exclusively), registers the version if new (a retired
/// version is refused), and returns its bulk boundary W, fixed by the first process of the
/// first run (a restart, or a second process, folds below the same W).
async fn claim_version<P: Projection>(client: &mut Client, config: &ReplayConfig<P>, partitions: u32) -> Result<i64> {
    let projection = &config.projection;
    readmodel::ensure_schema(client).await?;
    lock_version_shared(client, projection).await?;
    // Registration creates the table: serialised, so two processes starting at once do not
    // race on CREATE TABLE.
    lock_registration(client).await?;
    let info = match readmodel::version_info(&*client, projection.name()).await {
        Ok(info) => Ok(info),
        Err(readmodel::Error::UnknownVersion(_)) => {
            readmodel::register(client, projection, State::Building, partitions).await
        }
        Err(e) => Err(e),
    };
    unlock_registration(client).await?;
    let info = info?;
    readmodel::ensure_log_source(&*client, projection.name(), readmodel::EVENT_STORE).await?;
    if info.state == State::Retired {
        return Err(Error::WrongState {
            version: info.version,
            state: info.state,
            hint: "a retired version is not rebuilt in place; drop it first",
        });
    }
    if let Some(w) = info.bulk_boundary {
        return Ok(w);
    }
    let mut w = eventlog::boundary(client).await?;
    if let Some(until) = config.until {
        w = w.min(until);
    }
    Ok(readmodel::set_bulk_boundary(&*client, projection.name(), w).await?)
}

/// The bulk phase: every partition not yet at `boundary` folded and written by the workers;
/// fills the report's bulk figures (but not its time).
async fn bulk_phase<P: Projection>(
    client: &Client,
    config: &ReplayConfig<P>,
    boundary: i64,
    partitions: u32,
    adaptive: Option<Arc<RateLimiter>>,
    stop: tokio::sync::watch::Receiver<bool>,
    report: &mut ReplayReport,
) -> Result<()> {
    let projection = &config.projection;
    let positions = readmodel::offsets(client, projection.name()).await?;
    let todo: VecDeque<u32> =
        (0..partitions).filter(|p| positions[*p as usize] < Position::boundary(boundary)).collect();
    info!(
        version = projection.name(),
        boundary,
        partitions = todo.len(),
        skipped = partitions as usize - todo.len(),
        "bulk phase"
    );
    let bar = if config.progress {
        let bar = ProgressBar::new(todo.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("bulk {bar:30} {pos}/{len} partitions  {msg}  [{elapsed_precise}]")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let sizes = match readmodel::log_partition_sizes(client, partitions).await {
        Ok(sizes) => sizes,
        Err(e) => {
            warn!(error = %e, "log partition sizes unknown: progress and ETA will not be reported");
            vec![0; partitions as usize]
        }
    };
    let total: u64 = todo.iter().map(|p| sizes[*p as usize]).sum();
    for p in 0..partitions {
        let done = if todo.contains(&p) { 0.0 } else { 1.0 };
        metrics::gauge!(metric::PARTITION_PROGRESS, "version" => projection.name(), "partition" => p.to_string())
            .set(done);
    }
    let shared = Arc::new(Shared {
        config: config.clone(),
        boundary,
        queue: Mutex::new(todo),
        elsewhere: Mutex::new(Vec::new()),
        partitions: AtomicU64::new(0),
        limiter: adaptive.or_else(|| config.rate_limit.map(|r| Arc::new(RateLimiter::new(r)))),
        events: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        rows: AtomicU64::new(0),
        held: AtomicU64::new(0),
        footprint: Mutex::new(FoldFootprint::default()),
        bar,
        sizes,
    });
    let ticker = tokio::spawn(progress_ticker(shared.clone(), total));
    let mut handles = Vec::new();
    for w in 1..=config.workers.max(1) {
        let shared = shared.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move { worker(shared, stop, w).await }));
    }
    let mut first_error = None;
    for h in handles {
        let outcome = h.await.map_err(|e| Error::Worker(e.to_string())).and_then(|r| r);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    ticker.abort();
    shared.bar.finish_and_clear();
    if let Some(e) = first_error {
        return Err(e);
    }
    report.partitions_replayed = shared.partitions.load(Ordering::Relaxed) as u32;
    report.bulk_events = shared.events.load(Ordering::Relaxed);
    report.bulk_bytes = shared.bytes.load(Ordering::Relaxed);
    report.bulk_rows = shared.rows.load(Ordering::Relaxed);
    report.held_after_bulk = shared.held.load(Ordering::Relaxed);
    let footprint = *shared.footprint.lock().expect("footprint lock");
    report.largest_partition_events = footprint.events;
    report.largest_partition_aggregates = footprint.aggregates;
    report.bulk_held_total = footprint.held_total;
    report.bulk_held_peak = footprint.held_peak;
    report.held_limit = shared.config.held_limit;
    report.bulk_deferred_aggregates = footprint.deferred_aggregates;
    report.bulk_spilled = footprint.spilled;
    report.bulk_gap_lookups = footprint.gap_lookups;
    report.bulk_fetched = footprint.fetched;
    report.bulk_evicted = footprint.evicted;
    report.bulk_refetched = footprint.refetched;
    Ok(())
}

/// The barrier after the bulk phase: the primary key built (the table is whole), the build
/// recorded as past its bulk phase.
async fn pass_barrier<P: Projection>(client: &Client, projection: &P, report: &mut ReplayReport) -> Result<()> {
    let barrier = Instant::now();
    readmodel::add_primary_key(client, projection).await?;
    report.barrier_seconds = barrier.elapsed().as_secs_f64();
    let rate = report.bulk_events as f64 / (report.bulk_seconds + report.barrier_seconds).max(1e-9);
    let done = BuildProgress {
        version: projection.name().to_owned(),
        phase: BuildPhase::CatchUp,
        events_done: report.bulk_events as i64,
        events_total: report.bulk_events as i64,
        events_per_s: rate,
        started_at: chrono::Utc::now()
            - chrono::Duration::milliseconds(((report.bulk_seconds + report.barrier_seconds) * 1e3) as i64),
        updated_at: chrono::Utc::now(),
    };
    readmodel::record_build_progress(client, &done).await?;
    metrics::gauge!(metric::BUILD_PROGRESS, "version" => projection.name()).set(1.0);
    metrics::gauge!(metric::BUILD_ETA, "version" => projection.name()).set(0.0);
    info!(
        version = projection.name(),
        events = report.bulk_events,
        rows = report.bulk_rows,
        seconds = report.bulk_seconds,
        barrier_seconds = report.barrier_seconds,
        "bulk phase done, barrier passed"
    );
    Ok(())
}

/// Catch-up: the tail path from the bulk positions to the head (or on, if not stopping there).
async fn catch_up<P: Projection>(
    client: Client,
    config: &ReplayConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
    adaptive: Option<Arc<RateLimiter>>,
) -> Result<LiveReport> {
    let live = LiveConfig {
        database_url: config.database_url.clone(),
        projection: config.projection.clone(),
        batch: config.batch,
        until: config.until,
        stop_at_head: config.stop_at_head,
        quarantine: config.quarantine,
        from_offset: config.from_offset,
        poll: config.poll,
        synchronous_commit: false,
        rate_limit: config.catch_up_rate_limit.or(config.rate_limit),
        progress: config.progress,
        stall_after: config.stall_after,
        retired_window: config.retired_window,
        max_outage: config.max_outage,
    };
    // The adaptive limiter keeps driving catch-up unless catch-up has a cap of its own.
    let tail_limiter = adaptive.filter(|_| config.catch_up_rate_limit.is_none());
    // It starts on the connection that holds the version's lock; a replacement takes the lock
    // again (the lost session's lock died with it) and resumes from the stored positions.
    let name = format!("reproject replay {} catch-up", config.projection.name());
    tail_reconnecting(&live, stop, tail_limiter, Some(client), "replay", &name).await
}

/// The next partition this worker folds: taken from the queue, locked, and not yet at the
/// boundary (another process may have finished it). A partition another process holds is set
/// aside and tried again every 200 ms until it is done or free (its holder died). `None` when
/// every partition is at the boundary.
async fn claim_partition<P: Projection>(client: &Client, shared: &Shared<P>) -> Result<Option<u32>> {
    let key = partition_key(&shared.config.projection);
    let boundary = Position::boundary(shared.boundary);
    loop {
        let next = shared.queue.lock().expect("queue lock").pop_front();
        let Some(p) = next else {
            let waiting: Vec<u32> = std::mem::take(&mut *shared.elsewhere.lock().expect("elsewhere lock"));
            if waiting.is_empty() {
                return Ok(None);
            }
            let positions = readmodel::offsets(client, shared.config.projection.name()).await?;
            let open: Vec<u32> = waiting.into_iter().filter(|p| positions[*p as usize] < boundary).collect();
            if open.is_empty() {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            shared.queue.lock().expect("queue lock").extend(open);
            continue;
        };
        let taken: bool = client.query_one(PARTITION_LOCK, &[&key, &(p as i32)]).await?.get(0);
        if !taken {
            shared.elsewhere.lock().expect("elsewhere lock").push(p);
            continue;
        }
        let positions = readmodel::offsets(client, shared.config.projection.name()).await?;
        if positions[p as usize] >= boundary {
            client.query_one(PARTITION_UNLOCK, &[&key, &(p as i32)]).await?;
            continue;
        }
        return Ok(Some(p));
    }
}

async fn release_partition<P: Projection>(client: &Client, shared: &Shared<P>, p: u32) -> Result<()> {
    client.query_one(PARTITION_UNLOCK, &[&partition_key(&shared.config.projection), &(p as i32)]).await?;
    Ok(())
}

/// A worker of the bulk phase: claims partitions and folds them until none is left. When its
/// connection is lost (or another database fault of the infrastructure hits it), the partition
/// in flight goes back to the queue, the connection is replaced (its session, and the
/// partition's lock with it, is gone: nothing of the partition was committed, its write being
/// one transaction), and the worker re-claims partitions as before, until `max_outage`.
async fn worker<P: Projection>(
    shared: Arc<Shared<P>>,
    stop: tokio::sync::watch::Receiver<bool>,
    number: usize,
) -> Result<()> {
    let name = format!("reproject replay {} worker {number}", shared.config.projection.name());
    let mut retry = eventlog::Reconnect::new("replay", shared.config.max_outage);
    loop {
        let mut in_flight = None;
        let session = async {
            let client = eventlog::connect_as(&shared.config.database_url, &name).await?;
            shared.config.priority.apply_to_backend(&client).await;
            worker_session(client, &shared, &stop, &mut in_flight, &mut retry).await
        };
        match session.await {
            Ok(()) => return Ok(()),
            Err(e) if eventlog::is_transient(&e) => {
                if let Some(p) = in_flight {
                    warn!(partition = p, error = %e, "connection lost mid-partition: it goes back to the queue");
                    shared.queue.lock().expect("queue lock").push_front(p);
                }
                retry.wait(&eventlog::reconnect::reason(&e)).await.map_err(eventlog::Error::from)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One connection's share of a worker's life: claim, fold and write partitions until none is
/// left; `in_flight` names the partition claimed and not yet written.
async fn worker_session<P: Projection>(
    mut client: Client,
    shared: &Arc<Shared<P>>,
    stop: &tokio::sync::watch::Receiver<bool>,
    in_flight: &mut Option<u32>,
    retry: &mut eventlog::Reconnect,
) -> Result<()> {
    let shared = shared.clone();
    let stop = stop.clone();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let Some(p) = claim_partition(&client, &shared).await? else {
            return Ok(());
        };
        *in_flight = Some(p);
        retry.recovered();
        let started = Instant::now();
        let Some((batch, footprint)) = fold_partition(&client, &shared, p, &stop).await? else {
            info!(partition = p, "stopped mid-partition: nothing of it written");
            return Ok(());
        };
        let events = batch.applied;
        shared.rows.fetch_add(batch.rows.len() as u64, Ordering::Relaxed);
        shared.held.fetch_add(batch.held.len() as u64, Ordering::Relaxed);
        readmodel::write_partition(&mut client, &batch).await?;
        *in_flight = None;
        release_partition(&client, &shared, p).await?;
        shared.partitions.fetch_add(1, Ordering::Relaxed);
        let version = shared.config.projection.name();
        metrics::counter!(metric::PARTITIONS_DONE, "version" => version).increment(1);
        metrics::gauge!(metric::PARTITION_PROGRESS, "version" => version, "partition" => p.to_string()).set(1.0);
        metrics::histogram!(metric::WRITE_SECONDS, "version" => version, "phase" => "bulk")
            .record(started.elapsed().as_secs_f64());
        shared.bar.inc(1);
        {
            let mut all = shared.footprint.lock().expect("footprint lock");
            all.events = all.events.max(footprint.events);
            all.aggregates = all.aggregates.max(footprint.aggregates);
            all.held_total += footprint.held_total;
            all.held_peak = all.held_peak.max(footprint.held_peak);
            all.deferred_aggregates += footprint.deferred_aggregates;
            all.spilled += footprint.spilled;
            all.gap_lookups += footprint.gap_lookups;
            all.fetched += footprint.fetched;
            all.evicted += footprint.evicted;
            all.refetched += footprint.refetched;
        }
        info!(
            partition = p,
            events,
            rows = batch.rows.len(),
            held_total = footprint.held_total,
            held_peak = footprint.held_peak,
            deferred = footprint.deferred_aggregates,
            spilled = footprint.spilled,
            gap_lookups = footprint.gap_lookups,
            fetched = footprint.fetched,
            evicted = footprint.evicted,
            refetched = footprint.refetched,
            rss_mb = current_rss_bytes() / 1_000_000,
            seconds = started.elapsed().as_secs_f64(),
            "partition replayed"
        );
    }
}

/// Folds one partition up to the boundary, in memory; `None` if stopped before the end (nothing
/// has been written, so abandoning the fold is safe). What it keeps: one stream per aggregate
/// of the partition and the events held right now (see [`PartitionFold`]); the COPY stream
/// itself holds at most a few socket reads (tokio-postgres hands each read to a channel of
/// one slot and stops reading the socket while that slot is full).
async fn fold_partition<P: Projection>(
    client: &Client,
    shared: &Shared<P>,
    p: u32,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<(PartitionBatch<P>, FoldFootprint)>> {
    let projection = &shared.config.projection;
    let version = projection.name();
    let mut fold =
        PartitionFold::new(projection.clone(), p, shared.config.quarantine).with_held_limit(shared.config.held_limit);
    let mut spill = Spiller::new(&shared.config.database_url, shared.config.priority);
    if shared.config.gap_lookups {
        spill = spill.with_gap_lookups(p, shared.boundary);
    }
    let mut pending_tokens = 0u64;
    let mut since_stop_check = 0u32;
    let mut unreported = Unreported::default();
    let partition_label = p.to_string();
    let events_read = metrics::counter!(metric::EVENTS_READ, "version" => version, "phase" => "bulk");
    let bytes_read = metrics::counter!(metric::BYTES_READ, "version" => version, "phase" => "bulk");
    let progress = metrics::gauge!(metric::PARTITION_PROGRESS, "version" => version, "partition" => partition_label);
    let size = shared.sizes[p as usize];
    let mut read_here = 0u64;
    let events = eventlog::copy_partition(client, p, Position::START, shared.boundary).await?;
    pin_mut!(events);
    while let Some(raw) = events.next().await {
        let raw = raw?;
        unreported.events += 1;
        unreported.bytes += raw.wire_bytes() as u64;
        since_stop_check += 1;
        if since_stop_check >= 4_096 {
            since_stop_check = 0;
            read_here += unreported.flush(shared, &events_read, &bytes_read);
            // Short of 1 until the partition is committed, however far off the estimate was.
            if size > 0 {
                progress.set((read_here as f64 / size as f64).min(0.99));
            }
            if *stop.borrow() {
                return Ok(None);
            }
        }
        if let Some(limiter) = &shared.limiter {
            pending_tokens += 1;
            if pending_tokens >= 256 {
                limiter.acquire(pending_tokens).await;
                pending_tokens = 0;
            }
        }
        fold.offer(raw)?;
        spill.keep_up(&mut fold).await?;
    }
    unreported.flush(shared, &events_read, &bytes_read);
    spill.drain(&mut fold).await?;
    let footprint = fold.footprint();
    let batch = fold.finish(Position::boundary(shared.boundary));
    metrics::counter!(metric::EVENTS_APPLIED, "version" => version, "phase" => "bulk").increment(batch.applied as u64);
    metrics::counter!(metric::DEAD_LETTERS, "version" => version).increment(batch.dead_letters.len() as u64);
    Ok(Some((batch, footprint)))
}

/// Events and bytes read but not yet added to the counters (the metrics and the replay's
/// totals): the fold adds them every few thousand events, not per event (the totals are
/// shared by the workers: a write per event would bounce their cache line between cores).
#[derive(Default)]
struct Unreported {
    events: u64,
    bytes: u64,
}

impl Unreported {
    /// Adds what is pending to the counters; returns the events added.
    fn flush<P: Projection>(&mut self, shared: &Shared<P>, events: &metrics::Counter, bytes: &metrics::Counter) -> u64 {
        let (n, b) = (std::mem::take(&mut self.events), std::mem::take(&mut self.bytes));
        shared.events.fetch_add(n, Ordering::Relaxed);
        shared.bytes.fetch_add(b, Ordering::Relaxed);
        events.increment(n);
        bytes.increment(b);
        n
    }
}

/// Every 250 ms: the progress bar, and the progress and ETA gauges of the bulk phase; every
/// second also the progress record in `read.build_progress` (on a connection of its own, so
/// the status of a version still building can be read from the database: `projections`,
/// `GET /projections`). Runs until aborted.
async fn progress_ticker<P: Projection>(shared: Arc<Shared<P>>, total: u64) {
    let version = shared.config.projection.name();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let progress_gauge = metrics::gauge!(metric::BUILD_PROGRESS, "version" => version);
    let eta_gauge = metrics::gauge!(metric::BUILD_ETA, "version" => version);
    let name = format!("reproject replay {version} progress");
    let mut recorder = match eventlog::connect_as(&shared.config.database_url, &name).await {
        Ok(client) => Some(client),
        Err(e) => {
            warn!(error = %e, "no connection for progress records: projections will not show this build's ETA");
            None
        }
    };
    let mut ticks = 0u64;
    loop {
        let ev = shared.events.load(Ordering::Relaxed);
        let mb = shared.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let rate = ev as f64 / seconds;
        shared.bar.set_message(format!("{ev} events, {mb:.0} MB, {rate:.0} events/s"));
        let record = BuildProgress {
            version: version.to_owned(),
            phase: BuildPhase::Bulk,
            events_done: ev as i64,
            events_total: total.max(ev) as i64,
            events_per_s: if ticks == 0 { 0.0 } else { rate },
            started_at,
            updated_at: chrono::Utc::now(),
        };
        let estimate = record.estimate(0, record.updated_at);
        progress_gauge.set(estimate.progress_ratio.min(0.99));
        if let Some(eta) = estimate.eta_seconds {
            eta_gauge.set(eta);
        }
        if ticks.is_multiple_of(4) {
            // A connection lost to a database outage is replaced on a later tick: the record
            // is a report, it waits.
            if recorder.as_ref().is_some_and(Client::is_closed) {
                recorder = eventlog::connect_as(&shared.config.database_url, &name).await.ok();
            }
            if let Some(client) = &recorder {
                if let Err(e) = readmodel::record_build_progress(client, &record).await {
                    if !eventlog::is_transient(&e) {
                        warn!(error = %e, "recording the build's progress failed");
                    }
                }
            }
        }
        ticks += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
