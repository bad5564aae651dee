//! The tail path: read every partition after its position and below the gap-safe boundary,
//! fold a batch per aggregate through the version guard, commit rows + positions + held
//! events in one transaction. The live projector is this loop; the replay's catch-up reuses it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use eventlog::{Position, RawEvent};
use fold::{AggregateId, Guarded, Offer, Projection};
use readmodel::{DeadLetter, State, TailBatch};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::error::{BadEvent, Error};
use crate::locks::lock_version;
use crate::source::{PgLog, Read, Source};
use crate::{metric, Result};

/// One aggregate's share of a batch: its partition, its raw events by version (for held-event
/// persistence and dead letters), and the decoded events in read order.
type AggregateBatch<E> = (u32, BTreeMap<i32, RawEvent>, Vec<fold::Decoded<E>>);

/// What one step of the tailer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOutcome {
    /// Events read from the log in this step.
    pub read: usize,
    /// Events applied (including held events released by this step).
    pub applied: usize,
    /// The boundary (xid) read below.
    pub boundary: i64,
    /// Every partition has consumed everything below `boundary`.
    pub drained: bool,
}

/// How a [`Tailer`] reads: batch size, where to stop, what to do with bad events, and an
/// overlap to re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailOptions {
    /// Events per committed batch, at most (at least 1).
    pub batch: usize,
    /// Read only transactions below this xid.
    pub until: Option<i64>,
    /// Dead-letter bad events and quarantine their aggregate instead of failing.
    pub quarantine: bool,
    /// Move every partition's read position back to this boundary (an overlap re-read: the
    /// guard turns it into no-ops, and stored positions never move backwards).
    pub from_offset: Option<i64>,
}

impl TailOptions {
    /// `batch` events per batch, no bound, no quarantine, no overlap.
    pub fn batch(batch: usize) -> TailOptions {
        TailOptions { batch, until: None, quarantine: false, from_offset: None }
    }
}

/// A tailer of one projection version over a [`Source`] (the Postgres log unless given
/// another). Holds the positions and held events it has committed.
pub struct Tailer<P: Projection, S: Source = PgLog> {
    projection: P,
    source: S,
    positions: Vec<Position>,
    held: HashMap<AggregateId, Vec<(u32, RawEvent)>>,
    batch: usize,
    quarantine: bool,
    limiter: Option<std::sync::Arc<crate::RateLimiter>>,
    /// When a step last found every partition drained below its boundary: the live lag in
    /// seconds is the time since then.
    caught_up_at: Instant,
}

impl<P: Projection> Tailer<P> {
    /// A tailer of the Postgres log: loads the version's committed positions and held events
    /// (see [`TailOptions`]).
    pub async fn open(client: &Client, projection: P, options: TailOptions) -> Result<Tailer<P>> {
        let source = PgLog::open(client, options.until).await?;
        Tailer::open_on(client, projection, options, source).await
    }

    /// Whether every partition is at or past `boundary` (an xid of the Postgres log).
    pub fn reached(&self, boundary: i64) -> bool {
        self.positions.iter().all(|p| *p >= Position::boundary(boundary))
    }
}

impl<P: Projection, S: Source> Tailer<P, S> {
    /// A tailer of `source` (its `until` is the source's business: `options.until` is not read
    /// here): loads the version's committed positions and held events, and starts the source
    /// at those positions (moved back to `options.from_offset` for an overlap re-read).
    pub async fn open_on(client: &Client, projection: P, options: TailOptions, mut source: S) -> Result<Tailer<P, S>> {
        let TailOptions { batch, until: _, quarantine, from_offset } = options;
        let mut positions = readmodel::offsets(client, projection.name()).await?;
        if positions.len() != source.partitions() as usize {
            return Err(Error::Config(format!(
                "version {} has positions for {} partitions but the log has {}",
                projection.name(),
                positions.len(),
                source.partitions()
            )));
        }
        if let Some(from) = from_offset {
            for p in positions.iter_mut() {
                *p = (*p).min(Position::boundary(from));
            }
        }
        source.start(&positions).await?;
        let mut held: HashMap<AggregateId, Vec<(u32, RawEvent)>> = HashMap::new();
        for (p, e) in readmodel::held_events(client, projection.name()).await? {
            held.entry(e.aggregate_id.clone()).or_default().push((p, e));
        }
        Ok(Tailer {
            projection,
            source,
            positions,
            held,
            batch: batch.max(1),
            quarantine,
            limiter: None,
            caught_up_at: Instant::now(),
        })
    }

