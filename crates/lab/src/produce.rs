//! The live producer: concurrent writers that keep appending to the seeded log at a steady
//! rate, with optimistic concurrency, and keep `lab.expected_accounts` true in the same
//! transaction as every append.
//!
//! **Batches.** A writer commits a batch of commands per transaction, in a handful of round
//! trips whatever the batch's size: one `SELECT ... = ANY` of the expected state of the
//! aggregates the batch touches (pipelined with the new aggregate ids it needs), one of the
//! log's sequence values, then, pipelined, one `INSERT ... SELECT FROM unnest` of the events,
//! one `UPDATE ... FROM unnest` of the expected rows (guarded by the version each was read at)
//! and one `INSERT ... FROM unnest` of the aggregates it opened. At a paced rate the batch
//! shrinks so that a writer still commits about 100 times a second; a writer behind its
//! schedule (round trips slowed by a busy server or a busy CPU) catches up with bigger
//! batches, up to the configured most, not with more transactions: the rate then holds as
//! long as the server keeps up with the events, not with the commits.
//!
//! **Ranges.** Writer `w` of `W` owns the aggregates with `(id - 1) % W == w` and draws them
//! with its own Zipf ranks (its rank k is its k-th id): popularity stays Zipf within each
//! range, and two writers never race on the same aggregate except through the cross-range
//! transfers below. Reads take no lock: the optimistic checks (the guarded update's row
//! count, the log's unique `(aggregate_id, version)`) are what keeps the state true, and a
//! batch that loses a race rolls back whole and is drawn again (a conflict and a retry).
//!
//! **Transfers.** A transfer writes two aggregates in one transaction. Most stay inside the
//! writer's range; a share (`cross_range_ratio`) sends to another writer's aggregate. Those
//! are written last, inside a savepoint, after the batch's own events (so the transaction's
//! id is already taken) and a short pause: the receiver is read only then, so another
//! writer may have committed the receiver's previous version meanwhile with a newer
//! transaction id, and in `(tx_id, global_seq)` order the receiver's version n+1 comes before
//! its version n. Projectors must hold it until version n arrives. The cross-range part reads
//! its rows `FOR UPDATE SKIP LOCKED`: a receiver that another writer's open transaction holds
//! (under Zipf, the owner's hot aggregates mostly are) is not waited for; that transfer is
//! dropped and counted as a conflict. A cross-range part that still loses a race (the owner's
//! uncommitted event of the same version, met within a short `lock_timeout`, which also rules
//! out waiting in a deadlock) rolls back to its savepoint and is tried again, up to three
//! times; the batch's own events are kept.
//!
//! Counters `reproject_produce_events_total`, `reproject_produce_conflicts_total` and
//! `reproject_produce_retries_total` go to the `metrics` recorder, if one is installed, and
//! the run's report keeps them per second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement, Transaction};
use tracing::{debug, info};

use crate::model::{owner_of, pick_currency, render_payload, AccountModel, Action, Change, Mix, CURRENCIES};
use crate::{Error, Result};

const SELECT_STATES: &str = include_str!("sql/produce_select.sql");
const SELECT_CROSS: &str = include_str!("sql/produce_select_cross.sql");
const INSERT_EVENTS: &str = include_str!("sql/produce_insert_events.sql");
const UPDATE_EXPECTED: &str = include_str!("sql/produce_update_expected.sql");
const INSERT_EXPECTED: &str = include_str!("sql/produce_insert_expected.sql");
const NEXT_VALUES: &str = include_str!("sql/produce_next_values.sql");

/// Conflicting attempts of one batch in a row after which a writer gives up.
const MAX_ATTEMPTS: u32 = 100;
/// Attempts at a batch's cross-range transfers before they are dropped.
const CROSS_ATTEMPTS: u32 = 3;
/// How long a cross-range part waits for another writer's row before it counts as a conflict.
const CROSS_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '50ms'";
/// Commits per second a paced writer aims at (the batch shrinks at low rates to keep it).
const PACED_COMMITS_PER_S: f64 = 100.0;

