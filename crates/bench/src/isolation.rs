//! `bench isolation` (experiment 3): live read latency with no replay, during a full-speed
//! replay, during a replay under a fixed rate limit, and during an adaptive one (AIMD on the live
//! p99); what isolation costs in replay events/s.
//!
//! A sub-millisecond p99 drifts between two identical no-replay phases run a minute apart by
//! more than the 10% an adaptive replay is allowed (measured: 0.71 to 1.51 ms for the same load
//! in one run). So the adaptive replay is measured against its own pauses: one replay runs
//! through the phase, stopped (`SIGSTOP`) and resumed (`SIGCONT`) in alternating blocks of a few
//! seconds, and the figure is the p99 of every request of the blocks it ran over the p99 of
//! every request of the blocks it was paused in. Both sides come from the same minutes, so a
//! drift of the machine falls on both. The first second of each block (the switch) counts on
//! neither side.
//!
//! A paused replay still holds its memory and its open COPY transactions. Whether that alone
//! costs the live reads anything is the presence check, the last phase: blocks in which a
//! replay process was started and then stopped, interleaved with blocks in which none exists.
//!
//! The live API and the load driver run in this process; each replay runs as a separate process
//! (`reproject projector --mode replay`, this same binary), as in production, so it competes for
//! the CPU as a process and can be throttled, deprioritized, pinned, paused and stopped on its
//! own. The protected phases (fixed limit, adaptive, presence check, rate curve) run it at
//! [`IsolationConfig::protected_priority`] (by default nice 19; `SCHED_IDLE` and its own cores
//! on request), its PostgreSQL backends too; full speed stays the unprotected worst case at
//! normal priority, on every core. With [`IsolationConfig::live_cpus`] the live path is kept
//! on the other cores ([`LivePinned`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use fold::Projection;
use lab::bank::{V3, V4};
use projector::CpuPriority;
use serde::Serialize;

use crate::cpu_split::LivePinned;
use crate::serving::{build_active, reset_read_side, start_api};

/// Configuration of `bench isolation`.
#[derive(Debug, Clone)]
pub struct IsolationConfig {
    pub database_url: String,
    /// Replay workers.
    pub workers: usize,
    /// Length of each phase but the adaptive one.
    pub duration: Duration,
    /// Pairs of (paused, running) blocks of the adaptive phase.
    pub rounds: usize,
    /// Length of each block of the adaptive phase.
    pub block: Duration,
    /// Live reads per second, fixed across phases.
    pub request_rate: f64,
    /// Concurrent readers.
    pub concurrency: usize,
    /// The fixed-limit phase's rate (events/s); default a quarter of the full-speed rate.
    pub fixed_rate_limit: Option<f64>,
    /// The adaptive phase's allowance over the baseline p99 (0.10 = 10%).
    pub max_live_p99_increase: f64,
    /// The CPU priority of the protected replays (fixed limit, adaptive, presence check, curve).
    pub protected_priority: CpuPriority,
    /// The cores of the live path (this process: the API and the load; the PostgreSQL server's
    /// processes), one bit per core; 0: not pinned. The protected replays' cores are in
    /// `protected_priority.cpus`.
    pub live_cpus: u64,
    /// The rate curve: fixed rates as fractions of the full-speed rate, each measured paused
    /// and running like the adaptive phase (none: no curve).
    pub curve: Vec<f64>,
    /// Pairs of (paused, running) blocks of each point of the curve.
    pub curve_rounds: usize,
    pub out_dir: PathBuf,
}

/// One phase: the live latency and what the replay beside it achieved.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationPhase {
    pub phase: String,
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The replay's limit in this phase (none: full speed or no replay).
    pub rate_limit: Option<f64>,
    /// Events the replay read and folded during the phase.
    pub replay_events: u64,
    /// `replay_events` over the time the replay ran.
    pub replay_events_per_s: f64,
    /// The replay finished its bulk phase before the phase ended (the log is too small for the
    /// phase: part of the phase ran without a replay).
    pub replay_finished_early: bool,
    /// The replay process's CPU priority (also its PostgreSQL backends'), as
    /// [`CpuPriority::describe`] puts it; none: no replay.
    pub replay_priority: Option<String>,
}

/// One point of the rate curve: a replay at a fixed fraction of its full-speed rate, paused
/// and running in alternating blocks, as the adaptive replay is.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub fraction_of_full_speed: f64,
    pub rate_limit: f64,
    /// Events over the time the replay was not paused.
    pub replay_events_per_s: f64,
    /// The p99 of the running blocks' reads over that of the paused blocks' reads.
    pub p99_ratio: f64,
    pub p99_ratio_ci90: [f64; 2],
    pub p50_ratio: f64,
}

