//! `reproject projector | repair | snapshot | cutover | projections | position`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::{database_url, parse_duration, Global};
use crate::Catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Tail the log into the version's table, continuously.
    Live,
    /// Rebuild the version from offset 0 beside the live one (then --catch-up).
    Replay,
}

/// Where the adaptive controller reads the live p99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LiveP99From {
    /// The live API's latency histogram (`/metrics`): the reads it actually serves.
    Metrics,
    /// The controller's own requests to the live API.
    Probe,
}

#[derive(Debug, Args)]
pub struct ProjectorArgs {
    /// live or replay.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Projection version to build, by name (this binary's catalog; the `reproject` binary
    /// knows the bank's v3, v4 and activity_v1).
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// Events per committed tail batch.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Replay: partitions folded at once, each on its own connection (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Cap on events per second (replay: across workers, and in catch-up; live: the tail).
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub rate_limit: Option<f64>,
    /// Replay: after the bulk phase, tail until lag is 0 and mark the version ready.
    #[arg(long)]
    pub catch_up: bool,
    /// Exit once everything committed when the tail started has been applied.
    #[arg(long)]
    pub stop_at_head: bool,
    /// Apply only events of transactions below this xid (see `reproject position`), then stop.
    #[arg(long, value_name = "POSITION")]
    pub until: Option<i64>,
    /// Re-read the log from this xid boundary (an overlap; applied events are no-ops).
    #[arg(long, value_name = "POSITION")]
    pub from_offset: Option<i64>,
    /// Dead-letter bad events and quarantine their aggregate instead of stopping.
    #[arg(long)]
    pub quarantine: bool,
    /// Wait between polls of an idle log.
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    pub poll: Duration,
    /// Warn, naming the transaction that holds it, once one transaction has held the log's
    /// horizon this long while committed events wait behind it (repeated, slower, while it lasts).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub stall_after: Duration,
    /// Make every commit wait for its WAL flush (synchronous_commit=on) in this session.
    #[arg(long)]
    pub sync_commit: bool,
    /// Draw progress bars on stderr.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub progress: bool,
    /// Replay: adaptive backpressure. The replay's rate follows the live API's p99, kept within
    /// this much of its baseline (`10%` or `0.1`); needs --live-api. --rate-limit is then the
    /// ceiling. The baseline is measured before the replay starts and again in a 1.5 s pause of
    /// the replay every 10 s.
    #[arg(long, value_name = "FRACTION")]
    pub max_live_p99_increase: Option<String>,
    /// Replay: the live read API whose p99 --max-live-p99-increase protects (loopback only).
    #[arg(long, value_name = "URL")]
    pub live_api: Option<String>,
    /// Replay: where the adaptive controller reads the live p99: `metrics` (the API's own
    /// latency histogram of the reads it serves, from --live-api's /metrics) or `probe` (its own
    /// GET /aggregate/{id} requests, timed from this process).
    #[arg(long, value_enum, default_value_t = LiveP99From::Metrics, value_name = "SOURCE")]
    pub live_p99_from: LiveP99From,
    /// Replay: with --live-p99-from probe, the probes cycle through aggregate ids 1..=N.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub probe_aggregates: u64,
    /// Replay: CPU niceness 0..=19 of the replay process and of the PostgreSQL backends serving
    /// its connections (renicing a backend needs the server to run as this user, or root).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=19))]
    pub nice: i32,
    /// Replay: run the replay process and its PostgreSQL backends in the SCHED_IDLE class: they
    /// get a core only when nothing else wants it, and a waking live read preempts them at once
    /// (stronger than --nice 19, under which a read can wait out part of the replay's time slice).
    #[arg(long)]
    pub sched_idle: bool,
    /// Replay: keep the replay process and its PostgreSQL backends on these cores (`1`, `2-3`,
    /// `0,2`), so that live serving, kept on the others, never wakes on a core the replay is
    /// using. Default: wherever the scheduler puts them.
    #[arg(long, value_name = "CORES", value_parser = parse_cpus_arg)]
    pub cpus: Option<u64>,
    /// Replay: the most events one partition's bulk fold holds at once (events read before
    /// their predecessor, ~400 B each); past it, the aggregates holding the most are folded
    /// from a temporary table, sorted, at the end of the partition. 0: no limit.
    #[arg(long, default_value_t = projector::spill::DEFAULT_HELD_LIMIT, value_name = "EVENTS")]
    pub held_limit: usize,
    /// When a cutover retires this version, keep tailing it this long (so that a rollback to
    /// it switches at once), then stop. `0s`: stop at once.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub retired_window: Duration,
    /// When the database becomes unreachable (a restart, a terminated connection, the network),
    /// reconnect with backoff and resume from the stored positions for up to this long, then
    /// give up with an error (the live tail, the replay's workers and its catch-up).
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub max_outage: Duration,
    /// Replay: where the rows go: `postgres` (the version's table), `redis` (the embedded
    /// redis-server in --redis-dir, started if needed) or `redis://[:PASSWORD@]HOST:PORT/` (an
    /// existing one). With a Redis store, --catch-up tails from the stored positions to the
    /// head once, then stops.
    #[arg(long, default_value = "postgres", value_name = "STORE")]
    pub store: String,
    /// Replay into Redis: start from this fold's snapshot at this cut (`reproject redis
    /// snapshot`) and read the log after it, instead of from offset 0.
    #[arg(long, value_name = "CUT")]
    pub from_snapshot: Option<i64>,
    /// Data directory of the embedded redis-server (`--store redis`).
    #[arg(long, env = "REPROJECT_REDIS_DIR", default_value = ".reproject/redis")]
    pub redis_dir: std::path::PathBuf,
    /// Serve this projector's Prometheus metrics (`GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9187` (events applied, batch sizes, write latency, partitions done, held events).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

fn parse_cpus_arg(list: &str) -> std::result::Result<u64, String> {
    projector::priority::parse_cpus(list)
}

/// Parses `10%` or `0.1` into 0.1; a positive, finite fraction.
pub fn parse_fraction(flag: &str, raw: &str) -> Result<f64> {
    let trimmed = raw.trim();
    let value = match trimmed.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
        None => trimmed.parse::<f64>(),
    };
    match value {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => bail!("{flag} {raw}: expected a positive fraction such as 10% or 0.1"),
    }
}