    /// Caps the events per second this tailer reads (backpressure for catch-up).
    pub fn with_rate_limit(mut self, limiter: Option<std::sync::Arc<crate::RateLimiter>>) -> Tailer<P, S> {
        self.limiter = limiter;
        self
    }

    /// The positions committed so far.
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// Events currently held behind a version gap.
    pub fn held_count(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    /// Whether every partition is at or past its position in `head` (from [`Tailer::head`]).
    pub fn reached_head(&self, head: &[Position]) -> bool {
        self.positions.iter().zip(head).all(|(p, h)| p >= h)
    }

    /// The source's head now (see [`Source::head`]).
    pub async fn head(&mut self, client: &Client) -> Result<Vec<Position>> {
        self.source.head(client).await
    }

    /// Events between the committed positions and the source's head.
    pub async fn lag(&mut self, client: &Client) -> Result<u64> {
        let positions = self.positions.clone();
        self.source.lag(client, &positions).await
    }

    /// Reads, folds and commits one batch.
    pub async fn step(&mut self, client: &mut Client) -> Result<StepOutcome> {
        let step_started = Instant::now();
        let Read { events, positions: new_positions, drained, boundary } =
            self.source.read(client, &self.positions, self.batch).await?;
        if events.is_empty() && new_positions == self.positions {
            self.record_lag(drained);
            return Ok(StepOutcome { read: 0, applied: 0, boundary, drained });
        }
        let read = events.len();
        if let Some(limiter) = &self.limiter {
            limiter.acquire(read as u64).await;
        }
        let bytes: usize = events.iter().map(|(_, e)| e.wire_bytes()).sum();
        let started = Instant::now();
        let read_seconds = step_started.elapsed().as_secs_f64();
        let (batch, held, applied) = self.fold_batch(client, events, &new_positions).await?;
        let fold_seconds = started.elapsed().as_secs_f64();
        readmodel::commit_tail_batch(client, &batch).await?;
        tracing::debug!(
            read,
            rows = batch.rows.len(),
            read_seconds,
            fold_seconds,
            commit_seconds = started.elapsed().as_secs_f64() - fold_seconds,
            "batch committed"
        );
        let version = self.projection.name();
        metrics::histogram!(metric::WRITE_SECONDS, "version" => version, "phase" => "tail")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!(metric::BATCH_EVENTS, "version" => version).record(read as f64);
        metrics::counter!(metric::EVENTS_READ, "version" => version, "phase" => "tail").increment(read as u64);
        metrics::counter!(metric::BYTES_READ, "version" => version, "phase" => "tail").increment(bytes as u64);
        metrics::counter!(metric::EVENTS_APPLIED, "version" => version, "phase" => "tail").increment(applied as u64);
        metrics::counter!(metric::DEAD_LETTERS, "version" => version).increment(batch.dead_letters.len() as u64);
        self.positions = new_positions;
        self.held = held;
        metrics::gauge!(metric::HELD_EVENTS, "version" => version).set(self.held_count() as f64);
        self.record_lag(drained);
        Ok(StepOutcome { read, applied, boundary, drained })
    }

    /// Sets the lag-in-seconds gauge after a step: 0 when the step drained every partition
    /// below its boundary, else the time since a step last did.
    fn record_lag(&mut self, drained: bool) {
        if drained {
            self.caught_up_at = Instant::now();
        }
        metrics::gauge!(metric::LAG_SECONDS, "version" => self.projection.name())
            .set(self.caught_up_at.elapsed().as_secs_f64());
    }

    /// Folds the events of one batch onto the stored rows of their aggregates.
    async fn fold_batch(
        &self,
        client: &Client,
        events: Vec<(u32, RawEvent)>,
        new_positions: &[Position],
    ) -> Result<(TailBatch<P>, HashMap<AggregateId, Vec<(u32, RawEvent)>>, usize)> {
        let projection = &self.projection;
        let mut dead_letters = Vec::new();
        let by_aggregate = self.decode_by_aggregate(events, &mut dead_letters)?;
        let ids: Vec<AggregateId> = by_aggregate.keys().cloned().collect();
        let mut stored = readmodel::load_rows(client, projection, &ids).await?;
        // Aggregates with no row may have a mark: only events of types the projection skips.
        let rowless: Vec<AggregateId> = ids.iter().filter(|id| !stored.contains_key(*id)).cloned().collect();
        let mut marks_before = readmodel::load_marks(client, projection.name(), &rowless).await?;
        let mut held = self.held.clone();
        let mut held_changed = false;
        let mut rows = Vec::new();
        let (mut marks, mut unmarked) = (Vec::new(), Vec::new());
        let mut applied_by_partition: HashMap<u32, i64> = HashMap::new();
        let mut applied_total = 0usize;
        for (aggregate_id, batch) in by_aggregate {
            let p = batch.0;
            let before = stored.remove(&aggregate_id);
            let mark_before = marks_before.remove(&aggregate_id);
            let previously_held = held.remove(&aggregate_id).unwrap_or_default();
            let folded = self.fold_aggregate(
                &aggregate_id,
                before.clone(),
                mark_before.clone(),
                &previously_held,
                batch,
                &mut dead_letters,
            )?;
            match (&folded.row, folded.mark) {
                (Some(_), _) if mark_before.is_some() => unmarked.push(aggregate_id.clone()),
                (None, Some(mark)) if Some(&mark) != mark_before.as_ref() => marks.push((p, mark)),
                _ => {}
            }
            applied_total += folded.applied;
            if folded.applied > 0 {
                *applied_by_partition.entry(p).or_default() += folded.applied as i64;
            }
            let mut before_seqs: Vec<i64> = previously_held.iter().map(|(_, r)| r.global_seq).collect();
            let mut after_seqs: Vec<i64> = folded.held.iter().map(|(_, r)| r.global_seq).collect();
            before_seqs.sort_unstable();
            after_seqs.sort_unstable();
            held_changed |= before_seqs != after_seqs;
            if !folded.held.is_empty() {
                held.insert(aggregate_id, folded.held);
            }
            if folded.row != before {
                rows.extend(folded.row);
            }
        }
        let offsets = new_positions
            .iter()
            .enumerate()
            .filter(|(p, pos)| **pos != self.positions[*p] || applied_by_partition.contains_key(&(*p as u32)))
            .map(|(p, pos)| (p as u32, *pos, applied_by_partition.get(&(p as u32)).copied().unwrap_or(0)))
            .collect();
        let held_rows = held_changed.then(|| held.values().flatten().cloned().collect());
        let batch =
            TailBatch { projection: projection.clone(), rows, offsets, held: held_rows, dead_letters, marks, unmarked };
        Ok((batch, held, applied_total))
    }

    /// Decodes a batch's events and groups them by aggregate (in read order); an event that
    /// does not decode is an error, or with quarantine a dead letter.
    fn decode_by_aggregate(
        &self,
        events: Vec<(u32, RawEvent)>,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<BTreeMap<AggregateId, AggregateBatch<P::Event>>> {
        let mut by_aggregate: BTreeMap<AggregateId, AggregateBatch<P::Event>> = BTreeMap::new();
        for (p, raw) in events {
            match raw.decode(&self.projection) {
                Ok(event) => {
                    if event.body.is_none() {
                        crate::count_skipped(self.projection.name(), &raw.event_type, "tail");
                    }
                    let entry = by_aggregate
                        .entry(raw.aggregate_id.clone())
                        .or_insert_with(|| (p, BTreeMap::new(), Vec::new()));
                    entry.2.push(event);
                    entry.1.insert(raw.version, raw);
                }
                Err(e) => self.refuse(p, raw, e.to_string(), dead_letters)?,
            }
        }
        Ok(by_aggregate)
    }

    /// Folds one aggregate's held and new events on top of its stored row.
    fn fold_aggregate(
        &self,
        aggregate_id: &AggregateId,
        before: Option<fold::Row<P::State>>,
        mark: Option<fold::Mark>,
        previously_held: &[(u32, RawEvent)],
        (p, mut raws, new_events): AggregateBatch<P::Event>,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<FoldedAggregate<P::State>> {
        let mut guarded = Guarded::<P>::resume(before, mark);
        let mut offered: Vec<fold::Decoded<P::Event>> = Vec::with_capacity(previously_held.len() + new_events.len());
        for (_, raw) in previously_held {
            offered.push(raw.decode(&self.projection).map_err(|e| BadEvent {
                partition: p,
                global_seq: raw.global_seq,
                aggregate_id: aggregate_id.clone(),
                version: raw.version,
                reason: e.to_string(),
            })?);
            raws.entry(raw.version).or_insert_with(|| raw.clone());
        }
        offered.extend(new_events);
        let mut applied = 0;
        for event in offered {
            match guarded.offer(&self.projection, event) {
                Ok(Offer::Applied(n)) => applied += n,
                Ok(Offer::Duplicate | Offer::Held) => {}
                Err(e) => {
                    let raw =
                        raws.get(&e.aggregate_version).cloned().expect("a failing event was offered from this batch");
                    self.refuse(p, raw, e.to_string(), dead_letters)?;
                }
            }
        }
        let held = guarded.pending.keys().filter_map(|v| raws.get(v).map(|r| (p, r.clone()))).collect();
        Ok(FoldedAggregate { row: guarded.row, mark: guarded.mark, held, applied })
    }

    /// An event that cannot be folded: the error, or with quarantine a dead letter (and a
    /// warning) while the batch goes on.
    fn refuse(&self, partition: u32, raw: RawEvent, reason: String, dead_letters: &mut Vec<DeadLetter>) -> Result<()> {
        let bad = BadEvent {
            partition,
            global_seq: raw.global_seq,
            aggregate_id: raw.aggregate_id.clone(),
            version: raw.version,
            reason: reason.clone(),
        };
        if !self.quarantine {
            return Err(bad.into());
        }
        warn!(%bad, "event dead-lettered, aggregate quarantined");
        dead_letters.push(DeadLetter { partition, event: raw, error: reason });
        Ok(())
    }
}

/// One aggregate after a tail batch: its row, the events it still holds, and how many events
/// were applied.
struct FoldedAggregate<S> {
    row: Option<fold::Row<S>>,
    /// With no row: how far only skipped events brought it.
    mark: Option<fold::Mark>,
    held: Vec<(u32, RawEvent)>,
    applied: usize,
}

/// Configuration of a live projector.
#[derive(Debug, Clone)]
pub struct LiveConfig<P: Projection> {
    pub database_url: String,
    pub projection: P,
    /// Events per committed batch (at most).
    pub batch: usize,
    /// Apply only events of transactions below this xid, then stop.
    pub until: Option<i64>,
    /// Exit once everything committed at start has been applied.
    pub stop_at_head: bool,
    /// Dead-letter bad events and quarantine their aggregate instead of stopping.
    pub quarantine: bool,
    /// Re-read from this boundary (overlap); the guard makes the re-read a no-op.
    pub from_offset: Option<i64>,
    /// Wait between polls when there is nothing to read.
    pub poll: Duration,
    /// `synchronous_commit` for this session (on: each commit waits for WAL fsync).
    pub synchronous_commit: bool,
    /// Events per second, at most (backpressure), if any.
    pub rate_limit: Option<f64>,
    /// Draw a progress line on stderr (events read and applied, lag to the head).
    pub progress: bool,
    /// Warn, naming the transaction that holds it, once the tail boundary has been held this
    /// long by one transaction while committed events wait above it (see [`StallWatch`]).
    pub stall_after: Duration,
    /// After a cutover retires this version, keep tailing it this long, so that a rollback to
    /// it inside the window switches at once (it has kept up); then stop. Zero: stop at once.
    pub retired_window: Duration,
    /// How long the database may stay unreachable (reconnects failing) before the live
    /// projector gives up with an error (see [`run_live`]).
    pub max_outage: Duration,
}

/// How long a retired version's projector keeps tailing it by default, for a rollback.
pub const DEFAULT_RETIRED_WINDOW: Duration = Duration::from_secs(15 * 60);

impl<P: Projection> LiveConfig<P> {
    /// A live tail of `projection` in 10k-event batches, until stopped, without limits.
    pub fn new(database_url: &str, projection: P) -> LiveConfig<P> {
        LiveConfig {
            database_url: database_url.to_owned(),
            projection,
            batch: 10_000,
            until: None,
            stop_at_head: false,
            quarantine: false,
            from_offset: None,
            poll: Duration::from_millis(20),
            synchronous_commit: false,
            rate_limit: None,
            progress: false,
            stall_after: Duration::from_secs(30),
            retired_window: DEFAULT_RETIRED_WINDOW,
            max_outage: eventlog::DEFAULT_MAX_OUTAGE,
        }
    }
}

/// The longest pause between two warnings of one stall.
const STALL_REPEAT_MAX: Duration = Duration::from_secs(600);

/// Watches the horizon for a tail loop: when one transaction has held the boundary for
/// `stall_after` while committed events wait above it, logs a WARN naming it (pid, database,
/// user, application, state, `xact_start`, the start of its query), repeats it at doubling
/// intervals (up to every ten minutes) while the stall lasts, and logs when it ends. It only
/// reports: the tail keeps reading below the boundary and never skips past it. It also sets the
/// `reproject_log_horizon_age_seconds` gauge.
pub struct StallWatch {
    version: &'static str,
    after: Duration,
    check_every: Duration,
    last_check: Option<Instant>,
    /// The current stall: when it was first reported, the boundary it holds, the next warning.
    stall: Option<Stall>,
    /// The boundary last seen and since when: the stall's age when the holder cannot be seen
    /// (another role's session without `pg_read_all_stats`).
    seen: Option<(i64, Instant)>,
}

struct Stall {
    since: Instant,
    xid: i64,
    gap: Duration,
    next_warn: Instant,
}

impl StallWatch {
    /// A watch for `version` with the stall threshold `after`.
    pub fn new(version: &'static str, after: Duration) -> StallWatch {
        let check_every = (after / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        StallWatch { version, after, check_every, last_check: None, stall: None, seen: None }
    }

    /// Whether a stall is being reported now.
    pub fn stalled(&self) -> bool {
        self.stall.is_some()
    }

    /// Checks the horizon if `check_every` has passed since the last check. A failing check
    /// (permissions, a dropped connection) is logged at debug level and retried later: the
    /// watch never stops the projector.
    pub async fn check(&mut self, client: &Client) {
        if self.last_check.is_some_and(|t| t.elapsed() < self.check_every) {
            return;
        }
        self.last_check = Some(Instant::now());
        match eventlog::horizon_status(client).await {
            Ok(status) => self.observe(&status),
            Err(e) => tracing::debug!(version = self.version, error = %e, "horizon check failed"),
        }
    }

    fn observe(&mut self, status: &eventlog::HorizonStatus) {
        let now = Instant::now();
        let seen_since = match self.seen {
            Some((xid, since)) if xid == status.xid => since,
            _ => {
                self.seen = Some((status.xid, now));
                now
            }
        };
        let age = status.age_seconds.max(seen_since.elapsed().as_secs_f64());
        metrics::gauge!(eventlog::HORIZON_AGE_SECONDS, "version" => self.version).set(age);
        if !(status.waiting && age >= self.after.as_secs_f64()) {
            if let Some(stall) = self.stall.take() {
                info!(
                    version = self.version,
                    horizon = stall.xid,
                    now_at = status.xid,
                    stalled_seconds = stall.since.elapsed().as_secs_f64(),
                    "the horizon moved: stall over, the projector reads again"
                );
            }
            return;
        }
        let due = match &self.stall {
            None => true,
            Some(stall) => stall.xid != status.xid || now >= stall.next_warn,
        };
        if !due {
            return;
        }
        let holder = status.holder.as_ref();
        warn!(
            version = self.version,
            horizon = status.xid,
            held_seconds = age,
            holder_pid = holder.and_then(|h| h.pid),
            holder_kind = holder.map(|h| h.kind.as_str()),
            holder_database = holder.and_then(|h| h.database.as_deref()),
            holder_user = holder.and_then(|h| h.user.as_deref()),
            holder_application = holder.and_then(|h| h.application.as_deref()),
            holder_state = holder.and_then(|h| h.state.as_deref()),
            holder_xact_start = holder.and_then(|h| h.xact_start).map(|t| t.to_rfc3339()),
            holder_query = holder.and_then(|h| h.query.as_deref()),
            "the horizon is held back: committed events wait behind a running transaction; end it \
             (pg_terminate_backend(pid), or COMMIT/ROLLBACK PREPARED) or wait"
        );
        let stall = match self.stall.take() {
            Some(s) if s.xid == status.xid => {
                let gap = (s.gap * 2).min(STALL_REPEAT_MAX);
                Stall { gap, next_warn: now + gap, ..s }
            }
            _ => Stall { since: now, xid: status.xid, gap: self.after, next_warn: now + self.after },
        };
        self.stall = Some(stall);
    }
}

/// What a live run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LiveReport {
    pub version: String,
    pub events_read: u64,
    pub events_applied: u64,
    pub batches: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub positions: Vec<Position>,
    pub held: usize,
    pub activated: bool,
}

/// Takes the version's writer lock and registers it if new (a retired version may be tailed
/// again, to keep it ready for a rollback); its primary key is built. Returns its registry row.
async fn open_version<P: Projection>(
    client: &mut Client,
    config: &LiveConfig<P>,
    partitions: u32,
    log_name: &str,
) -> Result<readmodel::ProjectionInfo> {
    let projection = &config.projection;
    readmodel::ensure_schema(client).await?;
    lock_version(client, projection).await?;
    if config.synchronous_commit {
        client.batch_execute("SET synchronous_commit = on").await?;
    }
    let info = match readmodel::version_info(&*client, projection.name()).await {
        Ok(info) => info,
        Err(readmodel::Error::UnknownVersion(_)) => {
            let info = readmodel::register(client, projection, State::Building, partitions).await?;
            info!(version = projection.name(), partitions, "projection registered");
            info
        }
        Err(e) => return Err(e.into()),
    };
    readmodel::ensure_log_source(&*client, projection.name(), log_name).await?;
    // A retired version may be tailed again (its table is complete and its positions exact):
    // that keeps it caught up, so that a rollback to it passes the cutover's position check.
    if info.state == State::Retired && config.until.is_none() {
        info!(version = projection.name(), "tailing a retired version: it can be rolled back to once caught up");
    }
    readmodel::add_primary_key(client, projection).await?;
    Ok(info)
}

/// A building version that has drained the log becomes `ready`; the first version of its
/// family is also activated (there is nothing to cut over from). Returns its new state.
async fn mark_ready<P: Projection>(client: &mut Client, projection: &P) -> Result<State> {
    readmodel::set_state(&*client, projection.name(), State::Ready).await?;
    info!(version = projection.name(), "caught up with the log: ready");
    let family_active =
        readmodel::list(&*client).await?.iter().any(|p| p.family == projection.family() && p.state == State::Active);
    if family_active {
        return Ok(State::Ready);
    }
    readmodel::cutover(client, projection.name()).await?;
    info!(version = projection.name(), family = projection.family(), "no version of its family was active: activated");
    Ok(State::Active)
}

/// The tail's progress line on stderr, or a hidden one.
fn progress_bar(shown: bool) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("tail {spinner} {msg} [{elapsed_precise}]").expect("valid template"),
    );
    bar
}

/// Tails the log into `config.projection` until stopped (or until the head / `until`).
///
/// Registers the version if it is new. The first time the version has drained the log, a
/// `building` version becomes `ready`; if no version is active yet, it is activated (the first
/// version has nothing to cut over from). A version retired while its projector runs stops
/// it; a projector started on a retired version keeps it caught up for a rollback.
///
/// Its connection is named `reproject live <version>`. When the connection is lost (the
/// server restarted, the backend terminated, the network cut), it reconnects with backoff and
/// resumes from the positions stored in `read.projection_offsets`: they commit in the same
/// transaction as the rows, so the resumed tail neither skips nor repeats an event, whatever
/// the fate of the batch in flight. It gives up after `config.max_outage` of failures.
pub async fn run_live<P: Projection>(
    config: &LiveConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<LiveReport> {
    let name = format!("reproject live {}", config.projection.name());
    tail_reconnecting(config, stop, None, None, "live", &name).await
}

/// The tail loop over the Postgres log on connections named `name`, starting on `first` if
/// given: a lost connection is replaced (counted under `process`) and the tail resumes from the
/// stored positions, until `config.max_outage` of failures (see [`run_live`]).
pub(crate) async fn tail_reconnecting<P: Projection>(
    config: &LiveConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
    limiter: Option<std::sync::Arc<crate::RateLimiter>>,
    mut first: Option<Client>,
    process: &'static str,
    name: &str,
) -> Result<LiveReport> {
    let mut retry = eventlog::Reconnect::new(process, config.max_outage);
    let mut report = LiveReport { version: config.projection.name().to_owned(), ..LiveReport::default() };
    let started = Instant::now();
    let mut positions = Vec::new();
    loop {
        let session = async {
            let mut client = match first.take() {
                Some(client) => client,
                None => eventlog::connect_as(&config.database_url, name).await?,
            };
            let source = PgLog::open(&client, config.until).await?;
            tail_session(&mut client, config, stop.clone(), limiter.clone(), source, &mut report, Some(&mut retry))
                .await
        };
        match session.await {
            Ok(reached) => {
                positions = reached;
                break;
            }
            Err(e) if eventlog::is_transient(&e) => {
                let delay = retry.next_delay(&eventlog::reconnect::reason(&e)).map_err(eventlog::Error::from)?;
                let mut stop = stop.clone();
                if *stop.borrow() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(finish_report(report, started, positions))
}

/// The tail loop over any [`Source`] (see [`run_live`]); the source applies `config.until`
/// itself, if it supports one. It does not reconnect: its caller owns the connection.
pub async fn run_tail_on<P: Projection, S: Source>(
    client: &mut Client,
    config: &LiveConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
    limiter: Option<std::sync::Arc<crate::RateLimiter>>,
    source: S,
) -> Result<LiveReport> {
    let started = Instant::now();
    let mut report = LiveReport { version: config.projection.name().to_owned(), ..LiveReport::default() };
    let positions = tail_session(client, config, stop, limiter, source, &mut report, None).await?;
    Ok(finish_report(report, started, positions))
}

/// The report's totals once the tail has stopped, logged.
fn finish_report(mut report: LiveReport, started: Instant, positions: Vec<Position>) -> LiveReport {
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_s = report.events_read as f64 / report.seconds.max(1e-9);
    report.positions = positions;
    info!(
        version = %report.version,
        read = report.events_read,
        applied = report.events_applied,
        events_per_s = report.events_per_s as u64,
        "tail stopped"
    );
    report
}

/// One session of the tail loop on one connection: opens the version and a tailer at its
/// stored positions (then tells `retry`, if given, that the database is back), and tails until
/// stopped, adding its counts to `report`. Returns the positions reached.
async fn tail_session<P: Projection, S: Source>(
    client: &mut Client,
    config: &LiveConfig<P>,
    stop: tokio::sync::watch::Receiver<bool>,
    limiter: Option<std::sync::Arc<crate::RateLimiter>>,
    source: S,
    report: &mut LiveReport,
    retry: Option<&mut eventlog::Reconnect>,
) -> Result<Vec<Position>> {
    let projection = &config.projection;
    let info = open_version(client, config, source.partitions(), &source.log_name()).await?;
    let started_retired = info.state == State::Retired;
    let options = TailOptions {
        batch: config.batch,
        until: config.until,
        quarantine: config.quarantine,
        from_offset: config.from_offset,
    };
    let limiter = limiter.or_else(|| config.rate_limit.map(|r| std::sync::Arc::new(crate::RateLimiter::new(r))));
    let mut tailer = Tailer::open_on(client, projection.clone(), options, source).await?.with_rate_limit(limiter);
    if let Some(retry) = retry {
        retry.recovered();
    }
    let target = if config.until.is_some() || config.stop_at_head { Some(tailer.head(client).await?) } else { None };
    let mut state = info.state;
    let mut last_state_check = Instant::now();
    let (lowest, highest) = match &target {
        Some(t) => (t.iter().min().map(ToString::to_string), t.iter().max().map(ToString::to_string)),
        None => (None, None),
    };
    info!(version = projection.name(), state = %state, target_lowest = ?lowest, target_highest = ?highest, "tailing");
    let bar = progress_bar(config.progress);
    let mut last_lag_check = Instant::now() - Duration::from_secs(10);
    let mut lag = None;
    let mut watch = StallWatch::new(projection.name(), config.stall_after);
    // When a cutover retired this version (while this projector ran): it keeps tailing for the
    // retired window, so that a rollback finds it caught up.
    let mut retired_since: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let outcome = tailer.step(client).await?;
        if config.until.is_none() && tailer.source.watches_horizon() {
            watch.check(client).await;
        }
        report.events_read += outcome.read as u64;
        report.events_applied += outcome.applied as u64;
        if outcome.read > 0 {
            report.batches += 1;
        }
        if config.progress {
            // The exact lag costs a count over it: refresh it at most every five seconds.
            if last_lag_check.elapsed() > Duration::from_secs(5) {
                last_lag_check = Instant::now();
                lag = tailer.lag(client).await.ok();
            }
            bar.set_message(format!(
                "{}: read {} applied {} held {} lag {}",
                projection.name(),
                report.events_read,
                report.events_applied,
                tailer.held_count(),
                lag.map_or("?".to_owned(), |l| l.to_string())
            ));
            bar.tick();
        }
        if outcome.drained && state == State::Building {
            state = mark_ready(client, projection).await?;
            report.activated |= state == State::Active;
        }
        if let Some(target) = &target {
            if tailer.reached_head(target) {
                break;
            }
        }
        if last_state_check.elapsed() > Duration::from_secs(1) {
            last_state_check = Instant::now();
            // A cutover that retires this version stops its projector once the retired window
            // has passed (a rollback inside it finds the version caught up); one started on a
            // retired version (to keep it ready for a rollback) goes on.
            if config.until.is_none() && !started_retired {
                let retired = readmodel::version_info(client, projection.name()).await?.state == State::Retired;
                match (retired, retired_since) {
                    (true, None) => {
                        info!(
                            version = projection.name(),
                            window_s = config.retired_window.as_secs_f64(),
                            "version retired: tailing on for the retired window (a rollback to it switches at once)"
                        );
                        retired_since = Some(Instant::now());
                    }
                    (false, Some(_)) => {
                        info!(version = projection.name(), "version active again (a rollback): tailing on");
                        retired_since = None;
                    }
                    _ => {}
                }
                if retired_since.is_some_and(|t| t.elapsed() >= config.retired_window) {
                    info!(version = projection.name(), "retired window over: stopping its projector");
                    break;
                }
            }
        }
        if outcome.read == 0 {
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(config.poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
    bar.finish_and_clear();
    report.held = tailer.held_count();
    Ok(tailer.positions().to_vec())
}