/// Figures of `bench isolation`.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationBench {
    pub aggregates: i64,
    pub log_events: i64,
    pub phase_seconds: f64,
    pub request_rate: f64,
    pub concurrency: usize,
    pub workers: usize,
    pub baseline_p50_ms: f64,
    pub baseline_p99_ms: f64,
    pub p99_ratio_full_speed: f64,
    pub p99_ratio_fixed_limit: f64,
    /// The p99 of the requests of the blocks the adaptive replay ran over the p99 of those of
    /// the blocks it was paused in.
    pub p99_ratio_adaptive: f64,
    /// The same ratio per round (a paused block and the running block after it).
    pub p99_ratio_adaptive_rounds: Vec<f64>,
    /// A 90% bootstrap interval of `p99_ratio_adaptive`: its rounds drawn with replacement.
    pub p99_ratio_adaptive_ci90: [f64; 2],
    /// The p99 of the adaptive phase's paused blocks against the first no-replay phase.
    pub p99_ratio_paused_vs_no_replay: f64,
    /// A last no-replay phase, after every replay has exited, against the first: how far the
    /// machine drifted over the run.
    pub p99_ratio_no_replay_after: f64,
    /// The presence check: the p99 of the blocks with a stopped replay process over that of the
    /// blocks with none (interleaved, as many of each as adaptive rounds).
    pub p99_ratio_stopped_vs_absent: f64,
    /// The same ratio per round (a stopped block and the absent block after it).
    pub p99_ratio_presence_rounds: Vec<f64>,
    /// A 90% bootstrap interval of `p99_ratio_stopped_vs_absent`, as the adaptive one's.
    pub p99_ratio_stopped_vs_absent_ci90: [f64; 2],
    pub p50_ratio_stopped_vs_absent: f64,
    pub p50_ratio_full_speed: f64,
    pub p50_ratio_fixed_limit: f64,
    pub p50_ratio_adaptive: f64,
    pub replay_events_per_s_full_speed: f64,
    pub replay_events_per_s_fixed_limit: f64,
    pub replay_events_per_s_adaptive: f64,
    pub fixed_rate_limit: f64,
    pub max_live_p99_increase: f64,
    pub adaptive_rounds: usize,
    pub adaptive_block_seconds: f64,
    /// The adaptive controller's baseline, threshold and rates.
    pub adaptive: Option<projector::AdaptiveReport>,
    pub failed_reads: u64,
    /// The rate curve (`--curve`), in the order measured.
    pub curve: Vec<CurvePoint>,
    /// The cores the live path was kept on (`--cpu-split`); none: not pinned.
    pub live_cores: Option<String>,
    pub phases: Vec<IsolationPhase>,
    /// Caveats of this run (a replay that finished before its phase ended).
    pub notes: Vec<String>,
}

/// How long a replay gets to stop after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How one phase's replay runs (a child process `reproject projector --mode replay`).
struct ReplaySpec {
    rate_limit: Option<f64>,
    adaptive: Option<projector::AdaptiveConfig>,
    priority: CpuPriority,
}

/// What the replay child printed at its end (its `ReplayReport`, the fields used here).
struct ChildReport {
    bulk_events: u64,
    bulk_seconds: f64,
    adaptive: Option<projector::AdaptiveReport>,
}

impl ChildReport {
    fn parse(line: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(line).context("the replay's report is not JSON")?;
        let num = |v: &serde_json::Value, key: &str| v.get(key).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        let adaptive = match v.get("adaptive").filter(|a| a.is_object()) {
            Some(a) => Some(serde_json::from_value(a.clone()).context("the replay's adaptive report")?),
            None => None,
        };
        Ok(ChildReport {
            bulk_events: v
                .get("bulk_events")
                .and_then(serde_json::Value::as_u64)
                .context("no bulk_events in the report")?,
            bulk_seconds: num(&v, "bulk_seconds"),
            adaptive,
        })
    }
}

/// A replay running as a child process of this binary, its stdout collected in the background.
struct ReplayChild {
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<std::io::Result<String>>,
}

impl ReplayChild {
    fn spawn(config: &IsolationConfig, spec: &ReplaySpec) -> Result<Self> {
        let exe = std::env::current_exe().context("locating this binary to run the replay")?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["--log", "warn", "projector", "--mode", "replay", "--version", V4.name()])
            .args(["--workers", &config.workers.to_string(), "--batch", "10000", "--stop-at-head"])
            .args(["--progress", "false", "--database-url", &config.database_url])
            .args(["--nice", &spec.priority.nice.to_string()]);
        if spec.priority.idle {
            cmd.arg("--sched-idle");
        }
        if spec.priority.cpus != 0 {
            cmd.args(["--cpus", &projector::priority::format_cpus(spec.priority.cpus)]);
        }
        if let Some(limit) = spec.rate_limit {
            cmd.args(["--rate-limit", &limit.to_string()]);
        }
        if let Some(a) = &spec.adaptive {
            cmd.args(["--max-live-p99-increase", &a.max_live_p99_increase.to_string()]).args([
                "--live-api",
                &a.api_url,
                "--probe-aggregates",
                &a.probe_aggregates.to_string(),
                "--live-p99-from",
                a.source.as_str(),
            ]);
        }
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {} projector --mode replay", exe.display()))?;
        let mut out = child.stdout.take().expect("stdout is piped");
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text).await?;
            Ok(text)
        });
        tracing::info!(pid = child.id(), priority = %spec.priority.describe(), "replay child started");
        Ok(ReplayChild { child, stdout })
    }

    /// Sends `signal` to the child (a no-op once it has exited).
    fn signal(&mut self, signal: libc::c_int) -> Result<()> {
        if let (None, Some(pid)) = (self.child.try_wait()?, self.child.id()) {
            // SAFETY: kill takes plain integers; `pid` is our own, not yet reaped, child.
            if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
                anyhow::bail!("signal {signal} to the replay (pid {pid}): {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Whether the child has exited on its own (the replay finished).
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL, and wait for the exit; its report is not needed.
    async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGINT (the CLI stops the replay gracefully and prints its report), then wait; SIGKILL
    /// after [`STOP_GRACE`]. Returns the report on the child's stdout.
    async fn stop(mut self) -> Result<ChildReport> {
        // A paused child would not see the SIGINT until resumed.
        for signal in [libc::SIGCONT, libc::SIGINT] {
            if let Err(e) = self.signal(signal) {
                tracing::warn!(error = %e, "stopping the replay");
            }
        }
        let status = match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                tracing::warn!("the replay did not stop within {STOP_GRACE:?} of SIGINT: killing it");
                self.child.kill().await?;
                anyhow::bail!("the replay did not stop within {STOP_GRACE:?} of SIGINT (killed)");
            }
        };
        let out = self.stdout.await?.context("reading the replay's stdout")?;
        if !status.success() {
            anyhow::bail!("the replay exited with {status} (its error is on stderr above)");
        }
        let line = out.lines().rev().find(|l| !l.trim().is_empty()).context("the replay printed no report")?;
        ChildReport::parse(line)
    }
}

