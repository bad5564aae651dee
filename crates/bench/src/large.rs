//! `lab large`: the large tier as one resumable command. Seed the log, build the live v3 model,
//! rebuild v4 with catch-up while the producer appends and readers read through the API, cut
//! over, freeze both versions at one position and verify them.
//!
//! Each step records its outcome in a state file (JSON, written atomically) as it finishes,
//! and every step is itself resumable from the database: the seeder by chunk, the replays by
//! partition (their registry rows and offsets), the cutover by the registry (a v4 found active
//! is past its cutover). A rerun after a crash at any point skips what is recorded and
//! resumes the step in flight. Before any work it checks the free disk space against what the
//! remaining steps need, and refuses with the figure when it is short.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lab::bank::{V3, V4};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// On-disk bytes per event of the log with its indexes (measured: 447 MB at 1M events,
/// 44.6 GB at 100M, both with the lab's JSONB payloads).
pub const LOG_BYTES_PER_EVENT: u64 = 450;
/// On-disk bytes per aggregate of the read side: `lab.expected_accounts`, `read.accounts_v3`
/// and `read.accounts_v4` with their primary keys (~200 B per row each, rounded up).
pub const READ_BYTES_PER_AGGREGATE: u64 = 800;
/// Bytes a replay worker's hash map takes per aggregate of its partition (the stream with its
/// state (~130 B), owner and currency strings (~64 B), the map's slack (up to 2x), and the
/// folded row (~104 B) built from it before the map is freed), rounded up.
pub const FOLD_BYTES_PER_AGGREGATE: u64 = 500;

/// What to run.
#[derive(Debug, Clone)]
pub struct LargeConfig {
    pub database_url: String,
    pub events: u64,
    pub aggregates: u64,
    /// Log partitions; `None`: from the memory arithmetic ([`choose_partitions`]).
    pub partitions: Option<u32>,
    pub workers: usize,
    /// What one replay worker's hash map may take (sets the partitions when not given).
    pub fold_memory_bytes: u64,
    /// The producer's rate during the rebuild (events/s).
    pub ingest: f64,
    /// A cap on the v4 replay's events per second (bulk and catch-up), so that the producer
    /// and the readers keep their share of the cores; `None`: full speed.
    pub replay_rate_limit: Option<f64>,
    /// Readers (one request in flight each) during the rebuild and the cutover.
    pub readers: usize,
    /// How long readers keep reading after the cutover.
    pub after_cutover: Duration,
    /// The WAL ceiling set for the run (`max_wal_size`, MB); `None` leaves the server's.
    pub max_wal_mb: Option<u64>,
    pub state_path: PathBuf,
    pub out_dir: PathBuf,
    /// Start over: drop the log and the read side, forget the state file.
    pub reset: bool,
}

/// The parameters a state file belongs to: a rerun with others is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeParams {
    pub events: u64,
    pub aggregates: u64,
    pub partitions: u32,
}

/// The state file: the parameters and each finished step's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LargeState {
    pub params: LargeParams,
    pub steps: BTreeMap<String, serde_json::Value>,
}

impl LargeState {
    fn load(path: &Path) -> Result<Option<LargeState>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the state next to its path and renames it in place: a crash leaves the old or
    /// the new file, never half of one.
    fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(())
    }

    fn done(&self, step: &str) -> bool {
        self.steps.contains_key(step)
    }

    fn record<T: Serialize>(&mut self, path: &Path, step: &str, figures: &T) -> Result<()> {
        self.steps.insert(step.to_owned(), serde_json::to_value(figures)?);
        self.save(path)
    }
}

/// The steps, in order.
pub const STEPS: [&str; 4] = ["seed", "v3_live", "rebuild_and_cutover", "verify"];

/// Partitions such that one worker's hash map (aggregates ÷ P of them) fits in
/// `fold_memory_bytes`: the next power of two, at least 16 (the lab's default).
pub fn choose_partitions(aggregates: u64, fold_memory_bytes: u64) -> u32 {
    let need = aggregates.saturating_mul(FOLD_BYTES_PER_AGGREGATE).div_ceil(fold_memory_bytes.max(1));
    need.max(16).next_power_of_two().min(1024) as u32
}

/// Disk the whole run needs from an empty database: the log with its indexes, the read side,
/// and the WAL (twice its ceiling: PostgreSQL may pass `max_wal_size` between checkpoints),
/// plus 10%.
pub fn required_bytes(events: u64, aggregates: u64, max_wal_bytes: u64) -> u64 {
    let data = events * LOG_BYTES_PER_EVENT + aggregates * READ_BYTES_PER_AGGREGATE + 2 * max_wal_bytes;
    data + data / 10
}

