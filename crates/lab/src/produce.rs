//! The live producer: concurrent writers that keep appending to the seeded log at a steady
//! rate, with optimistic concurrency, and keep `lab.expected_accounts` true in the same
//! transaction as every append.
//!
//! A writer reads an aggregate's state from `lab.expected_accounts` without a lock, chooses
//! the next event with the shared [`crate::model`] rules, appends version n+1 and moves the
//! expected row from version n to n+1 with a guarded UPDATE. Losing a race (no row updated, a
//! unique violation on the log, a deadlock between two transfers) rolls the transaction back
//! and the writer tries another aggregate.
//!
//! A transfer writes two aggregates in one transaction, and it reads the receiver's state only
//! after the sender's event is in and a short pause: the transaction's id is then older than
//! that of any writer that committed the receiver's previous version meanwhile, so in
//! `(tx_id, global_seq)` order the receiver's version n+1 can come before its version n.
//! Projectors must hold it until version n arrives.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eventlog::NewEvent;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement, Transaction};
use tracing::info;

use crate::model::{owner_of, pick_currency, render_payload, AccountModel, Action, Change, Mix, CURRENCIES};
use crate::{Error, Result};

const SELECT_EXPECTED: &str = "SELECT aggregate_id, currency, status, balance, lifetime_deposits, last_activity_at, \
     aggregate_version, applied_seq, v3_bug FROM lab.expected_accounts WHERE aggregate_id = $1";
const UPDATE_EXPECTED: &str = "UPDATE lab.expected_accounts SET status = $2, balance = $3, lifetime_deposits = $4, \
     last_activity_at = $5, aggregate_version = $6, applied_seq = $7, v3_bug = $8 \
     WHERE aggregate_id = $1 AND aggregate_version = $9";
const INSERT_EXPECTED: &str = "INSERT INTO lab.expected_accounts (aggregate_id, owner, currency, status, balance, \
     lifetime_deposits, last_activity_at, aggregate_version, applied_seq, v3_bug) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Conflicting attempts in a row after which a writer gives up.
const MAX_ATTEMPTS: u32 = 100;

/// How to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    /// Target events per second across all writers; 0 or less means as fast as possible.
    pub rate: f64,
    /// Concurrent writer connections.
    pub writers: u32,
    /// Stop after this long (else only on the stop signal).
    pub duration: Option<Duration>,
    pub seed: u64,
    /// Share of an open account's actions that are transfers (two aggregates, one transaction).
    pub transfer_ratio: f64,
    /// Share of transactions that open a new aggregate.
    pub new_aggregate_ratio: f64,
    /// Zipf exponent of aggregate popularity.
    pub zipf: f64,
    /// Time a transfer spends between writing the sender and reading the receiver (a fraud
    /// check, say). It widens the window in which the receiver's next version can commit
    /// with a newer transaction id than the transfer's, so projectors meet that case often.
    pub transfer_pause: Duration,
}

impl ProduceConfig {
    /// A config with the defaults: 4 writers, transfers 5%, new aggregates 2%, Zipf 1.1, a
    /// 2 ms pause inside transfers.
    pub fn new(rate: f64, duration: Option<Duration>, seed: u64) -> ProduceConfig {
        ProduceConfig {
            rate,
            writers: 4,
            duration,
            seed,
            transfer_ratio: 0.05,
            new_aggregate_ratio: 0.02,
            zipf: 1.1,
            transfer_pause: Duration::from_millis(2),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.writers == 0 {
            return Err(Error::Config("writers must be at least 1".into()));
        }
        for (name, v) in [("transfer_ratio", self.transfer_ratio), ("new_aggregate_ratio", self.new_aggregate_ratio)] {
            if !(0.0..=0.9).contains(&v) {
                return Err(Error::Config(format!("{name} must be within 0..=0.9, got {v}")));
            }
        }
        if !(self.zipf.is_finite() && self.zipf > 0.0) {
            return Err(Error::Config(format!("zipf exponent must be positive, got {}", self.zipf)));
        }
        if self.rate.is_nan() {
            return Err(Error::Config("rate must be a number".into()));
        }
        Ok(())
    }
}

/// What a producer run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProduceReport {
    pub events: u64,
    /// Committed transactions.
    pub transactions: u64,
    /// Committed transfers (two-aggregate transactions).
    pub transfers: u64,
    pub new_aggregates: u64,
    /// Attempts rolled back on a conflict and retried.
    pub retries: u64,
    pub seconds: f64,
    pub events_per_s: f64,
}