/// Validates the adaptive-backpressure flags into a config (or none), before any work starts.
fn adaptive_config(a: &ProjectorArgs) -> Result<Option<projector::AdaptiveConfig>> {
    let Some(raw) = &a.max_live_p99_increase else {
        if a.live_api.is_some() {
            bail!("--live-api is only used with --max-live-p99-increase");
        }
        return Ok(None);
    };
    let max_live_p99_increase = parse_fraction("--max-live-p99-increase", raw)?;
    if a.mode != Mode::Replay {
        bail!("--max-live-p99-increase applies to --mode replay only");
    }
    let Some(api) = &a.live_api else {
        bail!("--max-live-p99-increase needs --live-api (the live read API to protect)");
    };
    loadgen::check_loopback(api).with_context(|| format!("--live-api {api}"))?;
    if a.probe_aggregates == 0 {
        bail!("--probe-aggregates must be at least 1");
    }
    Ok(Some(projector::AdaptiveConfig {
        api_url: api.trim_end_matches('/').to_owned(),
        max_live_p99_increase,
        probe_aggregates: a.probe_aggregates,
        source: match a.live_p99_from {
            LiveP99From::Metrics => projector::LatencySource::Metrics,
            LiveP99From::Probe => projector::LatencySource::Probe,
        },
    }))
}

pub async fn projector(g: &Global, a: ProjectorArgs, catalog: &Catalog) -> Result<ExitCode> {
    let entry = catalog.find(&a.projection).with_context(|| format!("--projection {}", a.projection))?;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if a.rate_limit.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        bail!("--rate-limit must be a positive number of events per second");
    }
    if a.workers == Some(0) {
        bail!("--workers must be at least 1");
    }
    if a.mode == Mode::Live && (a.catch_up || a.workers.is_some()) {
        bail!("--catch-up and --workers apply to --mode replay only");
    }
    if a.mode == Mode::Live && (a.nice != 0 || a.sched_idle || a.cpus.is_some()) {
        bail!("--nice, --sched-idle and --cpus apply to --mode replay only");
    }
    let adaptive = adaptive_config(&a)?;
    let store = super::redis::Store::parse(&a.store)?;
    if store == super::redis::Store::Postgres && a.from_snapshot.is_some() {
        bail!("--from-snapshot applies to a replay into Redis (--store redis or redis://...)");
    }
    if store != super::redis::Store::Postgres {
        refuse_for_redis(&a, adaptive.is_some(), g.topic.is_some())?;
    }
    let url = database_url(g)?;
    if let Some(redis_url) = store.redis_url(&a.redis_dir)? {
        let run = crate::catalog::RedisRun {
            database_url: url,
            redis_url,
            workers: a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            until: a.until,
            held_limit: (a.held_limit > 0).then_some(a.held_limit),
            from_snapshot: a.from_snapshot,
            catch_up: a.catch_up,
            batch: a.batch,
        };
        let report = entry.redis_replay(run).await.context("replay into redis")?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(addr) = a.metrics_listen {
        let bound = api::spawn_metrics_server(addr).await.context("--metrics-listen")?;
        tracing::info!(%bound, "metrics on /metrics");
    }
    let stop = super::ctrl_c();
    #[cfg(feature = "kafka")]
    if let Some(topic) = g.topic()? {
        if a.until.is_some() || adaptive.is_some() || a.nice != 0 || a.sched_idle || a.cpus.is_some() {
            bail!(
                "--until, --max-live-p99-increase, --nice, --sched-idle and --cpus apply to the event store's \
                 projector, not to one reading --topic"
            );
        }
        println!("{}", entry.topic_projector(&a, url, topic, stop).await?);
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(not(feature = "kafka"))]
    g.no_topic()?;
    println!("{}", entry.projector(&a, url, adaptive, stop).await?);
    Ok(ExitCode::SUCCESS)
}