/// Free bytes on the filesystem holding `path` (for an unprivileged user).
pub fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statvfs {}", path.display()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// The disk check: what is still needed (the whole need minus what the database already
/// holds) against the free space of the server's data directory.
#[derive(Debug, Clone, Serialize)]
pub struct DiskCheck {
    pub data_directory: String,
    pub required_bytes: u64,
    pub database_bytes: u64,
    pub free_bytes: u64,
}

async fn check_disk(client: &tokio_postgres::Client, config: &LargeConfig, max_wal_bytes: u64) -> Result<DiskCheck> {
    let data_directory: String = client.query_one("SHOW data_directory", &[]).await?.get(0);
    let database_bytes: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).await?.get(0);
    let free = free_bytes(Path::new(&data_directory)).with_context(|| {
        format!("measuring free space at the server's data directory {data_directory} (is the server local?)")
    })?;
    let check = DiskCheck {
        data_directory,
        required_bytes: required_bytes(config.events, config.aggregates, max_wal_bytes),
        database_bytes: database_bytes.max(0) as u64,
        free_bytes: free,
    };
    let still_needed = check.required_bytes.saturating_sub(check.database_bytes);
    if free < still_needed {
        bail!(
            "not enough disk: {} events over {} aggregates need {:.1} GB (log {:.1} GB, read side {:.1} GB, \
             WAL up to {:.1} GB, 10% margin); the database holds {:.1} GB of it, so {:.1} GB more are needed \
             on {}, where {:.1} GB are free. Free {:.1} GB, or run a smaller tier (--events, --aggregates).",
            config.events,
            config.aggregates,
            gb(check.required_bytes),
            gb(config.events * LOG_BYTES_PER_EVENT),
            gb(config.aggregates * READ_BYTES_PER_AGGREGATE),
            gb(2 * max_wal_bytes),
            gb(check.database_bytes),
            gb(still_needed),
            check.data_directory,
            gb(free),
            gb(still_needed - free)
        );
    }
    info!(
        required_gb = gb(check.required_bytes),
        database_gb = gb(check.database_bytes),
        free_gb = gb(free),
        "disk check passed"
    );
    Ok(check)
}

/// The readers' figures over the whole rebuild (several load runs back to back).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadsSummary {
    pub runs: u32,
    pub requests: u64,
    pub failed: u64,
    pub not_found: u64,
    pub version_regressions: u64,
    pub versions_served: BTreeMap<String, u64>,
    /// The largest p99 of the runs.
    pub max_p99_ms: f64,
    pub failures: Vec<String>,
}

/// What the rebuild step did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildFigures {
    pub replay_seconds: f64,
    pub bulk_events: u64,
    pub bulk_events_per_s: f64,
    pub bulk_mb_per_s: f64,
    pub replay_peak_rss_bytes: u64,
    pub produced_events: u64,
    pub produced_events_per_s: f64,
    pub cutover_switch_ms: f64,
    pub cutover_refusals: u64,
    pub reads: ReadsSummary,
}

/// What verification found at the frozen position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyFigures {
    pub frozen_at: i64,
    pub v4_diffs: u64,
    pub v3_diffs: u64,
    pub v3_expected_diffs: u64,
    pub v3_unexpected: u64,
    pub v4_vs_v3_unexpected: u64,
    pub seconds: f64,
    pub ok: bool,
}

/// The outcome of a run: the state file's content.
pub type LargeReport = LargeState;