/// Counter names, with their unit.
pub const EVENTS_TOTAL: &str = "reproject_produce_events_total";
pub const CONFLICTS_TOTAL: &str = "reproject_produce_conflicts_total";
pub const RETRIES_TOTAL: &str = "reproject_produce_retries_total";

/// How to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    /// Target events per second across all writers; 0 or less means as fast as possible.
    pub rate: f64,
    /// Concurrent writer connections, each owning one range of the aggregates.
    pub writers: u32,
    /// Most commands per transaction (a paced writer uses fewer at low rates).
    pub batch: u32,
    /// Stop after this long (else only on the stop signal).
    pub duration: Option<Duration>,
    pub seed: u64,
    /// Share of an open account's actions that are transfers (two aggregates, one transaction).
    pub transfer_ratio: f64,
    /// Share of transfers whose receiver belongs to another writer's range.
    pub cross_range_ratio: f64,
    /// Share of commands that open a new aggregate.
    pub new_aggregate_ratio: f64,
    /// Zipf exponent of aggregate popularity.
    pub zipf: f64,
    /// Time a transaction with cross-range transfers spends between writing its own events and
    /// reading the receivers (a fraud check, say). It widens the window in which a receiver's
    /// next version can commit with a newer transaction id than the transfer's, so projectors
    /// meet that case often.
    pub transfer_pause: Duration,
}

impl ProduceConfig {
    /// A config with the defaults: 4 writers, batches of up to 100 commands, transfers 5% (a
    /// quarter of them across ranges), new aggregates 2%, Zipf 1.1, a 2 ms pause before
    /// cross-range transfers.
    pub fn new(rate: f64, duration: Option<Duration>, seed: u64) -> ProduceConfig {
        ProduceConfig {
            rate,
            writers: 4,
            batch: 100,
            duration,
            seed,
            transfer_ratio: 0.05,
            cross_range_ratio: 0.25,
            new_aggregate_ratio: 0.02,
            zipf: 1.1,
            transfer_pause: Duration::from_millis(2),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.writers == 0 {
            return Err(Error::Config("writers must be at least 1".into()));
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(Error::Config(format!("batch must be within 1..=100000, got {}", self.batch)));
        }
        for (name, v) in [("transfer_ratio", self.transfer_ratio), ("new_aggregate_ratio", self.new_aggregate_ratio)] {
            if !(0.0..=0.9).contains(&v) {
                return Err(Error::Config(format!("{name} must be within 0..=0.9, got {v}")));
            }
        }
        if !(0.0..=1.0).contains(&self.cross_range_ratio) {
            return Err(Error::Config(format!(
                "cross_range_ratio must be within 0..=1, got {}",
                self.cross_range_ratio
            )));
        }
        if !(self.zipf.is_finite() && self.zipf > 0.0) {
            return Err(Error::Config(format!("zipf exponent must be positive, got {}", self.zipf)));
        }
        if self.rate.is_nan() {
            return Err(Error::Config("rate must be a number".into()));
        }
        Ok(())
    }

    /// Commands per transaction of each writer.
    fn batch_size(&self) -> usize {
        let max = self.batch as usize;
        if self.rate > 0.0 && self.rate.is_finite() {
            let per_writer = self.rate / f64::from(self.writers);
            ((per_writer / PACED_COMMITS_PER_S).ceil() as usize).clamp(1, max)
        } else {
            max
        }
    }
}

/// One second of a producer run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProduceSecond {
    /// End of the interval, seconds since the start.
    pub t_s: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub conflicts: u64,
    pub retries: u64,
}

/// What a producer run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProduceReport {
    pub events: u64,
    /// Committed transactions.
    pub transactions: u64,
    /// Committed transfers (two-aggregate transactions).
    pub transfers: u64,
    /// Of which between two writers' ranges.
    pub cross_range_transfers: u64,
    pub new_aggregates: u64,
    /// Attempts (a whole batch, or a batch's cross-range part) that lost a race and rolled back.
    pub conflicts: u64,
    /// Of those, the ones tried again.
    pub retries: u64,
    /// Cross-range parts dropped after their last attempt.
    pub abandoned: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub conflicts_per_s: f64,
    /// The run, second by second.
    pub per_second: Vec<ProduceSecond>,
}