/// Refuses, naming them, the flags a replay into Redis does not take (yet).
fn refuse_for_redis(a: &ProjectorArgs, adaptive: bool, topic: bool) -> Result<()> {
    let mut refused = Vec::new();
    if a.mode != Mode::Replay {
        refused.push("--mode live");
    }
    if a.rate_limit.is_some() {
        refused.push("--rate-limit");
    }
    if a.from_offset.is_some() {
        refused.push("--from-offset");
    }
    if adaptive {
        refused.push("--max-live-p99-increase");
    }
    if a.nice != 0 || a.sched_idle || a.cpus.is_some() {
        refused.push("--nice/--sched-idle/--cpus");
    }
    if a.quarantine {
        refused.push("--quarantine");
    }
    if topic {
        refused.push("--topic");
    }
    if !refused.is_empty() {
        bail!(
            "--store {}: a Redis store takes the replay from the event store and --catch-up to the head; not {}",
            if a.store.starts_with("redis://") { "redis://..." } else { a.store.as_str() },
            refused.join(", ")
        );
    }
    Ok(())
}

/// The live projector's configuration from the flags (`--until` is the event store's: set by
/// its caller).
fn live_config<P: fold::Projection>(a: &ProjectorArgs, url: &str, projection: P) -> projector::LiveConfig<P> {
    projector::LiveConfig {
        batch: a.batch,
        stop_at_head: a.stop_at_head,
        quarantine: a.quarantine,
        from_offset: a.from_offset,
        poll: a.poll,
        synchronous_commit: a.sync_commit,
        rate_limit: a.rate_limit,
        progress: a.progress,
        stall_after: a.stall_after,
        retired_window: a.retired_window,
        max_outage: a.max_outage,
        ..projector::LiveConfig::new(url, projection)
    }
}