/// Runs (or resumes) the large tier; see the module docs.
pub async fn run(config: &LargeConfig) -> Result<LargeReport> {
    let url = &config.database_url;
    let partitions =
        config.partitions.unwrap_or_else(|| choose_partitions(config.aggregates, config.fold_memory_bytes));
    let params = LargeParams { events: config.events, aggregates: config.aggregates, partitions };
    if config.reset {
        match std::fs::remove_file(&config.state_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", config.state_path.display()))
            }
            _ => {}
        }
    }
    let mut state = match LargeState::load(&config.state_path)? {
        Some(s) if s.params != params => bail!(
            "{} belongs to another run ({:?}, asked {:?}): pass --reset to start over",
            config.state_path.display(),
            s.params,
            params
        ),
        Some(s) => {
            info!(done = ?s.steps.keys().collect::<Vec<_>>(), "resuming");
            s
        }
        None => LargeState { params: params.clone(), steps: BTreeMap::new() },
    };
    let client = eventlog::connect(url).await.context("connecting")?;
    let max_wal_bytes = match config.max_wal_mb {
        Some(mb) => {
            // A small WAL ceiling: the bulk COPY into existing partitions is WAL-logged even
            // under wal_level = minimal, and a checkpoint every few GB keeps pg_wal that small.
            // Two statements, not one string: ALTER SYSTEM refuses to run in the implicit
            // transaction of a multi-statement query.
            let set = match client.batch_execute(&format!("ALTER SYSTEM SET max_wal_size = '{mb}MB'")).await {
                Ok(()) => client.batch_execute("SELECT pg_reload_conf()").await,
                Err(e) => Err(e),
            };
            match set {
                Ok(()) => mb * 1_000_000,
                Err(e) => {
                    warn!(error = %e, "could not set max_wal_size (not a superuser?); counting the server's own");
                    0
                }
            }
        }
        None => 0,
    };
    let max_wal_bytes = if max_wal_bytes > 0 {
        max_wal_bytes
    } else {
        let text: String =
            client.query_one("SELECT setting FROM pg_settings WHERE name = 'max_wal_size'", &[]).await?.get(0);
        text.parse::<u64>().unwrap_or(1024) * 1_000_000
    };
    let disk = check_disk(&client, config, max_wal_bytes).await?;
    println!(
        "large tier: {} events over {} aggregates, P = {partitions} (a worker's map: {} aggregates, ~{:.0} MB); \
         disk: {:.1} GB needed, {:.1} GB in the database, {:.1} GB free",
        config.events,
        config.aggregates,
        config.aggregates.div_ceil(partitions as u64),
        (config.aggregates.div_ceil(partitions as u64) * FOLD_BYTES_PER_AGGREGATE) as f64 / 1e6,
        gb(disk.required_bytes),
        gb(disk.database_bytes),
        gb(disk.free_bytes)
    );

    if !state.done("seed") {
        say(1, "seed the log (resumable by chunk)");
        let mut seed = lab::SeedConfig::new(config.events, config.aggregates, 42);
        seed.partitions = partitions;
        seed.reset = config.reset;
        seed.progress = true;
        let report = lab::seed::run(url, seed).await.context("seeding")?;
        println!("{}", report.render());
        if !report.complete {
            bail!("the seed did not complete; rerun to resume it");
        }
        state.record(&config.state_path, "seed", &report)?;
    }

    if !state.done("v3_live") {
        say(2, "build the live model v3 (replay, catch-up, activated when nothing is active)");
        let never = tokio::sync::watch::channel(false).1;
        let cfg = projector::ReplayConfig {
            workers: config.workers,
            progress: true,
            ..projector::ReplayConfig::new(url, V3)
        };
        let report = projector::replay(&cfg, never).await.context("building v3")?;
        let active = readmodel::version_info(&client, "v3").await?.state == readmodel::State::Active;
        if !active {
            bail!("v3 was built but is not active (another version is): reset the read side or pass --reset");
        }
        println!(
            "v3: {} events in {:.1}s bulk ({:.0} events/s), peak RSS {} MB; held at most {} at once (limit {}), \
             {} applied ahead by gap lookups, {} evicted and read back, {} through the spill",
            report.bulk_events,
            report.bulk_seconds,
            report.bulk_events_per_s,
            report.peak_rss_bytes / 1_000_000,
            report.bulk_held_peak,
            report.held_limit.map_or("none".to_owned(), |l| l.to_string()),
            report.bulk_fetched,
            report.bulk_evicted,
            report.bulk_spilled
        );
        state.record(&config.state_path, "v3_live", &report)?;
    }

    if !state.done("rebuild_and_cutover") {
        say(3, "rebuild v4 with catch-up while the producer appends and readers read; cut over");
        let figures = rebuild_and_cutover(config).await?;
        println!(
            "v4: replay {:.0} events/s over {} events; producer {:.0} events/s; cutover {:.2} ms after {} refusals; \
             reads: {} ({} failed, {} version regressions), worst p99 {:.2} ms",
            figures.bulk_events_per_s,
            figures.bulk_events,
            figures.produced_events_per_s,
            figures.cutover_switch_ms,
            figures.cutover_refusals,
            figures.reads.requests,
            figures.reads.failed,
            figures.reads.version_regressions,
            figures.reads.max_p99_ms
        );
        state.record(&config.state_path, "rebuild_and_cutover", &figures)?;
    }

    if !state.done("verify") {
        say(4, "freeze v3 and v4 at one position; verify v4 (0 diffs) and v3 (its fee-bug set only)");
        let figures = verify(url).await?;
        state.record(&config.state_path, "verify", &figures)?;
    }
    Ok(state)
}

