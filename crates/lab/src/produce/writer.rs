//! One writer: its connection, the range of aggregates it owns, its pacing, and its batches,
//! each one transaction (the cross-range part in a savepoint).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::debug;

use super::cross::{cross_range, Cross, CROSS_ATTEMPTS, CROSS_LOCK_TIMEOUT};
use super::sampler::Counters;
use super::sql::{
    next_values, states_from_rows, write, Attempt, Statements, INSERT_EVENTS, INSERT_EXPECTED, NEXT_VALUES,
    SELECT_CROSS, SELECT_STATES, UPDATE_EXPECTED,
};
use super::ProduceConfig;
use crate::model::{pick_currency, render_payload, AccountModel, Action, Change, Mix};
use crate::{Error, Result};

/// Conflicting attempts of one batch in a row after which a writer gives up.
const MAX_ATTEMPTS: u32 = 100;

/// What one committed transaction wrote (and what its cross-range part lost on the way).
#[derive(Debug, Default)]
pub(super) struct Done {
    pub(super) events: u64,
    pub(super) transfers: u64,
    pub(super) cross_range_transfers: u64,
    pub(super) opened: u64,
    pub(super) conflicts: u64,
    pub(super) retries: u64,
    pub(super) abandoned: u64,
}

/// A writer's connection, named `name`, and its prepared statements.
async fn open(url: &str, name: &str) -> Result<(Client, Statements)> {
    let client = eventlog::connect_as(url, name).await?;
    let (select, select_cross, insert_events, update, insert_expected, next_values) = futures::try_join!(
        client.prepare(SELECT_STATES),
        client.prepare(SELECT_CROSS),
        client.prepare(INSERT_EVENTS),
        client.prepare(UPDATE_EXPECTED),
        client.prepare(INSERT_EXPECTED),
        client.prepare(NEXT_VALUES),
    )?;
    Ok((client, Statements { select, select_cross, insert_events, update, insert_expected, next_values }))
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
pub(super) struct Pending {
    pub(super) aggregate_id: i64,
    pub(super) version: i32,
    pub(super) event_type: &'static str,
    pub(super) payload: String,
}

/// One writer connection, the range of aggregates it owns, and its random stream.
pub(super) struct Writer {
    client: Client,
    st: Statements,
    /// Where and as whom to reconnect after a lost connection, and the outage so far.
    url: String,
    name: String,
    retry: eventlog::Reconnect,
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
    pub(super) async fn connect(
        url: &str,
        cfg: &ProduceConfig,
        index: u32,
        max_id: Arc<AtomicI64>,
        counters: Arc<Counters>,
    ) -> Result<Writer> {
        let name = format!("reproject producer writer {index}");
        let (client, st) = open(url, &name).await?;
        // Ranks range past today's ids so aggregates opened while producing are drawn too.
        let n = ((max_id.load(Ordering::Relaxed).max(1) as u64) * 2 + 1_000) / u64::from(cfg.writers) + 1;
        let zipf = Zipf::new(n, cfg.zipf).map_err(|e| Error::Config(format!("zipf: {e}")))?;
        let seed = cfg.seed ^ (u64::from(index) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Ok(Writer {
            client,
            st,
            url: url.to_owned(),
            name,
            retry: eventlog::Reconnect::new("producer", cfg.max_outage),
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

    pub(super) async fn run(
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
                    Ok(done) => {
                        self.retry.recovered();
                        break done;
                    }
                    Err(Attempt::Conflict) => {
                        attempts += 1;
                        self.counters.conflict(attempts < MAX_ATTEMPTS);
                        if attempts >= MAX_ATTEMPTS {
                            return Err(Error::TooManyConflicts { attempts });
                        }
                    }
                    Err(Attempt::Failed(e)) if eventlog::is_transient(&e) => self.reconnect(&e).await?,
                    Err(Attempt::Failed(e)) => return Err(e),
                }
            };
            events += done.events;
            self.counters.committed(&done);
        }
        Ok(())
    }

    /// Replaces a lost connection: waits out the backoff and reconnects until it works or the
    /// outage outlasts `max_outage`. The batch in flight needs no special care: its events and
    /// the expected state commit in one transaction, all or nothing, and the next batch reads
    /// the states afresh.
    async fn reconnect(&mut self, err: &Error) -> Result<()> {
        let mut reason = eventlog::reconnect::reason(err);
        loop {
            self.retry.wait(&reason).await.map_err(eventlog::Error::from)?;
            match open(&self.url, &self.name).await {
                Ok((client, st)) => {
                    self.client = client;
                    self.st = st;
                    return Ok(());
                }
                Err(e) if eventlog::is_transient(&e) => reason = eventlog::reconnect::reason(&e),
                Err(e) => return Err(e),
            }
        }
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

/// Now, truncated to the microseconds PostgreSQL stores.
fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Computes `change` as the next version of `account` and applies it; the account's
/// `applied_seq` holds the event's index in `events` until [`write`] knows its `global_seq`.
pub(super) fn push(
    events: &mut Vec<Pending>,
    rng: &mut ChaCha8Rng,
    account: &mut AccountModel,
    change: Change,
    ts: i64,
) {
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
pub(super) fn transfer(
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