/// The projector of one concrete projection reading a Kafka topic (`--topic`); its report
/// as one JSON line.
#[cfg(feature = "kafka")]
pub(crate) async fn run_topic_projector<P: fold::Projection>(
    projection: P,
    a: &ProjectorArgs,
    url: String,
    topic: kafkalog::KafkaLog,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<String> {
    match a.mode {
        Mode::Live => {
            let config = live_config(a, &url, projection);
            let source = kafkalog::KafkaSource::open(&topic).with_context(|| format!("--topic {topic}"))?;
            let mut client = eventlog::connect(&url).await.context("connecting to PostgreSQL")?;
            let report =
                projector::run_tail_on(&mut client, &config, stop, None, source).await.context("live projector")?;
            Ok(serde_json::to_string(&report)?)
        }
        Mode::Replay => {
            if a.rate_limit.is_some() || a.from_offset.is_some() {
                bail!("--rate-limit and --from-offset apply to --mode live when reading --topic");
            }
            let config = kafkalog::KafkaReplayConfig {
                workers: a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                batch: a.batch,
                catch_up: a.catch_up,
                stop_at_head: a.stop_at_head,
                quarantine: a.quarantine,
                progress: a.progress,
                ..kafkalog::KafkaReplayConfig::new(&url, topic, projection)
            };
            let report = kafkalog::replay(&config, stop).await.context("replay from the topic")?;
            Ok(serde_json::to_string(&report)?)
        }
    }
}

/// The projector of one concrete projection, from validated flags; its report as one JSON line.
pub(crate) async fn run_projector<P: fold::Projection>(
    projection: P,
    a: &ProjectorArgs,
    url: String,
    adaptive: Option<projector::AdaptiveConfig>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<String> {
    match a.mode {
        Mode::Live => {
            let config = projector::LiveConfig { until: a.until, ..live_config(a, &url, projection) };
            let report = projector::run_live(&config, stop).await.context("live projector")?;
            Ok(serde_json::to_string(&report)?)
        }
        Mode::Replay => {
            let workers = a.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let config = projector::ReplayConfig {
                database_url: url,
                projection,
                workers,
                batch: a.batch,
                rate_limit: a.rate_limit,
                catch_up_rate_limit: None,
                catch_up: a.catch_up,
                stop_at_head: a.stop_at_head,
                until: a.until,
                quarantine: a.quarantine,
                from_offset: a.from_offset,
                poll: a.poll,
                progress: a.progress,
                adaptive,
                priority: projector::CpuPriority { nice: a.nice, idle: a.sched_idle, cpus: a.cpus.unwrap_or(0) },
                priority_process: true,
                stall_after: a.stall_after,
                held_limit: (a.held_limit > 0).then_some(a.held_limit),
                gap_lookups: true,
                retired_window: a.retired_window,
                max_outage: a.max_outage,
            };
            let report = projector::replay(&config, stop).await.context("replay")?;
            Ok(serde_json::to_string(&report)?)
        }
    }
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Projection version whose row to repair.
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// The aggregate to re-fold: its stream id as the log has it (an integer, a uuid or a text).
    #[arg(long, value_name = "ID")]
    pub aggregate: String,
}

pub async fn repair(g: &Global, a: RepairArgs, catalog: &Catalog) -> Result<ExitCode> {
    let entry = catalog.find(&a.projection).with_context(|| format!("--projection {}", a.projection))?;
    if a.aggregate.is_empty() {
        bail!("--aggregate: give the aggregate's id (an integer, a uuid or a text, as the log has it)");
    }
    let mut client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    let kind = eventlog::id_kind(&client).await.context("reading the log's stream id type")?;
    let id = kind.parse(&a.aggregate).map_err(|e| anyhow::anyhow!("--aggregate {e}"))?;
    let report = entry
        .repair(&mut client, &id)
        .await
        .with_context(|| format!("repairing aggregate {id} of {}", a.projection))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The fold whose snapshots to store (time travel with ?version= uses that fold's).
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// Snapshot an aggregate each time its version crosses a multiple of this: time travel then
    /// folds at most about this many events past the snapshot.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..))]
    pub every: i32,
    /// Partitions folded at once, each on its own connection.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
}

pub async fn snapshot(g: &Global, a: SnapshotArgs, catalog: &Catalog) -> Result<ExitCode> {
    let entry = catalog.find(&a.projection).with_context(|| format!("--projection {}", a.projection))?;
    let url = database_url(g)?;
    let report =
        entry.snapshot(url, a.every, a.workers).await.with_context(|| format!("snapshotting {}", a.projection))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The ready version to promote.
    #[arg(long = "projection", visible_alias = "version", value_name = "PROJECTION")]
    pub projection: String,
    /// Wait until the version has caught up with the active one, then switch.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

pub async fn cutover(g: &Global, a: CutoverArgs) -> Result<ExitCode> {
    let mut client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    switch(&mut client, &a.projection, a.wait, a.timeout).await
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The read model (family) whose last cutover to undo; optional when one family has an
    /// active version.
    #[arg(long)]
    pub family: Option<String>,
    /// Wait until the retired version has caught up with the active one, then switch.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

/// `reproject rollback`: a cutover to the version the last cutover retired.
pub async fn rollback(g: &Global, a: RollbackArgs) -> Result<ExitCode> {
    let mut client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    let infos = readmodel::list(&client).await.context("reading the registry")?;
    let active: Vec<&readmodel::ProjectionInfo> =
        infos.iter().filter(|p| p.state == readmodel::State::Active).collect();
    let active = match &a.family {
        Some(family) => active
            .iter()
            .find(|p| &p.family == family)
            .with_context(|| format!("no version of family {family} is active"))?,
        None => match active.as_slice() {
            [one] => one,
            [] => bail!("no version is active: nothing to roll back"),
            several => bail!(
                "several families are active ({}): name one with --family",
                several.iter().map(|p| p.family.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let previous =
        active.cutover.as_ref().and_then(|c| c.get("previous")?.as_str().map(str::to_owned)).with_context(|| {
            format!("{} was not activated by a cutover from another version: nothing to roll back to", active.version)
        })?;
    switch(&mut client, &previous, a.wait, a.timeout).await
}

/// Cuts over to `version` (or rolls back to it), waiting for it to catch up if asked.
async fn switch(client: &mut tokio_postgres::Client, version: &str, wait: bool, timeout: Duration) -> Result<ExitCode> {
    let deadline = wait.then(|| tokio::time::Instant::now() + timeout);
    let c =
        readmodel::cutover_waiting(client, version, deadline).await.with_context(|| format!("cutover to {version}"))?;
    println!("{}", serde_json::to_string(&c)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn projections(g: &Global) -> Result<ExitCode> {
    let client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    let registry: bool = client.query_one("SELECT to_regclass('read.projections') IS NOT NULL", &[]).await?.get(0);
    if !registry {
        println!(
            "no read models yet: this database has no registry (a projector registers its version when it starts)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let counts = readmodel::counts(&client).await.context("counting held events and dead letters")?;
    let progress = readmodel::build_progress(&client).await.context("reading build progress")?;
    for p in readmodel::list(&client).await.context("reading the registry")? {
        let lag = readmodel::lag_events(&client, &p.positions).await?;
        let c = counts.get(&p.version).copied().unwrap_or_default();
        println!(
            "{:<6} {:<9} applied={:<10} lag={:<8} held={} dead_letters={} quarantined={} min_position={}{}",
            p.version,
            p.state.as_str(),
            p.events_applied,
            lag,
            c.held_events,
            c.dead_letters,
            c.quarantined_aggregates,
            p.positions.iter().min().copied().unwrap_or_default(),
            build_column(p.state, progress.get(&p.version), lag),
        );
    }
    print_horizon(&client).await?;
    Ok(ExitCode::SUCCESS)
}

/// The horizon line of `reproject projections`: where the tail boundary is, its age, and the
/// transaction that holds it when committed events wait behind it.
async fn print_horizon(client: &tokio_postgres::Client) -> Result<()> {
    let h = eventlog::horizon_status(client).await.context("reading the horizon")?;
    let holder = match (&h.holder, h.waiting) {
        (Some(holder), true) => format!(" waiting on {holder}"),
        (Some(holder), false) => format!(" held by {holder}, nothing waiting"),
        (None, _) => String::new(),
    };
    println!("horizon xid={} age={:.1}s{holder}", h.xid, h.age_seconds);
    Ok(())
}

/// ` build=bulk 42% eta=12s (ready at ...)` for a version still building; empty otherwise.
fn build_column(state: readmodel::State, progress: Option<&readmodel::BuildProgress>, lag: i64) -> String {
    if state != readmodel::State::Building {
        return String::new();
    }
    let Some(p) = progress else {
        return " build=not started".to_owned();
    };
    let e = p.estimate(lag, chrono::Utc::now());
    let phase = match p.phase {
        readmodel::BuildPhase::Bulk => "bulk",
        readmodel::BuildPhase::CatchUp => "catch_up",
    };
    match (e.eta_seconds, e.expected_ready_at) {
        (Some(eta), Some(at)) => format!(
            " build={phase} {:.0}% eta={eta:.0}s (ready at {}, at {:.0} events/s)",
            e.progress_ratio * 100.0,
            at.format("%H:%M:%S UTC"),
            p.events_per_s
        ),
        _ => format!(" build={phase} {:.0}% eta=unknown (no rate measured yet)", e.progress_ratio * 100.0),
    }
}

pub async fn position(g: &Global) -> Result<ExitCode> {
    let client = eventlog::connect(&database_url(g)?).await.context("connecting")?;
    println!("{}", eventlog::boundary(&client).await?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_fraction;

    #[test]
    fn a_fraction_is_a_percentage_or_a_plain_number() {
        assert_eq!(parse_fraction("--f", "10%").unwrap(), 0.1);
        assert_eq!(parse_fraction("--f", "0.1").unwrap(), 0.1);
        assert_eq!(parse_fraction("--f", " 25 %").unwrap(), 0.25);
        for bad in ["", "%", "-5%", "0", "ten", "NaN", "inf"] {
            let e = parse_fraction("--max-live-p99-increase", bad).unwrap_err().to_string();
            assert!(e.contains("--max-live-p99-increase"), "{bad:?}: {e}");
        }
    }
}