impl ProduceReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "produced {} events in {} transactions ({} transfers, {} new aggregates, {} retries) in {:.1}s: {:.0} events/s",
            self.events,
            self.transactions,
            self.transfers,
            self.new_aggregates,
            self.retries,
            self.seconds,
            self.events_per_s
        )
    }

    fn add(&mut self, other: &ProduceReport) {
        self.events += other.events;
        self.transactions += other.transactions;
        self.transfers += other.transfers;
        self.new_aggregates += other.new_aggregates;
        self.retries += other.retries;
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

    info!(rate = cfg.rate, writers = cfg.writers, "producer starting");
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..cfg.writers {
        let writer = Writer::connect(url, &cfg, w, max_id.clone()).await?;
        tasks.spawn(writer.run(cfg.clone(), deadline, stop.clone()));
    }
    let mut report = ProduceReport::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(part)) => report.add(&part),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::Config(format!("writer task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_s = report.events as f64 / report.seconds.max(1e-9);
    info!(events = report.events, retries = report.retries, events_per_s = report.events_per_s, "producer stopped");
    Ok(report)
}

/// Why one attempt did not commit.
enum Attempt {
    /// Lost a race or picked an unusable aggregate: roll back, try another.
    Conflict,
    Failed(Error),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Self {
        let retryable =
            [SqlState::UNIQUE_VIOLATION, SqlState::T_R_DEADLOCK_DETECTED, SqlState::T_R_SERIALIZATION_FAILURE];
        match e.code() {
            Some(code) if retryable.contains(code) => Attempt::Conflict,
            _ => Attempt::Failed(Error::Db(e)),
        }
    }
}

/// What one committed transaction wrote.
struct Committed {
    events: u64,
    transfer: bool,
    opened: bool,
}

/// One writer connection and its random stream.
struct Writer {
    client: Client,
    /// The expected-state statements, prepared once.
    select: Statement,
    update: Statement,
    insert: Statement,
    rng: ChaCha8Rng,
    zipf: Zipf<f64>,
    mix: Mix,
    new_aggregate_ratio: f64,
    transfer_pause: Duration,
    max_id: Arc<AtomicI64>,
}

impl Writer {
    async fn connect(url: &str, cfg: &ProduceConfig, index: u32, max_id: Arc<AtomicI64>) -> Result<Writer> {
        let client = eventlog::connect(url).await?;
        let (select, update, insert) = (
            client.prepare(SELECT_EXPECTED).await?,
            client.prepare(UPDATE_EXPECTED).await?,
            client.prepare(INSERT_EXPECTED).await?,
        );
        // Ranks range past today's ids so aggregates opened while producing are drawn too.
        let n = (max_id.load(Ordering::Relaxed).max(1) as u64) * 2 + 1_000;
        let zipf = Zipf::new(n, cfg.zipf).map_err(|e| Error::Config(format!("zipf: {e}")))?;
        let seed = cfg.seed ^ (u64::from(index) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Ok(Writer {
            client,
            select,
            update,
            insert,
            rng: ChaCha8Rng::seed_from_u64(seed),
            zipf,
            mix: Mix::GENERATOR.with_transfer_ratio(cfg.transfer_ratio),
            new_aggregate_ratio: cfg.new_aggregate_ratio,
            transfer_pause: cfg.transfer_pause,
            max_id,
        })
    }

    async fn run(
        mut self,
        cfg: ProduceConfig,
        deadline: Option<tokio::time::Instant>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ProduceReport> {
        let mut report = ProduceReport::default();
        // Steady pacing: the k-th event of this writer is due at start + k * period.
        let period = (cfg.rate > 0.0 && cfg.rate.is_finite())
            .then(|| Duration::from_secs_f64(f64::from(cfg.writers) / cfg.rate));
        let start = tokio::time::Instant::now();
        loop {
            if *stop.borrow() || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            if let Some(period) = period {
                let due = start + period.mul_f64(report.events as f64);
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
            let mut attempts = 0;
            let committed = loop {
                match self.attempt().await {
                    Ok(c) => break c,
                    Err(Attempt::Conflict) => {
                        attempts += 1;
                        report.retries += 1;
                        if attempts >= MAX_ATTEMPTS {
                            return Err(Error::TooManyConflicts { attempts });
                        }
                    }
                    Err(Attempt::Failed(e)) => return Err(e),
                }
            };
            report.events += committed.events;
            report.transactions += 1;
            report.transfers += u64::from(committed.transfer);
            report.new_aggregates += u64::from(committed.opened);
        }
        Ok(report)
    }

    /// A Zipf-popular existing aggregate id.
    fn popular(&mut self) -> i64 {
        let max = self.max_id.load(Ordering::Relaxed).max(1) as u64;
        let rank = self.zipf.sample(&mut self.rng) as u64;
        (((rank.max(1) - 1) % max) + 1) as i64
    }

    /// One transaction: a new aggregate, or the next event of an existing one (or two, for a
    /// transfer). Dropping the transaction on an error rolls it back.
    async fn attempt(&mut self) -> Result<Committed, Attempt> {
        let now = now_micros();
        if self.rng.gen_bool(self.new_aggregate_ratio) {
            let t = self.client.transaction().await?;
            let id: i64 = t.query_one("SELECT nextval('lab.aggregate_ids')", &[]).await?.get(0);
            let currency = pick_currency(&mut self.rng);
            let mut account = AccountModel::unopened(id);
            let change = Change::Opened { currency };
            let seq = append(&t, &mut self.rng, &account, &change, now).await?;
            account.apply(&change, now, seq);
            t.execute(
                &self.insert,
                &[
                    &id,
                    &owner_of(id),
                    &account.currency_code(),
                    &account.status.as_str(),
                    &account.balance,
                    &account.lifetime_deposits,
                    &account.last_activity_at(),
                    &account.version,
                    &account.applied_seq,
                    &account.v3_bug,
                ],
            )
            .await?;
            t.commit().await?;
            self.max_id.fetch_max(id, Ordering::Relaxed);
            return Ok(Committed { events: 1, transfer: false, opened: true });
        }
        let id = self.popular();
        let receiver_id = self.popular();
        let t = self.client.transaction().await?;
        let Some(mut account) = load(&t, &self.select, id).await? else {
            // An id whose opening rolled back after taking its sequence value.
            return Err(Attempt::Conflict);
        };
        let action = account.choose(&mut self.rng, &self.mix);
        let transfer = match action {
            Action::Single(change) => {
                let seq = append(&t, &mut self.rng, &account, &change, now).await?;
                let before = account.version;
                account.apply(&change, now, seq);
                update(&t, &self.update, &account, before).await?;
                false
            }
            Action::Transfer { cents } => {
                if receiver_id == id {
                    return Err(Attempt::Conflict);
                }
                let transfer: u64 = self.rng.gen();
                let sent = Change::TransferSent { cents, to: receiver_id, transfer };
                let seq = append(&t, &mut self.rng, &account, &sent, now).await?;
                let before = account.version;
                account.apply(&sent, now, seq);
                update(&t, &self.update, &account, before).await?;
                if !self.transfer_pause.is_zero() {
                    tokio::time::sleep(self.transfer_pause).await;
                }
                // Read the receiver only now, well after this transaction took its id (see
                // the module docs): this is what lets version n+1 precede version n in the log.
                let Some(mut receiver) = load(&t, &self.select, receiver_id).await? else {
                    return Err(Attempt::Conflict);
                };
                if !receiver.can_receive() {
                    return Err(Attempt::Conflict);
                }
                let received = Change::TransferReceived { cents, from: id, transfer };
                let seq = append(&t, &mut self.rng, &receiver, &received, now).await?;
                let receiver_before = receiver.version;
                receiver.apply(&received, now, seq);
                update(&t, &self.update, &receiver, receiver_before).await?;
                true
            }
        };
        t.commit().await?;
        Ok(Committed { events: if transfer { 2 } else { 1 }, transfer, opened: false })
    }
}

/// Now, truncated to the microseconds PostgreSQL stores.
fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Appends `change` as the next version of `account`; returns its `global_seq`.
async fn append(
    t: &Transaction<'_>,
    rng: &mut ChaCha8Rng,
    account: &AccountModel,
    change: &Change,
    ts_micros: i64,
) -> Result<i64, Attempt> {
    let currency = match change {
        Change::Opened { currency } => *currency,
        _ => account.currency,
    };
    let event = NewEvent {
        aggregate_id: account.aggregate_id,
        version: account.version + 1,
        event_type: change.event_type().as_str().to_owned(),
        ts: crate::model::micros_to_datetime(ts_micros),
        payload: render_payload(rng, account.aggregate_id, currency, change, ts_micros),
    };
    Ok(eventlog::append_event(t, &event).await?)
}

/// The expected state of `id`, if it exists.
async fn load(t: &Transaction<'_>, select: &Statement, id: i64) -> Result<Option<AccountModel>, Attempt> {
    let row = t.query_opt(select, &[&id]).await?;
    row.map(|r| account_from_row(&r)).transpose()
}

fn account_from_row(r: &Row) -> Result<AccountModel, Attempt> {
    let bad = |what: String| Attempt::Failed(Error::Config(format!("lab.expected_accounts: {what}")));
    let currency: &str = r.get(1);
    let status: &str = r.get(2);
    let last: chrono::DateTime<Utc> = r.get(5);
    Ok(AccountModel {
        aggregate_id: r.get(0),
        currency: CURRENCIES.iter().position(|c| *c == currency).ok_or_else(|| bad(format!("currency {currency}")))?
            as u8,
        status: fold::Status::parse(status).ok_or_else(|| bad(format!("status {status}")))?,
        balance: r.get(3),
        lifetime_deposits: r.get(4),
        last_activity_micros: last.timestamp_micros(),
        version: r.get(6),
        applied_seq: r.get(7),
        v3_bug: r.get(8),
    })
}

/// Moves the expected row of `account` from version `before` to its current version; a lost
/// race (the row moved meanwhile) is a conflict.
async fn update(t: &Transaction<'_>, stmt: &Statement, account: &AccountModel, before: i32) -> Result<(), Attempt> {
    let n = t
        .execute(
            stmt,
            &[
                &account.aggregate_id,
                &account.status.as_str(),
                &account.balance,
                &account.lifetime_deposits,
                &account.last_activity_at(),
                &account.version,
                &account.applied_seq,
                &account.v3_bug,
                &before,
            ],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(Attempt::Conflict)
    }
}