fn say(n: usize, what: &str) {
    println!("\n== step {n}/{}: {what}", STEPS.len());
}

/// Step 3. Resumes a v4 replay left half-done (the registry keeps its boundary, the offsets
/// its finished partitions); a v4 already active is past its cutover.
async fn rebuild_and_cutover(config: &LargeConfig) -> Result<RebuildFigures> {
    let url = config.database_url.clone();
    let client = eventlog::connect(&url).await?;
    if readmodel::version_info(&client, "v4").await.is_ok_and(|i| i.state == readmodel::State::Active) {
        info!("v4 is already active: the cutover happened before a crash");
        return Ok(RebuildFigures {
            replay_seconds: 0.0,
            bulk_events: 0,
            bulk_events_per_s: 0.0,
            bulk_mb_per_s: 0.0,
            replay_peak_rss_bytes: 0,
            produced_events: 0,
            produced_events_per_s: 0.0,
            cutover_switch_ms: 0.0,
            cutover_refusals: 0,
            reads: ReadsSummary::default(),
        });
    }
    std::fs::create_dir_all(&config.out_dir).with_context(|| format!("creating {}", config.out_dir.display()))?;
    let aggregates: i64 = client.query_one("SELECT count(*) FROM lab.expected_accounts", &[]).await?.get(0);
    let addr = crate::start_api(&url).await?;
    let base = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = {
        let (url, stop) = (url.clone(), stop_rx.clone());
        let cfg = lab::ProduceConfig::new(config.ingest, None, 11);
        tokio::spawn(async move { lab::produce::run(&url, cfg, stop).await })
    };
    let live_v3 = {
        let cfg = projector::LiveConfig::new(&url, V3);
        let stop = stop_rx.clone();
        tokio::spawn(async move { projector::run_live(&cfg, stop).await })
    };
    let (readers_stop_tx, readers_stop) = tokio::sync::watch::channel(false);
    let readers = {
        let cfg = loadgen::LoadConfig {
            url: base.clone(),
            concurrency: config.readers,
            duration: Duration::from_secs(30),
            rate: None,
            aggregates: aggregates as u64,
            ids: None,
            family: None,
            zipf: 1.1,
            seed: 13,
            csv_path: None,
        };
        tokio::spawn(read_until(cfg, readers_stop))
    };
    let started = Instant::now();
    let replay_v4 = {
        let cfg = projector::ReplayConfig {
            workers: config.workers,
            stop_at_head: false,
            progress: true,
            rate_limit: config.replay_rate_limit,
            ..projector::ReplayConfig::new(&url, V4)
        };
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            projector::reset_peak_rss();
            projector::replay(&cfg, stop).await
        })
    };
    loop {
        let ready = readmodel::version_info(&client, "v4").await.is_ok_and(|i| i.state == readmodel::State::Ready);
        if ready {
            break;
        }
        if replay_v4.is_finished() {
            let outcome = replay_v4.await.context("replay task")?;
            outcome.context("replaying v4")?;
            bail!("the v4 replay ended before v4 was ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let replay_seconds = started.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let mut refusals = 0u64;
    let switch_ms = loop {
        let resp = http
            .post(format!("{base}/cutover"))
            .bearer_auth(crate::serving::admin_token().expose())
            .json(&serde_json::json!({"version": "v4"}))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            break body["switch_ms"].as_f64().unwrap_or(f64::NAN);
        }
        if status.as_u16() != 409 || refusals > 100_000 {
            bail!("cutover failed: {status} {body}");
        }
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    info!(switch_ms, refusals, "switched to v4; readers go on a little");
    tokio::time::sleep(config.after_cutover).await;
    readers_stop_tx.send(true).ok();
    let reads = readers.await.context("readers task")??;
    stop_tx.send(true).ok();
    let produced = producer.await.context("producer task")?.context("producer")?;
    live_v3.await.context("live v3 task")?.context("live v3")?;
    let replay = replay_v4.await.context("replay task")?.context("replaying v4")?;
    if reads.failed > 0 {
        bail!("{} reads failed during the rebuild and cutover: {:?}", reads.failed, reads.failures);
    }
    Ok(RebuildFigures {
        replay_seconds,
        bulk_events: replay.bulk_events,
        bulk_events_per_s: replay.bulk_events_per_s,
        bulk_mb_per_s: replay.bulk_mb_per_s,
        replay_peak_rss_bytes: replay.peak_rss_bytes,
        produced_events: produced.events,
        produced_events_per_s: produced.events as f64 / produced.seconds.max(1e-9),
        cutover_switch_ms: switch_ms,
        cutover_refusals: refusals,
        reads,
    })
}

/// Runs the load driver in back-to-back runs of `cfg.duration` until `stop` flips, and sums
/// them (a run in progress when it flips is finished first).
async fn read_until(cfg: loadgen::LoadConfig, stop: tokio::sync::watch::Receiver<bool>) -> Result<ReadsSummary> {
    let mut sum = ReadsSummary::default();
    let mut cfg = cfg;
    while !*stop.borrow() {
        cfg.seed += 1;
        let r = loadgen::run(&cfg).await.context("readers")?;
        sum.runs += 1;
        sum.requests += r.requests;
        sum.failed += r.failed;
        sum.not_found += r.not_found;
        sum.version_regressions += r.version_regressions;
        for (v, n) in &r.versions_served {
            *sum.versions_served.entry(v.clone()).or_default() += n;
        }
        sum.max_p99_ms = sum.max_p99_ms.max(r.p99_ms);
        sum.failures.extend(r.failures.into_iter().take(5usize.saturating_sub(sum.failures.len())));
        // Shorter runs once the cutover is behind, so the readers stop soon after.
        cfg.duration = cfg.duration.min(Duration::from_secs(5));
    }
    Ok(sum)
}

/// Step 4: freezes v3 and v4 at one position X, compares each with the generator's truth and
/// with each other.
async fn verify(url: &str) -> Result<VerifyFigures> {
    let started = Instant::now();
    let client = eventlog::connect(url).await?;
    let x = eventlog::snapshot_xmax(&client).await?;
    let never = tokio::sync::watch::channel(false).1;
    let v3 = projector::LiveConfig { until: Some(x), ..projector::LiveConfig::new(url, V3) };
    projector::run_live(&v3, never.clone()).await.with_context(|| format!("freezing v3 at {x}"))?;
    let v4 = projector::LiveConfig { until: Some(x), ..projector::LiveConfig::new(url, V4) };
    projector::run_live(&v4, never.clone()).await.with_context(|| format!("freezing v4 at {x}"))?;
    let v4 = lab::verify::against_expected(&client, &V4).await?;
    println!("{}", v4.render());
    let v3 = lab::verify::against_expected(&client, &V3).await?;
    println!("{}", v3.render());
    let between = lab::verify::between_versions(&client, &V4, &V3).await?;
    println!("{}", between.render());
    let figures = VerifyFigures {
        frozen_at: x,
        v4_diffs: v4.diffs,
        v3_diffs: v3.diffs,
        v3_expected_diffs: v3.expected_diffs,
        v3_unexpected: v3.unexpected,
        v4_vs_v3_unexpected: between.unexpected,
        seconds: started.elapsed().as_secs_f64(),
        ok: v4.ok && v3.ok && between.unexpected == 0,
    };
    if !figures.ok {
        bail!("verification failed at X = {x}: {figures:?}");
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_keep_a_worker_map_within_its_budget() {
        assert_eq!(choose_partitions(100_000, 1 << 30), 16, "small tiers keep the default");
        assert_eq!(choose_partitions(10_000_000, 1 << 30), 16);
        let p = choose_partitions(100_000_000, 1 << 30);
        assert!(100_000_000u64.div_ceil(p as u64) * FOLD_BYTES_PER_AGGREGATE <= 1 << 30, "P = {p}");
        assert_eq!(p, 64);
    }

    #[test]
    fn the_disk_need_counts_log_read_side_and_wal() {
        let need = required_bytes(100_000_000, 10_000_000, 2_000_000_000);
        // 45 GB of log, 8 GB of read side, 4 GB of WAL, plus 10%.
        assert_eq!(need, (45_000_000_000u64 + 8_000_000_000 + 4_000_000_000) * 11 / 10);
    }

    #[test]
    fn the_state_file_round_trips_and_names_its_steps() {
        let dir = std::env::temp_dir().join(format!("reproject-large-{}", std::process::id()));
        let path = dir.join("state.json");
        let mut s = LargeState {
            params: LargeParams { events: 1_000_000, aggregates: 100_000, partitions: 16 },
            steps: BTreeMap::new(),
        };
        s.record(&path, "seed", &serde_json::json!({"events": 1})).unwrap();
        let back = LargeState::load(&path).unwrap().unwrap();
        assert!(back.done("seed") && !back.done("v3_live"));
        assert_eq!(back.params, s.params);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