struct Bench<'a> {
    config: &'a IsolationConfig,
    base: String,
    aggregates: i64,
}

impl Bench<'_> {
    async fn load(&self, duration: Duration, csv: Option<PathBuf>) -> Result<loadgen::LoadReport> {
        let cfg = loadgen::LoadConfig {
            url: self.base.clone(),
            concurrency: self.config.concurrency,
            duration,
            rate: Some(self.config.request_rate),
            aggregates: self.aggregates as u64,
            zipf: 1.1,
            seed: 3,
            csv_path: csv,
        };
        Ok(loadgen::run(&cfg).await?)
    }

    /// Drops v4 and starts a replay of it from scratch in a child process.
    async fn spawn_replay(&self, spec: &ReplaySpec, phase: &str) -> Result<ReplayChild> {
        let mut client = eventlog::connect(&self.config.database_url).await?;
        readmodel::drop_version(&mut client, &V4).await.context("dropping v4")?;
        ReplayChild::spawn(self.config, spec).with_context(|| format!("replay in phase {phase}"))
    }

    /// Runs one phase: the load for the configured duration, beside a replay of v4 from
    /// scratch in a child process if `replay` is given, stopped (SIGINT) at the phase's end.
    async fn phase(&self, name: &str, replay: Option<ReplaySpec>) -> Result<IsolationPhase> {
        tracing::info!(phase = name, "phase starts");
        let rate_limit = replay.as_ref().and_then(|r| r.rate_limit.filter(|_| r.adaptive.is_none()));
        let priority = replay.as_ref().map(|r| r.priority.describe());
        let running = match &replay {
            Some(spec) => Some(self.spawn_replay(spec, name).await?),
            None => None,
        };
        let csv = self.config.out_dir.join(format!("isolation_{name}_load.csv"));
        let load = self.load(self.config.duration, Some(csv)).await.with_context(|| format!("load in phase {name}"))?;
        let (report, finished_early) = match running {
            Some(mut child) => {
                let early = child.exited();
                let report = child.stop().await.with_context(|| format!("replay in phase {name}"))?;
                (Some(report), early)
            }
            None => (None, false),
        };
        let (events, per_s) =
            report.as_ref().map_or((0, 0.0), |r| (r.bulk_events, r.bulk_events as f64 / r.bulk_seconds.max(1e-9)));
        let phase = IsolationPhase {
            phase: name.to_owned(),
            requests: load.requests,
            failed: load.failed,
            p50_ms: load.p50_ms,
            p99_ms: load.p99_ms,
            rate_limit,
            replay_events: events,
            replay_events_per_s: per_s,
            replay_finished_early: finished_early,
            replay_priority: priority,
        };
        log_phase(&phase);
        Ok(phase)
    }

    /// A paused-and-running phase: one replay through `rounds` pairs of blocks, paused in the
    /// first block of each pair and running in the second: the adaptive phase, and each point
    /// of the rate curve. The replay starts (and an adaptive controller measures its baseline)
    /// during an unmeasured warm-up.
    async fn paused_and_running(
        &self,
        spec: ReplaySpec,
        name: &str,
        rounds: usize,
        labels: Labels,
    ) -> Result<Interleaved> {
        let block = self.config.block;
        tracing::info!(phase = name, rounds, ?block, "one replay, paused and resumed in alternating blocks");
        let mut child = self.spawn_replay(&spec, name).await?;
        self.load(ADAPTIVE_WARMUP, None).await.context("warm-up load")?;
        let csv = self.config.out_dir.join(format!("isolation_{name}_load.csv"));
        let blocks = 2 * rounds as u32;
        let toggle = async {
            let start = tokio::time::Instant::now();
            for k in 0..blocks {
                child.signal(if k % 2 == 0 { libc::SIGSTOP } else { libc::SIGCONT })?;
                tokio::time::sleep_until(start + block * (k + 1)).await;
            }
            anyhow::Ok(())
        };
        let (load, toggled) = tokio::join!(self.load(block * blocks, Some(csv)), toggle);
        let resumed = child.signal(libc::SIGCONT);
        let early = child.exited();
        let report = child.stop().await.with_context(|| format!("replay in phase {name}"))?;
        toggled.context("pausing and resuming the replay")?;
        resumed.context("resuming the replay")?;
        let load = load.with_context(|| format!("load in phase {name}"))?;

        let block_s = block.as_secs();
        let ([paused, running], per_block) = pool_blocks(&load.seconds, block_s, blocks, labels);
        let paused_seconds = (rounds as u64 * block_s) as f64;
        let running_seconds = (report.bulk_seconds - paused_seconds).max(1e-9);
        let paused = paused.phase(None, 0, 0.0, false);
        let running =
            running.phase(Some(spec.priority), report.bulk_events, report.bulk_events as f64 / running_seconds, early);
        log_phase(&paused);
        log_phase(&running);
        let (ratios, ci90) =
            (round_ratios(&per_block, RUNNING_OVER_PAUSED), bootstrap_p99_ratio(&per_block, RUNNING_OVER_PAUSED));
        let blocks = block_rows(&per_block);
        Ok(Interleaved {
            first: paused,
            second: running,
            ratios,
            ci90,
            blocks,
            report: report.adaptive,
            notes: Vec::new(),
        })
    }

    /// The presence check: `rounds` pairs of blocks, the first with a replay process (started at
    /// the block's start, stopped with SIGSTOP after [`PRESENCE_RUN`], holding its open COPY
    /// transactions and its memory), the second with none (the replay stopped and exited at
    /// the block's start). Whether a replay that does no work costs the live reads anything,
    /// which the adaptive phase's paused blocks cannot show.
    async fn presence_phase(&self, spec: ReplaySpec) -> Result<Interleaved> {
        let (rounds, block) = (self.config.rounds, self.config.block);
        tracing::info!(
            rounds,
            ?block,
            "presence check starts: a stopped replay process and none, in alternating blocks"
        );
        let csv = self.config.out_dir.join("isolation_presence_load.csv");
        let blocks = 2 * rounds as u32;
        let toggle = async {
            let start = tokio::time::Instant::now();
            let mut notes = Vec::new();
            for k in 0..blocks / 2 {
                let mut child = self.spawn_replay(&spec, "presence").await?;
                tokio::time::sleep(PRESENCE_RUN).await;
                child.signal(libc::SIGSTOP)?;
                let absent_from = start + block * (2 * k + 1);
                tokio::time::sleep_until(absent_from).await;
                // Killed, not stopped gracefully: a graceful stop runs the replay for a while
                // (over a second), into the block that is to have none.
                child.kill().await.context("killing the replay of the presence check")?;
                let took = absent_from.elapsed();
                if took > Duration::from_secs(1) {
                    notes.push(format!(
                        "presence round {k}: the replay took {took:?} to exit, past the first second of the block without it"
                    ));
                }
                tokio::time::sleep_until(start + block * (2 * k + 2)).await;
            }
            anyhow::Ok(notes)
        };
        let (load, toggled) = tokio::join!(self.load(block * blocks, Some(csv)), toggle);
        let notes = toggled?;
        let load = load.context("load in the presence check")?;
        let ([stopped, absent], per_block) = pool_blocks(&load.seconds, block.as_secs(), blocks, PRESENCE_LABELS);
        let (stopped, absent) = (stopped.phase(None, 0, 0.0, false), absent.phase(None, 0, 0.0, false));
        log_phase(&stopped);
        log_phase(&absent);
        let (ratios, ci90) =
            (round_ratios(&per_block, STOPPED_OVER_ABSENT), bootstrap_p99_ratio(&per_block, STOPPED_OVER_ABSENT));
        let blocks = block_rows(&per_block);
        Ok(Interleaved { first: stopped, second: absent, ratios, ci90, blocks, report: None, notes })
    }

    /// The rate curve: for each of `config.curve`, a replay at that fraction of `full_speed`
    /// (events/s), paused and running in `config.curve_rounds` pairs of blocks. Returns the
    /// points and the failed reads of all of them; writes `isolation_curve.csv` and `.svg`.
    async fn curve(&self, full_speed: f64) -> Result<(Vec<CurvePoint>, u64)> {
        let mut points = Vec::new();
        let mut failed = 0;
        for &fraction in &self.config.curve {
            let rate = (full_speed * fraction).max(projector::adaptive::FLOOR);
            let spec = ReplaySpec { rate_limit: Some(rate), adaptive: None, priority: self.config.protected_priority };
            let name = format!("curve_{:.0}", fraction * 1e4);
            let phase = self.paused_and_running(spec, &name, self.config.curve_rounds, CURVE_LABELS).await?;
            failed += phase.first.failed + phase.second.failed;
            points.push(CurvePoint {
                fraction_of_full_speed: fraction,
                rate_limit: rate,
                replay_events_per_s: phase.second.replay_events_per_s,
                p99_ratio: phase.second.p99_ms / phase.first.p99_ms,
                p99_ratio_ci90: phase.ci90,
                p50_ratio: phase.second.p50_ms / phase.first.p50_ms,
            });
        }
        if points.is_empty() {
            return Ok((points, failed));
        }
        crate::write_csv(
            &self.config.out_dir.join("isolation_curve.csv"),
            &[
                "fraction_of_full_speed",
                "rate_limit",
                "replay_events_per_s",
                "p99_ratio",
                "ci90_low",
                "ci90_high",
                "p50_ratio",
            ],
            &points
                .iter()
                .map(|p| {
                    vec![
                        format!("{:.4}", p.fraction_of_full_speed),
                        format!("{:.0}", p.rate_limit),
                        format!("{:.0}", p.replay_events_per_s),
                        format!("{:.3}", p.p99_ratio),
                        format!("{:.3}", p.p99_ratio_ci90[0]),
                        format!("{:.3}", p.p99_ratio_ci90[1]),
                        format!("{:.3}", p.p50_ratio),
                    ]
                })
                .collect::<Vec<_>>(),
        )?;
        let series = |label: &str, y: fn(&CurvePoint) -> f64| {
            (label.to_owned(), points.iter().map(|p| (p.fraction_of_full_speed * 100.0, y(p))).collect())
        };
        crate::plot::lines(
            &self.config.out_dir.join("isolation_curve.svg"),
            "Live p99 beside a replay at a fixed rate, running vs. paused",
            "replay rate (% of full speed)",
            "p99 running / p99 paused",
            &[
                series("p99 ratio", |p| p.p99_ratio),
                series("90% interval, low", |p| p.p99_ratio_ci90[0]),
                series("90% interval, high", |p| p.p99_ratio_ci90[1]),
            ],
            true,
        )?;
        Ok((points, failed))
    }
}