impl ProduceReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "produced {} events in {} transactions ({} transfers, {} across writers' ranges, {} new aggregates; \
             {} conflicts, {} retries, {} cross-range parts dropped) in {:.1}s: {:.0} events/s",
            self.events,
            self.transactions,
            self.transfers,
            self.cross_range_transfers,
            self.new_aggregates,
            self.conflicts,
            self.retries,
            self.abandoned,
            self.seconds,
            self.events_per_s
        )
    }
}

/// The run's counters, shared by the writers and the per-second sampler; every increment also
/// goes to the `metrics` recorder.
#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    transactions: AtomicU64,
    transfers: AtomicU64,
    cross_range_transfers: AtomicU64,
    new_aggregates: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
    abandoned: AtomicU64,
}

impl Counters {
    fn committed(&self, done: &Done) {
        self.events.fetch_add(done.events, Ordering::Relaxed);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.transfers.fetch_add(done.transfers, Ordering::Relaxed);
        self.cross_range_transfers.fetch_add(done.cross_range_transfers, Ordering::Relaxed);
        self.new_aggregates.fetch_add(done.opened, Ordering::Relaxed);
        self.conflicts.fetch_add(done.conflicts, Ordering::Relaxed);
        self.retries.fetch_add(done.retries, Ordering::Relaxed);
        self.abandoned.fetch_add(done.abandoned, Ordering::Relaxed);
        metrics::counter!(EVENTS_TOTAL).increment(done.events);
        metrics::counter!(CONFLICTS_TOTAL).increment(done.conflicts);
        metrics::counter!(RETRIES_TOTAL).increment(done.retries);
    }

    fn conflict(&self, retried: bool) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(CONFLICTS_TOTAL).increment(1);
        if retried {
            self.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(RETRIES_TOTAL).increment(1);
        }
    }

    fn report(&self) -> ProduceReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProduceReport {
            events: get(&self.events),
            transactions: get(&self.transactions),
            transfers: get(&self.transfers),
            cross_range_transfers: get(&self.cross_range_transfers),
            new_aggregates: get(&self.new_aggregates),
            conflicts: get(&self.conflicts),
            retries: get(&self.retries),
            abandoned: get(&self.abandoned),
            ..ProduceReport::default()
        }
    }
}

/// Appends to the log at `url` until `duration` passes or `stop` turns true.
pub async fn run(url: &str, cfg: ProduceConfig, stop: watch::Receiver<bool>) -> Result<ProduceReport> {
    cfg.validate()?;
    let client = eventlog::connect(url).await?;
    let seeded: bool = client.query_one("SELECT to_regclass('lab.expected_accounts') IS NOT NULL", &[]).await?.get(0);
    if !seeded || !eventlog::exists(&client).await? {
        return Err(Error::NotSeeded);
    }
    // Optimistic concurrency relies on the log's unique (aggregate_id, version).
    eventlog::ensure_indexes(&client).await?;
    let max_id: i64 =
        client.query_one("SELECT coalesce(max(aggregate_id), 0) FROM lab.expected_accounts", &[]).await?.get(0);
    let max_id = Arc::new(AtomicI64::new(max_id));
    drop(client);

    info!(rate = cfg.rate, writers = cfg.writers, batch = cfg.batch_size(), "producer starting");
    let counters = Arc::new(Counters::default());
    let mut writers = Vec::with_capacity(cfg.writers as usize);
    for w in 0..cfg.writers {
        writers.push(Writer::connect(url, &cfg, w, max_id.clone(), counters.clone()).await?);
    }
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in writers {
        tasks.spawn(writer.run(cfg.clone(), deadline, stop.clone()));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample_seconds(counters.clone(), started, done_rx));
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::Config(format!("writer task failed: {e}")));
            }
        }
    }
    done_tx.send(true).ok();
    let per_second = sampler.await.unwrap_or_default();
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut report = counters.report();
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_s = report.events as f64 / report.seconds.max(1e-9);
    report.conflicts_per_s = report.conflicts as f64 / report.seconds.max(1e-9);
    report.per_second = per_second;
    info!(
        events = report.events,
        conflicts = report.conflicts,
        retries = report.retries,
        events_per_s = report.events_per_s,
        "producer stopped"
    );
    Ok(report)
}