/// How long the replay of a presence block runs (connects, starts its COPY streams) before it
/// is stopped; inside the block's first second, which counts nowhere.
const PRESENCE_RUN: Duration = Duration::from_millis(700);

/// Writes an interleaved phase's blocks as CSV and plots their p99 over time, one line per side.
fn write_blocks(config: &IsolationConfig, name: &str, title: &str, phase: &Interleaved, labels: Labels) -> Result<()> {
    crate::write_csv(
        &config.out_dir.join(format!("{name}.csv")),
        &["block", "replay", "requests", "p99_ms"],
        &phase
            .blocks
            .iter()
            .map(|(k, state, n, p99)| vec![k.to_string(), (*state).to_owned(), n.to_string(), format!("{p99:.3}")])
            .collect::<Vec<_>>(),
    )?;
    let block_s = config.block.as_secs_f64();
    let series = |state: &str| {
        let points = phase.blocks.iter().filter(|b| b.1 == state).map(|b| (b.0 as f64 * block_s, b.3)).collect();
        (format!("replay {state}"), points)
    };
    crate::plot::lines(
        &config.out_dir.join(format!("{name}.svg")),
        title,
        "seconds into the phase",
        "p99 latency (ms)",
        &[series(labels.blocks[0]), series(labels.blocks[1])],
        false,
    )
}

/// Load of the adaptive phase before its blocks start: the controller's baseline (the replay not
/// yet started), then the replay's start-up and first seconds.
const ADAPTIVE_WARMUP: Duration = Duration::from_secs(projector::adaptive::BASELINE.as_secs() + 3);

/// What an interleaved phase (the adaptive one, the presence check) measured.
struct Interleaved {
    /// The requests of the first block of every round, pooled (paused; stopped).
    first: IsolationPhase,
    /// The requests of the second block of every round, pooled (running; absent).
    second: IsolationPhase,
    /// Per round: the ratio of the two blocks' p99s, as the phase's figure puts it.
    ratios: Vec<f64>,
    /// A 90% bootstrap interval of the phase's figure ([`bootstrap_p99_ratio`]).
    ci90: [f64; 2],
    /// Per block: index, state, requests, p99 (ms).
    blocks: Vec<(usize, &'static str, u64, f64)>,
    report: Option<projector::AdaptiveReport>,
    /// Caveats (a replay slow to exit in the presence check).
    notes: Vec<String>,
}

/// The names of an interleaved phase's two sides (as phases) and of their blocks.
#[derive(Clone, Copy)]
struct Labels {
    sides: [&'static str; 2],
    blocks: [&'static str; 2],
}

/// The adaptive phase: the replay paused, then running.
const ADAPTIVE_LABELS: Labels = Labels { sides: ["adaptive_paused", "adaptive"], blocks: ["paused", "running"] };
/// A point of the rate curve: the replay paused, then running.
const CURVE_LABELS: Labels = Labels { sides: ["curve_paused", "curve_running"], blocks: ["paused", "running"] };
/// The presence check: a stopped replay process, then none.
const PRESENCE_LABELS: Labels =
    Labels { sides: ["presence_stopped", "presence_absent"], blocks: ["stopped", "absent"] };

/// Pools an interleaved phase's seconds: block `k` holds seconds `[k * block_s, (k + 1) *
/// block_s)`, of the first side when `k` is even, of the second when odd. Returns both sides and
/// every block. The first second of a block holds the switch, so its latencies count nowhere,
/// nor do those of seconds past the last block; their failed reads count all the same (to the
/// last block, past it).
fn pool_blocks(seconds: &[loadgen::Second], block_s: u64, blocks: u32, labels: Labels) -> ([Side; 2], Vec<Side>) {
    let mut sides = labels.sides.map(Side::new);
    let mut per_block: Vec<Side> = (0..blocks).map(|k| Side::new(labels.blocks[(k % 2) as usize])).collect();
    for second in seconds {
        let k = second.second / block_s;
        let counted = k < u64::from(blocks) && second.second % block_s != 0;
        let k = k.min(u64::from(blocks) - 1);
        for side in [&mut sides[(k % 2) as usize], &mut per_block[k as usize]] {
            side.failed += second.failed;
            if counted {
                side.hist.add(&second.latency_us).expect("the load driver's histograms share their bounds");
            }
        }
    }
    (sides, per_block)
}

/// Which block of a round is over which in an interleaved phase's figure: `[numerator,
/// denominator]`, 0 the first block of the round, 1 the second.
type Orientation = [usize; 2];
/// The adaptive phase and the curve: the running block (second) over the paused one (first).
const RUNNING_OVER_PAUSED: Orientation = [1, 0];
/// The presence check: the stopped block (first) over the absent one (second).
const STOPPED_OVER_ABSENT: Orientation = [0, 1];

/// Per round, the ratio of its two blocks' p99s, oriented as `pair`.
fn round_ratios(per_block: &[Side], pair: Orientation) -> Vec<f64> {
    per_block.chunks_exact(2).map(|round| round[pair[0]].p99_ms() / round[pair[1]].p99_ms()).collect()
}

/// Resamples of [`bootstrap_p99_ratio`].
const RESAMPLES: usize = 2_000;

/// A 90% bootstrap interval of an interleaved phase's figure: the p99 of the pooled reads of
/// one block of every round (`pair[0]`: 0 the first, 1 the second) over that of the other's.
/// The rounds are drawn with replacement, [`RESAMPLES`] times, and each draw is pooled as the
/// figure pools them; the interval runs from the 5th to the 95th percentile of the draws'
/// ratios. A round (two adjacent blocks) is the unit drawn, so a drift of the machine that
/// spans both its blocks stays paired. Seeded: the same blocks give the same interval.
fn bootstrap_p99_ratio(per_block: &[Side], pair: Orientation) -> [f64; 2] {
    use rand::{Rng, SeedableRng};
    let rounds: Vec<&[Side]> = per_block.chunks_exact(2).collect();
    if rounds.is_empty() {
        return [f64::NAN; 2];
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let [mut num, mut den] = [Side::new("num"), Side::new("den")];
            for _ in 0..rounds.len() {
                let round = rounds[rng.gen_range(0..rounds.len())];
                num.hist.add(&round[pair[0]].hist).expect("the load driver's histograms share their bounds");
                den.hist.add(&round[pair[1]].hist).expect("the load driver's histograms share their bounds");
            }
            num.p99_ms() / den.p99_ms()
        })
        .filter(|r| r.is_finite())
        .collect();
    if ratios.is_empty() {
        return [f64::NAN; 2];
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    [at(0.05), at(0.95)]
}

/// Per block: index, state, requests, p99 (ms).
fn block_rows(per_block: &[Side]) -> Vec<(usize, &'static str, u64, f64)> {
    per_block.iter().enumerate().map(|(k, b)| (k, b.name, b.hist.len(), b.p99_ms())).collect()
}

/// The seconds of one side (or block) of an interleaved phase, pooled.
struct Side {
    name: &'static str,
    hist: hdrhistogram::Histogram<u64>,
    failed: u64,
}

impl Side {
    fn new(name: &'static str) -> Side {
        Side { name, hist: loadgen::new_hist(), failed: 0 }
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1e3
        }
    }

    fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    fn phase(
        &self,
        priority: Option<CpuPriority>,
        events: u64,
        events_per_s: f64,
        finished_early: bool,
    ) -> IsolationPhase {
        IsolationPhase {
            phase: self.name.to_owned(),
            requests: self.hist.len(),
            failed: self.failed,
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.p99_ms(),
            rate_limit: None,
            replay_events: events,
            replay_events_per_s: events_per_s,
            replay_finished_early: finished_early,
            replay_priority: priority.map(CpuPriority::describe),
        }
    }
}

fn log_phase(phase: &IsolationPhase) {
    tracing::info!(
        phase = phase.phase,
        p50_ms = phase.p50_ms,
        p99_ms = phase.p99_ms,
        replay_events_per_s = phase.replay_events_per_s,
        "phase done"
    );
}

/// Experiment 3: v3 active behind the in-process API; the load at a fixed rate in phases: no
/// replay, a full-speed replay of v4, a replay at a fixed limit (each `duration` long), the
/// adaptive replay, paused and running in `rounds` pairs of `block`-long blocks, no replay
/// again, and the presence check (`rounds` pairs of blocks with a stopped replay process and with
/// none). Each replay starts from scratch and is stopped at its phase's end.
pub async fn isolation_bench(config: &IsolationConfig) -> Result<IsolationBench> {
    let url = config.database_url.clone();
    reset_read_side(&url).await?;
    tracing::info!("building v3 (the live, active version)");
    build_active(&url, V3, config.workers).await?;
    let client = eventlog::connect(&url).await?;
    let aggregates: i64 = client.query_one("SELECT count(*) FROM lab.expected_accounts", &[]).await?.get(0);
    let log_events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let addr: SocketAddr = start_api(&url).await?;
    let _pinned = match config.live_cpus {
        0 => None,
        cpus => Some(LivePinned::pin(&client, cpus).await?),
    };
    let bench = Bench { config, base: format!("http://{addr}"), aggregates };

    let none = bench.phase("no_replay", None).await?;
    // Full speed is the unprotected worst case: no limit, normal priority, every core (the
    // replay process and its backends would otherwise inherit the live path's cores).
    let every_core = if config.live_cpus == 0 { 0 } else { crate::cpu_split::every_core() };
    let full_spec = ReplaySpec {
        rate_limit: None,
        adaptive: None,
        priority: CpuPriority { cpus: every_core, ..CpuPriority::NORMAL },
    };
    let full = bench.phase("full_speed", Some(full_spec)).await?;
    let fixed_rate_limit = config.fixed_rate_limit.unwrap_or((full.replay_events_per_s * 0.25).max(1_000.0));
    let fixed_spec =
        ReplaySpec { rate_limit: Some(fixed_rate_limit), adaptive: None, priority: config.protected_priority };
    let fixed = bench.phase("fixed_limit", Some(fixed_spec)).await?;
    // The adaptive phase's ceiling is the full-speed rate: above it the limit would not bind.
    let adaptive_config = projector::AdaptiveConfig {
        api_url: bench.base.clone(),
        max_live_p99_increase: config.max_live_p99_increase,
        probe_aggregates: aggregates.max(1) as u64,
        source: projector::LatencySource::Metrics,
    };
    let ceiling = full.replay_events_per_s.max(10_000.0);
    let spec =
        ReplaySpec { rate_limit: Some(ceiling), adaptive: Some(adaptive_config), priority: config.protected_priority };
    let adaptive = bench.paused_and_running(spec, "adaptive", config.rounds, ADAPTIVE_LABELS).await?;
    write_blocks(
        config,
        "isolation_adaptive_blocks",
        "Live p99 per block: the adaptive replay paused and running, alternately",
        &adaptive,
        ADAPTIVE_LABELS,
    )?;
    // Whether a level the paused blocks share with the running ones is the machine's drift or
    // the paused replay's presence: the same load once every replay has exited, then a stopped
    // replay process against none, interleaved.
    let after = bench.phase("no_replay_after", None).await?;
    let presence_rate = adaptive.second.replay_events_per_s.max(projector::adaptive::FLOOR);
    let presence_spec =
        ReplaySpec { rate_limit: Some(presence_rate), adaptive: None, priority: config.protected_priority };
    let presence = bench.presence_phase(presence_spec).await?;
    write_blocks(
        config,
        "isolation_presence_blocks",
        "Live p99 per block: a stopped replay process and none, alternately",
        &presence,
        PRESENCE_LABELS,
    )?;
    let (curve, curve_failed) = bench.curve(full.replay_events_per_s).await?;
    let mut cleanup = eventlog::connect(&url).await?;
    readmodel::drop_version(&mut cleanup, &V4).await.context("dropping v4 after the run")?;
    let mut notes = presence.notes;
    let phases = vec![none, full, fixed, adaptive.first, adaptive.second, after, presence.first, presence.second];
    for p in phases.iter().filter(|p| p.replay_finished_early) {
        notes.push(format!(
            "phase {}: the replay finished before the phase ended; enlarge --events or shorten --duration",
            p.phase
        ));
    }
    let ratio = |v: f64, base: f64| if base > 0.0 { v / base } else { f64::NAN };
    let (b50, b99) = (phases[0].p50_ms, phases[0].p99_ms);
    crate::write_csv(
        &config.out_dir.join("isolation.csv"),
        &["phase", "p50_ms", "p99_ms", "replay_events_per_s"],
        &phases
            .iter()
            .map(|p| {
                vec![
                    p.phase.clone(),
                    format!("{:.3}", p.p50_ms),
                    format!("{:.3}", p.p99_ms),
                    format!("{:.0}", p.replay_events_per_s),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    crate::plot::bars(
        &config.out_dir.join("isolation.svg"),
        "Live read p99 beside a replay (experiment 3)",
        "p99 latency (ms)",
        &phases.iter().map(|p| (p.phase.replace('_', " "), p.p99_ms)).collect::<Vec<_>>(),
    )?;
    crate::plot::bars(
        &config.out_dir.join("isolation_replay.svg"),
        "Replay throughput by backpressure mode",
        "replay events/s",
        &phases
            .iter()
            .filter(|p| p.replay_priority.is_some())
            .map(|p| (p.phase.replace('_', " "), p.replay_events_per_s))
            .collect::<Vec<_>>(),
    )?;
    Ok(IsolationBench {
        aggregates,
        log_events,
        phase_seconds: config.duration.as_secs_f64(),
        request_rate: config.request_rate,
        concurrency: config.concurrency,
        workers: config.workers,
        baseline_p50_ms: b50,
        baseline_p99_ms: b99,
        p99_ratio_full_speed: ratio(phases[1].p99_ms, b99),
        p99_ratio_fixed_limit: ratio(phases[2].p99_ms, b99),
        p99_ratio_adaptive: ratio(phases[4].p99_ms, phases[3].p99_ms),
        p99_ratio_adaptive_rounds: adaptive.ratios,
        p99_ratio_adaptive_ci90: adaptive.ci90,
        p99_ratio_paused_vs_no_replay: ratio(phases[3].p99_ms, b99),
        p99_ratio_no_replay_after: ratio(phases[5].p99_ms, b99),
        p99_ratio_stopped_vs_absent: ratio(phases[6].p99_ms, phases[7].p99_ms),
        p99_ratio_presence_rounds: presence.ratios,
        p99_ratio_stopped_vs_absent_ci90: presence.ci90,
        p50_ratio_stopped_vs_absent: ratio(phases[6].p50_ms, phases[7].p50_ms),
        p50_ratio_full_speed: ratio(phases[1].p50_ms, b50),
        p50_ratio_fixed_limit: ratio(phases[2].p50_ms, b50),
        p50_ratio_adaptive: ratio(phases[4].p50_ms, phases[3].p50_ms),
        replay_events_per_s_full_speed: phases[1].replay_events_per_s,
        replay_events_per_s_fixed_limit: phases[2].replay_events_per_s,
        replay_events_per_s_adaptive: phases[4].replay_events_per_s,
        fixed_rate_limit,
        max_live_p99_increase: config.max_live_p99_increase,
        adaptive_rounds: config.rounds,
        adaptive_block_seconds: config.block.as_secs_f64(),
        adaptive: adaptive.report,
        failed_reads: phases.iter().map(|p| p.failed).sum::<u64>() + curve_failed,
        curve,
        live_cores: (config.live_cpus != 0).then(|| projector::priority::format_cpus(config.live_cpus)),
        phases,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second of the load whose requests all took `ms`.
    fn second(at: u64, ms: u64, requests: u64) -> loadgen::Second {
        let mut latency_us = loadgen::new_hist();
        latency_us.record_n(ms * 1000, requests).unwrap();
        loadgen::Second {
            second: at,
            ok: requests,
            failed: 0,
            p50_ms: ms as f64,
            p99_ms: ms as f64,
            versions: vec![],
            latency_us,
        }
    }

    #[test]
    fn blocks_alternate_paused_and_running_and_their_switch_seconds_count_nowhere() {
        // Two rounds of 3 s blocks over 13 s: paused 0-2, running 3-5, paused 6-8, running 9-11.
        // Switch seconds (0, 3, 6, 9) take 100 ms, paused seconds 1 ms, running ones 2 ms, and
        // second 12 (past the last block) 50 ms.
        let mut seconds: Vec<_> = (0..13)
            .map(|s| {
                let ms = match s {
                    12 => 50,
                    s if s % 3 == 0 => 100,
                    s if (s / 3) % 2 == 0 => 1,
                    _ => 2,
                };
                second(s, ms, 10)
            })
            .collect();
        seconds[3].failed = 2;
        seconds[12].failed = 1;
        let ([paused, running], blocks) = pool_blocks(&seconds, 3, 4, ADAPTIVE_LABELS);
        assert_eq!((paused.hist.len(), running.hist.len()), (40, 40));
        assert_eq!((paused.hist.max(), running.hist.max()), (1000, 2000), "no switch second, nothing past the end");
        assert_eq!(
            blocks.iter().map(|b| (b.name, b.hist.len())).collect::<Vec<_>>(),
            [("paused", 20), ("running", 20), ("paused", 20), ("running", 20)]
        );
        assert!((running.p99_ms() / paused.p99_ms() - 2.0).abs() < 0.01);
        assert_eq!((paused.name, running.name), ("adaptive_paused", "adaptive"));
        // Failed reads count wherever they fall: a switch second's in its block, a late one's in
        // the last block.
        assert_eq!((paused.failed, running.failed), (0, 3));
        assert_eq!(blocks.iter().map(|b| b.failed).collect::<Vec<_>>(), [0, 2, 0, 1]);
    }

    /// Blocks of 100 reads at `ms[k]` each, plus `extra[k]` reads at 5 ms.
    fn blocks_of(ms: &[u64], extra: &[u64]) -> Vec<Side> {
        ms.iter()
            .zip(extra)
            .map(|(&ms, &extra)| {
                let mut side = Side::new("block");
                side.hist.record_n(ms * 1000, 100).unwrap();
                if extra > 0 {
                    side.hist.record_n(5000, extra).unwrap();
                }
                side
            })
            .collect()
    }

    #[test]
    fn the_bootstrap_interval_of_a_steady_ratio_is_that_ratio_in_the_direction_asked() {
        let blocks = blocks_of(&[1, 2, 1, 2, 1, 2, 1, 2], &[0; 8]);
        let [lo, hi] = bootstrap_p99_ratio(&blocks, [1, 0]);
        assert!((lo - 2.0).abs() < 0.01 && (hi - 2.0).abs() < 0.01, "{lo} {hi}");
        let [lo, hi] = bootstrap_p99_ratio(&blocks, [0, 1]);
        assert!((lo - 0.5).abs() < 0.01 && (hi - 0.5).abs() < 0.01, "{lo} {hi}");
    }

    #[test]
    fn one_slow_round_out_of_ten_spreads_the_interval_from_none_to_its_whole_weight() {
        // Every block 100 reads at 1 ms; the second block of round 3 also 30 reads at 5 ms. Pooled,
        // the second side's p99 is 5 ms (30 of 1030 reads), so the figure is 5; a third of the
        // draws leave round 3 out (0.9^10) and give 1.
        let mut extra = [0; 20];
        extra[7] = 30;
        let blocks = blocks_of(&[1; 20], &extra);
        let [lo, hi] = bootstrap_p99_ratio(&blocks, [1, 0]);
        assert!((lo - 1.0).abs() < 0.01, "lower bound {lo}");
        assert!((hi - 5.0).abs() < 0.01, "upper bound {hi}");
        assert_eq!(bootstrap_p99_ratio(&blocks, [1, 0]), [lo, hi], "seeded: the same blocks, the same interval");
    }
}