/// Snapshots the counters every second (and once more at the end, for the last part-second).
async fn sample_seconds(
    counters: Arc<Counters>,
    started: Instant,
    mut done: watch::Receiver<bool>,
) -> Vec<ProduceSecond> {
    let mut out = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let (mut t0, mut e0, mut c0, mut r0) = (0.0, 0, 0, 0);
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = done.changed() => true,
        };
        let t = started.elapsed().as_secs_f64();
        let (e, c, r) = (
            counters.events.load(Ordering::Relaxed),
            counters.conflicts.load(Ordering::Relaxed),
            counters.retries.load(Ordering::Relaxed),
        );
        if t > t0 {
            out.push(ProduceSecond {
                t_s: t,
                events: e - e0,
                events_per_s: (e - e0) as f64 / (t - t0),
                conflicts: c - c0,
                retries: r - r0,
            });
        }
        (t0, e0, c0, r0) = (t, e, c, r);
        if last {
            return out;
        }
    }
}

/// Why one attempt did not commit.
enum Attempt {
    /// Lost a race: roll back, try again.
    Conflict,
    Failed(Error),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Self {
        let retryable = [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::LOCK_NOT_AVAILABLE,
        ];
        match e.code() {
            Some(code) if retryable.contains(code) => Attempt::Conflict,
            _ => Attempt::Failed(Error::Db(e)),
        }
    }
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Failed(e)
    }
}

/// What one committed transaction wrote (and what its cross-range part lost on the way).
#[derive(Debug, Default)]
struct Done {
    events: u64,
    transfers: u64,
    cross_range_transfers: u64,
    opened: u64,
    conflicts: u64,
    retries: u64,
    abandoned: u64,
}

/// One command of a batch.
enum Command {
    /// Open a new aggregate.
    Open,
    /// The next action of `id`; should it be a transfer, it goes to `receiver` (in another
    /// writer's range when `cross`).
    Next { id: i64, receiver: i64, cross: bool },
}

/// An event computed by the writer, waiting for its `global_seq`.
struct Pending {
    aggregate_id: i64,
    version: i32,
    event_type: &'static str,
    payload: String,
}

/// What a batch's cross-range part wrote, and how many of its transfers met a row another
/// writer held.
struct CrossDone {
    events: u64,
    transfers: u64,
    busy: u64,
}

/// A cross-range transfer, written in the batch's second part.
struct Cross {
    from: i64,
    to: i64,
    cents: i64,
}

/// The prepared statements of a writer's connection.
struct Statements {
    select: Statement,
    select_cross: Statement,
    insert_events: Statement,
    update: Statement,
    insert_expected: Statement,
    next_values: Statement,
}

/// One writer connection, the range of aggregates it owns, and its random stream.
struct Writer {
    client: Client,
    st: Statements,
    rng: ChaCha8Rng,
    zipf: Zipf<f64>,
    mix: Mix,
    /// This writer's range: ids with `(id - 1) % writers == index`.
    index: u32,
    writers: u32,
    batch: usize,
    new_aggregate_ratio: f64,
    cross_range_ratio: f64,
    transfer_pause: Duration,
    max_id: Arc<AtomicI64>,
    counters: Arc<Counters>,
}

impl Writer {
    async fn connect(
        url: &str,
        cfg: &ProduceConfig,
        index: u32,
        max_id: Arc<AtomicI64>,
        counters: Arc<Counters>,
    ) -> Result<Writer> {
        let client = eventlog::connect(url).await?;
        let (select, select_cross, insert_events, update, insert_expected, next_values) = futures::try_join!(
            client.prepare(SELECT_STATES),
            client.prepare(SELECT_CROSS),
            client.prepare(INSERT_EVENTS),
            client.prepare(UPDATE_EXPECTED),
            client.prepare(INSERT_EXPECTED),
            client.prepare(NEXT_VALUES),
        )?;
        // Ranks range past today's ids so aggregates opened while producing are drawn too.
        let n = ((max_id.load(Ordering::Relaxed).max(1) as u64) * 2 + 1_000) / u64::from(cfg.writers) + 1;
        let zipf = Zipf::new(n, cfg.zipf).map_err(|e| Error::Config(format!("zipf: {e}")))?;
        let seed = cfg.seed ^ (u64::from(index) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Ok(Writer {
            client,
            st: Statements { select, select_cross, insert_events, update, insert_expected, next_values },
            rng: ChaCha8Rng::seed_from_u64(seed),
            zipf,
            mix: Mix::GENERATOR.with_transfer_ratio(cfg.transfer_ratio),
            index,
            writers: cfg.writers,
            batch: cfg.batch_size(),
            new_aggregate_ratio: cfg.new_aggregate_ratio,
            cross_range_ratio: if cfg.writers > 1 { cfg.cross_range_ratio } else { 0.0 },
            transfer_pause: cfg.transfer_pause,
            max_id,
            counters,
        })
    }

    async fn run(
        mut self,
        cfg: ProduceConfig,
        deadline: Option<tokio::time::Instant>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        // Steady pacing: the k-th event of this writer is due at start + k * period.
        let period = (cfg.rate > 0.0 && cfg.rate.is_finite())
            .then(|| Duration::from_secs_f64(f64::from(cfg.writers) / cfg.rate));
        let start = tokio::time::Instant::now();
        let paced_batch = cfg.batch_size();
        let mut events = 0u64;
        loop {
            if *stop.borrow() || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            if let Some(period) = period {
                let due = start + period.mul_f64(events as f64);
                let wake = deadline.map_or(due, |d| due.min(d));
                if wake > tokio::time::Instant::now() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        changed = stop.changed() => {
                            // With the sender gone nobody can stop us early: just wait.
                            if changed.is_err() {
                                tokio::time::sleep_until(wake).await;
                            }
                        }
                    }
                    continue;
                }
            }
            if let Some(period) = period {
                // Behind schedule: what is owed, in one batch (up to the configured most).
                let due = (start.elapsed().as_secs_f64() / period.as_secs_f64()) as u64;
                let owed = due.saturating_sub(events) as usize;
                self.batch = owed.clamp(paced_batch, cfg.batch as usize);
            }
            let mut attempts = 0;
            let done = loop {
                match self.batch().await {
                    Ok(done) => break done,
                    Err(Attempt::Conflict) => {
                        attempts += 1;
                        self.counters.conflict(attempts < MAX_ATTEMPTS);
                        if attempts >= MAX_ATTEMPTS {
                            return Err(Error::TooManyConflicts { attempts });
                        }
                    }
                    Err(Attempt::Failed(e)) => return Err(e),
                }
            };
            events += done.events;
            self.counters.committed(&done);
        }
        Ok(())
    }

    /// A Zipf-popular existing aggregate of writer `owner`'s range.
    fn popular_in(&mut self, owner: u32) -> i64 {
        let w = i64::from(self.writers);
        let max = self.max_id.load(Ordering::Relaxed).max(1);
        // Ids of the range up to today's largest: owner + 1, owner + 1 + w, ...
        let count = ((max - i64::from(owner) - 1).max(0) / w + 1) as u64;
        let rank = self.zipf.sample(&mut self.rng) as u64;
        let k = ((rank.max(1) - 1) % count) as i64;
        k * w + i64::from(owner) + 1
    }

    /// A Zipf-popular aggregate of another writer's range.
    fn foreign(&mut self) -> i64 {
        let other = (self.index + self.rng.gen_range(1..self.writers)) % self.writers;
        self.popular_in(other)
    }

    /// Draws the batch's commands.
    fn draw(&mut self) -> Vec<Command> {
        (0..self.batch)
            .map(|_| {
                if self.rng.gen_bool(self.new_aggregate_ratio) {
                    return Command::Open;
                }
                let id = self.popular_in(self.index);
                let cross = self.rng.gen_bool(self.cross_range_ratio);
                let receiver = if cross { self.foreign() } else { self.popular_in(self.index) };
                Command::Next { id, receiver, cross }
            })
            .collect()
    }

    /// One transaction: the batch's commands in this writer's range, then its cross-range
    /// transfers in a savepoint. Dropping the transaction on an error rolls it back.
    async fn batch(&mut self) -> Result<Done, Attempt> {
        let ts = now_micros();
        let commands = self.draw();
        let opens = commands.iter().filter(|c| matches!(c, Command::Open)).count();
        let mut ids: Vec<i64> = commands
            .iter()
            .flat_map(|c| match c {
                Command::Open => vec![],
                Command::Next { id, receiver, cross: false } => vec![*id, *receiver],
                Command::Next { id, .. } => vec![*id],
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();

        let mut t = self.client.transaction().await?;
        let (rows, mut new_ids) = futures::try_join!(
            async { t.query(&self.st.select, &[&ids]).await.map_err(Attempt::from) },
            next_values(&t, &self.st, "lab.aggregate_ids", opens)
        )?;
        new_ids.reverse();
        let mut states = states_from_rows(&rows)?;
        let loaded: HashMap<i64, i32> = states.iter().map(|(id, a)| (*id, a.version)).collect();

        let mut done = Done::default();
        let mut events = Vec::new();
        let mut opened = Vec::new();
        let mut crosses = Vec::new();
        for command in commands {
            match command {
                Command::Open => {
                    let id = new_ids.pop().ok_or_else(|| Error::Config("too few new aggregate ids".into()))?;
                    let mut account = AccountModel::unopened(id);
                    let currency = pick_currency(&mut self.rng);
                    push(&mut events, &mut self.rng, &mut account, Change::Opened { currency }, ts);
                    opened.push(account);
                }
                Command::Next { id, receiver, cross } => {
                    // A missing id was taken by an opening that has not committed (or rolled back).
                    let Some(mut account) = states.get(&id).copied() else { continue };
                    match account.choose(&mut self.rng, &self.mix) {
                        Action::Single(change) => push(&mut events, &mut self.rng, &mut account, change, ts),
                        Action::Transfer { cents } if cross => crosses.push(Cross { from: id, to: receiver, cents }),
                        Action::Transfer { cents } => {
                            let Some(mut to) = states.get(&receiver).copied() else { continue };
                            if receiver == id || !to.can_receive() {
                                continue;
                            }
                            transfer(&mut events, &mut self.rng, &mut account, &mut to, cents, ts);
                            states.insert(receiver, to);
                            done.transfers += 1;
                        }
                    }
                    states.insert(id, account);
                }
            }
        }
        let changed: Vec<AccountModel> =
            states.values().filter(|a| loaded.get(&a.aggregate_id) != Some(&a.version)).copied().collect();
        write(&t, &self.st, &events, &changed, &loaded, &opened, ts).await?;
        done.events = events.len() as u64;
        done.opened = opened.len() as u64;

        if !crosses.is_empty() {
            if !self.transfer_pause.is_zero() {
                tokio::time::sleep(self.transfer_pause).await;
            }
            // Wait briefly, never long, on another writer's row: no deadlock can last.
            t.batch_execute(CROSS_LOCK_TIMEOUT).await?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let sp = t.savepoint("cross_range").await?;
                match cross_range(&sp, &self.st, &mut self.rng, &crosses, ts).await {
                    Ok(cross) => {
                        sp.commit().await?;
                        done.events += cross.events;
                        done.transfers += cross.transfers;
                        done.cross_range_transfers += cross.transfers;
                        done.conflicts += cross.busy;
                        break;
                    }
                    Err(Attempt::Conflict) => {
                        sp.rollback().await?;
                        done.conflicts += 1;
                        if attempt >= CROSS_ATTEMPTS {
                            done.abandoned += 1;
                            break;
                        }
                        done.retries += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        t.commit().await?;
        if let Some(id) = opened.iter().map(|a| a.aggregate_id).max() {
            self.max_id.fetch_max(id, Ordering::Relaxed);
        }
        debug!(writer = self.index, events = done.events, "batch committed");
        Ok(done)
    }
}

/// The cross-range transfers of a batch, on states read now (after the batch's own
/// events took the transaction's id). Returns the events and transfers written.
async fn cross_range(
    t: &Transaction<'_>,
    st: &Statements,
    rng: &mut ChaCha8Rng,
    crosses: &[Cross],
    ts: i64,
) -> Result<CrossDone, Attempt> {
    let mut ids: Vec<i64> = crosses.iter().flat_map(|c| [c.from, c.to]).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = t.query(&st.select_cross, &[&ids]).await?;
    let mut states = states_from_rows(&rows)?;
    let loaded: HashMap<i64, i32> = states.iter().map(|(id, a)| (*id, a.version)).collect();
    let mut events = Vec::new();
    let (mut transfers, mut busy) = (0, 0);
    for c in crosses {
        let (Some(mut from), Some(mut to)) = (states.get(&c.from).copied(), states.get(&c.to).copied()) else {
            // Held by another writer's open transaction (or opened and not committed yet).
            busy += 1;
            continue;
        };
        if c.from == c.to || from.status != crate::bank::Status::Open || from.balance < c.cents || !to.can_receive() {
            continue;
        }
        transfer(&mut events, rng, &mut from, &mut to, c.cents, ts);
        states.insert(c.from, from);
        states.insert(c.to, to);
        transfers += 1;
    }
    let changed: Vec<AccountModel> =
        states.values().filter(|a| loaded.get(&a.aggregate_id) != Some(&a.version)).copied().collect();
    write(t, st, &events, &changed, &loaded, &[], ts).await?;
    Ok(CrossDone { events: events.len() as u64, transfers, busy })
}

/// Now, truncated to the microseconds PostgreSQL stores.
fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// `n` values of the sequence `sequence`, in increasing order.
async fn next_values(t: &Transaction<'_>, st: &Statements, sequence: &str, n: usize) -> Result<Vec<i64>, Attempt> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let row = t.query_one(&st.next_values, &[&sequence, &(n as i32)]).await?;
    let mut values: Vec<i64> = row.get(0);
    values.sort_unstable();
    Ok(values)
}

/// Computes `change` as the next version of `account` and applies it; the account's
/// `applied_seq` holds the event's index in `events` until [`write`] knows its `global_seq`.
fn push(events: &mut Vec<Pending>, rng: &mut ChaCha8Rng, account: &mut AccountModel, change: Change, ts: i64) {
    let currency = match change {
        Change::Opened { currency } => currency,
        _ => account.currency,
    };
    events.push(Pending {
        aggregate_id: account.aggregate_id,
        version: account.version + 1,
        event_type: change.event_type().as_str(),
        payload: render_payload(rng, account.aggregate_id, currency, &change, ts),
    });
    account.apply(&change, ts, events.len() as i64 - 1);
}

/// The two events of a transfer of `cents` from `from` to `to`, in one transaction.
fn transfer(
    events: &mut Vec<Pending>,
    rng: &mut ChaCha8Rng,
    from: &mut AccountModel,
    to: &mut AccountModel,
    cents: i64,
    ts: i64,
) {
    let transfer: u64 = rng.gen();
    push(events, rng, from, Change::TransferSent { cents, to: to.aggregate_id, transfer }, ts);
    push(events, rng, to, Change::TransferReceived { cents, from: from.aggregate_id, transfer }, ts);
}

/// Writes `events` (all stamped `ts_micros`), moves the `changed` expected rows from their `loaded` version, and inserts
/// the `opened` ones: three pipelined statements after one for the sequence values. A row that
/// moved since it was read is a conflict.
async fn write(
    t: &Transaction<'_>,
    st: &Statements,
    events: &[Pending],
    changed: &[AccountModel],
    loaded: &HashMap<i64, i32>,
    opened: &[AccountModel],
    ts_micros: i64,
) -> Result<(), Attempt> {
    if events.is_empty() {
        return Ok(());
    }
    let seqs = next_values(t, st, "log.events_global_seq_seq", events.len()).await?;
    let seq_of = |a: &AccountModel| seqs[a.applied_seq as usize];
    let ts = crate::model::micros_to_datetime(ts_micros);
    let n = events.len();
    let (ids, versions, types, payloads): (Vec<i64>, Vec<i32>, Vec<&str>, Vec<&str>) = events.iter().fold(
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n)),
        |(mut i, mut v, mut ty, mut p), e| {
            i.push(e.aggregate_id);
            v.push(e.version);
            ty.push(e.event_type);
            p.push(e.payload.as_str());
            (i, v, ty, p)
        },
    );
    let tss = vec![ts; n];
    let insert_events =
        async { t.execute(&st.insert_events, &[&seqs, &ids, &versions, &types, &tss, &payloads]).await };

    let col = |f: &dyn Fn(&AccountModel) -> i64, of: &[AccountModel]| of.iter().map(f).collect::<Vec<i64>>();
    let statuses: Vec<&str> = changed.iter().map(|a| a.status.as_str()).collect();
    let balances = col(&|a| a.balance, changed);
    let deposits = col(&|a| a.lifetime_deposits, changed);
    let last: Vec<DateTime<Utc>> = changed.iter().map(|a| a.last_activity_at()).collect();
    let new_versions: Vec<i32> = changed.iter().map(|a| a.version).collect();
    let applied: Vec<i64> = changed.iter().map(seq_of).collect();
    let bugs: Vec<bool> = changed.iter().map(|a| a.v3_bug).collect();
    let before: Vec<i32> = changed.iter().map(|a| loaded[&a.aggregate_id]).collect();
    let changed_ids = col(&|a| a.aggregate_id, changed);
    let update = async {
        if changed.is_empty() {
            return Ok(0);
        }
        t.execute(
            &st.update,
            &[&changed_ids, &statuses, &balances, &deposits, &last, &new_versions, &applied, &bugs, &before],
        )
        .await
    };

    let open_ids = col(&|a| a.aggregate_id, opened);
    let owners: Vec<String> = opened.iter().map(|a| owner_of(a.aggregate_id)).collect();
    let currencies: Vec<&str> = opened.iter().map(|a| a.currency_code()).collect();
    let open_status: Vec<&str> = opened.iter().map(|a| a.status.as_str()).collect();
    let open_balances = col(&|a| a.balance, opened);
    let open_deposits = col(&|a| a.lifetime_deposits, opened);
    let open_last: Vec<DateTime<Utc>> = opened.iter().map(|a| a.last_activity_at()).collect();
    let open_versions: Vec<i32> = opened.iter().map(|a| a.version).collect();
    let open_applied: Vec<i64> = opened.iter().map(seq_of).collect();
    let open_bugs: Vec<bool> = opened.iter().map(|a| a.v3_bug).collect();
    let insert_expected = async {
        if opened.is_empty() {
            return Ok(0);
        }
        t.execute(
            &st.insert_expected,
            &[
                &open_ids,
                &owners,
                &currencies,
                &open_status,
                &open_balances,
                &open_deposits,
                &open_last,
                &open_versions,
                &open_applied,
                &open_bugs,
            ],
        )
        .await
    };
    // The update goes first: it locks the rows before the log's unique entries are taken.
    let (updated, _, _) = futures::try_join!(update, insert_events, insert_expected)?;
    if updated as usize == changed.len() {
        Ok(())
    } else {
        Err(Attempt::Conflict)
    }
}

/// Expected states by aggregate id.
fn states_from_rows(rows: &[Row]) -> Result<HashMap<i64, AccountModel>, Attempt> {
    rows.iter().map(|r| account_from_row(r).map(|a| (a.aggregate_id, a))).collect()
}

fn account_from_row(r: &Row) -> Result<AccountModel, Attempt> {
    let bad = |what: String| Attempt::Failed(Error::Config(format!("lab.expected_accounts: {what}")));
    let currency: &str = r.get(1);
    let status: &str = r.get(2);
    let last: DateTime<Utc> = r.get(5);
    Ok(AccountModel {
        aggregate_id: r.get(0),
        currency: CURRENCIES.iter().position(|c| *c == currency).ok_or_else(|| bad(format!("currency {currency}")))?
            as u8,
        status: crate::bank::Status::parse(status).ok_or_else(|| bad(format!("status {status}")))?,
        balance: r.get(3),
        lifetime_deposits: r.get(4),
        last_activity_micros: last.timestamp_micros(),
        version: r.get(6),
        applied_seq: r.get(7),
        v3_bug: r.get(8),
    })
}
