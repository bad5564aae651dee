//! `bench isolation` (experiment 3): live read latency with no replay, during a full-speed
//! replay, during a replay under a fixed rate limit, and during an adaptive one (AIMD on the live
//! p99); what isolation costs in replay events/s.
//!
//! A sub-millisecond p99 drifts between two identical no-replay phases by more than the 10% an
//! adaptive replay is allowed, so the adaptive phase runs in `rounds`, each paired with a
//! no-replay phase right before it on the same request sequence; the figure is the median of the
//! paired ratios.
//!
//! The live API and the load driver run in this process; each replay runs as a separate process
//! (`reproject projector --mode replay`, this same binary), as in production, so it competes for
//! the CPU as a process and can be throttled, niced and stopped on its own. The protected phases
//! (fixed limit, adaptive) run it at `--nice 19`, its PostgreSQL backends too; full speed stays
//! the unprotected worst case at normal priority.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use fold::Projection;
use serde::Serialize;

use crate::serving::{build_active, reset_read_side, start_api};

/// Configuration of `bench isolation`.
#[derive(Debug, Clone)]
pub struct IsolationConfig {
    pub database_url: String,
    /// Replay workers.
    pub workers: usize,
    /// Length of each phase.
    pub duration: Duration,
    /// Pairs of (no replay, adaptive replay) phases.
    pub rounds: usize,
    /// Live reads per second, fixed across phases.
    pub request_rate: f64,
    /// Concurrent readers.
    pub concurrency: usize,
    /// The fixed-limit phase's rate (events/s); default a quarter of the full-speed rate.
    pub fixed_rate_limit: Option<f64>,
    /// The adaptive phase's allowance over the baseline p99 (0.10 = 10%).
    pub max_live_p99_increase: f64,
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
    /// The replay process's niceness (also its PostgreSQL backends'); none: no replay.
    pub replay_nice: Option<i32>,
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
    /// The median over the rounds of (adaptive p99 / the p99 of the no-replay phase before it).
    pub p99_ratio_adaptive: f64,
    /// Each round's paired ratio.
    pub p99_ratio_adaptive_rounds: Vec<f64>,
    /// Each round's no-replay p99 against the first no-replay phase: the baseline's drift.
    pub p99_ratio_no_replay_rounds: Vec<f64>,
    pub p50_ratio_full_speed: f64,
    pub p50_ratio_fixed_limit: f64,
    pub p50_ratio_adaptive: f64,
    pub replay_events_per_s_full_speed: f64,
    pub replay_events_per_s_fixed_limit: f64,
    pub replay_events_per_s_adaptive: f64,
    pub fixed_rate_limit: f64,
    pub max_live_p99_increase: f64,
    /// The adaptive controller's baseline, threshold and rates, in the median round.
    pub adaptive: Option<projector::AdaptiveReport>,
    pub failed_reads: u64,
    pub phases: Vec<IsolationPhase>,
    /// Caveats of this run (a replay that finished before its phase ended).
    pub notes: Vec<String>,
}

/// The niceness of the protected replays (fixed limit, adaptive): the lowest CPU priority.
const PROTECTED_NICE: i32 = 19;
/// How long a replay gets to stop after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How one phase's replay runs (a child process `reproject projector --mode replay`).
struct ReplaySpec {
    rate_limit: Option<f64>,
    adaptive: Option<projector::AdaptiveConfig>,
    nice: i32,
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
        let adaptive = v.get("adaptive").filter(|a| a.is_object()).map(|a| projector::AdaptiveReport {
            baseline_p99_ms: num(a, "baseline_p99_ms"),
            threshold_ms: num(a, "threshold_ms"),
            ceiling_events_per_s: num(a, "ceiling_events_per_s"),
            mean_rate_events_per_s: num(a, "mean_rate_events_per_s"),
            final_rate_events_per_s: num(a, "final_rate_events_per_s"),
            min_rate_events_per_s: num(a, "min_rate_events_per_s"),
            windows: num(a, "windows") as u64,
            decreases: num(a, "decreases") as u64,
            increases: num(a, "increases") as u64,
        });
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
        cmd.args(["--log", "warn", "projector", "--mode", "replay", "--version", Projection::V4.name()])
            .args(["--workers", &config.workers.to_string(), "--batch", "10000", "--stop-at-head"])
            .args(["--progress", "false", "--database-url", &config.database_url])
            .args(["--nice", &spec.nice.to_string()]);
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
        tracing::info!(pid = child.id(), nice = spec.nice, "replay child started");
        Ok(ReplayChild { child, stdout })
    }

    /// Whether the child has exited on its own (the replay finished).
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGINT (the CLI stops the replay gracefully and prints its report), then wait; SIGKILL
    /// after [`STOP_GRACE`]. Returns the report on the child's stdout.
    async fn stop(mut self) -> Result<ChildReport> {
        if let (None, Some(pid)) = (self.child.try_wait()?, self.child.id()) {
            // SAFETY: kill takes plain integers; `pid` is our own, not yet reaped, child.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) } != 0 {
                tracing::warn!(pid, error = %std::io::Error::last_os_error(), "SIGINT to the replay failed");
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

    /// Runs one phase: the load for the configured duration, beside a replay of v4 from
    /// scratch in a child process if `replay` is given, stopped (SIGINT) at the phase's end.
    /// `warmup`: load run before the measured window (while the adaptive controller measures
    /// its baseline under the same load), not counted.
    async fn phase(
        &self,
        name: &str,
        replay: Option<ReplaySpec>,
        warmup: Option<Duration>,
    ) -> Result<(IsolationPhase, Option<ChildReport>)> {
        tracing::info!(phase = name, "phase starts");
        let rate_limit = replay.as_ref().and_then(|r| r.rate_limit.filter(|_| r.adaptive.is_none()));
        let nice = replay.as_ref().map(|r| r.nice);
        let running = match &replay {
            Some(spec) => {
                let mut client = eventlog::connect(&self.config.database_url).await?;
                readmodel::drop_version(&mut client, Projection::V4).await.context("dropping v4")?;
                Some(ReplayChild::spawn(self.config, spec).with_context(|| format!("replay in phase {name}"))?)
            }
            None => None,
        };
        if let Some(w) = warmup {
            self.load(w, None).await.context("warm-up load")?;
        }
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
            replay_nice: nice,
        };
        tracing::info!(
            phase = name,
            p50_ms = phase.p50_ms,
            p99_ms = phase.p99_ms,
            replay_events_per_s = phase.replay_events_per_s,
            "phase done"
        );
        Ok((phase, report))
    }
}

/// Experiment 3: v3 active behind the in-process API; the load at a fixed rate in phases of
/// equal length: no replay, a full-speed replay of v4, a replay at a fixed limit, then
/// `rounds` pairs of (no replay, adaptive replay). Each replay starts from scratch and is
/// stopped at its phase's end.
pub async fn isolation_bench(config: &IsolationConfig) -> Result<IsolationBench> {
    let url = config.database_url.clone();
    reset_read_side(&url).await?;
    tracing::info!("building v3 (the live, active version)");
    build_active(&url, Projection::V3, config.workers).await?;
    let client = eventlog::connect(&url).await?;
    let aggregates: i64 = client.query_one("SELECT count(*) FROM lab.expected_accounts", &[]).await?.get(0);
    let log_events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let addr: SocketAddr = start_api(&url).await?;
    let bench = Bench { config, base: format!("http://{addr}"), aggregates };

    let (none, _) = bench.phase("no_replay", None, None).await?;
    // Full speed is the unprotected worst case: no limit, normal priority.
    let full_spec = ReplaySpec { rate_limit: None, adaptive: None, nice: 0 };
    let (full, _) = bench.phase("full_speed", Some(full_spec), None).await?;
    let fixed_rate_limit = config.fixed_rate_limit.unwrap_or((full.replay_events_per_s * 0.25).max(1_000.0));
    let fixed_spec = ReplaySpec { rate_limit: Some(fixed_rate_limit), adaptive: None, nice: PROTECTED_NICE };
    let (fixed, _) = bench.phase("fixed_limit", Some(fixed_spec), None).await?;
    // The adaptive phase's ceiling is the full-speed rate: above it the limit would not bind.
    let adaptive_config = projector::AdaptiveConfig {
        api_url: bench.base.clone(),
        max_live_p99_increase: config.max_live_p99_increase,
        probe_aggregates: aggregates.max(1) as u64,
        source: projector::LatencySource::Metrics,
    };
    let ceiling = full.replay_events_per_s.max(10_000.0);
    let mut phases = vec![none, full, fixed];
    // (paired ratio, index of the adaptive phase, the controller's report)
    let mut rounds = Vec::new();
    for k in 1..=config.rounds.max(1) {
        // The same unmeasured warm-up as the adaptive phase (whose controller measures its
        // baseline meanwhile), so neither side of the pair starts on cold connections.
        let warmup = Some(projector::adaptive::BASELINE);
        let (before, _) = bench.phase(&format!("no_replay_r{k}"), None, warmup).await?;
        let spec =
            ReplaySpec { rate_limit: Some(ceiling), adaptive: Some(adaptive_config.clone()), nice: PROTECTED_NICE };
        let (adaptive, report) = bench.phase(&format!("adaptive_r{k}"), Some(spec), warmup).await?;
        let paired = if before.p99_ms > 0.0 { adaptive.p99_ms / before.p99_ms } else { f64::NAN };
        phases.push(before);
        phases.push(adaptive);
        rounds.push((paired, phases.len() - 1, report.and_then(|r| r.adaptive)));
    }
    let mut cleanup = eventlog::connect(&url).await?;
    readmodel::drop_version(&mut cleanup, Projection::V4).await.context("dropping v4 after the run")?;
    let mut by_ratio: Vec<usize> = (0..rounds.len()).collect();
    by_ratio.sort_by(|a, b| rounds[*a].0.total_cmp(&rounds[*b].0));
    let median = &rounds[by_ratio[by_ratio.len() / 2]];
    let mut adaptive_rates: Vec<f64> = rounds.iter().map(|r| phases[r.1].replay_events_per_s).collect();
    adaptive_rates.sort_by(f64::total_cmp);

    let mut notes = Vec::new();
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
            .filter(|p| p.replay_nice.is_some())
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
        p99_ratio_adaptive: median.0,
        p99_ratio_adaptive_rounds: rounds.iter().map(|r| r.0).collect(),
        p99_ratio_no_replay_rounds: rounds.iter().map(|r| ratio(phases[r.1 - 1].p99_ms, b99)).collect(),
        p50_ratio_full_speed: ratio(phases[1].p50_ms, b50),
        p50_ratio_fixed_limit: ratio(phases[2].p50_ms, b50),
        p50_ratio_adaptive: ratio(phases[median.1].p50_ms, phases[median.1 - 1].p50_ms),
        replay_events_per_s_full_speed: phases[1].replay_events_per_s,
        replay_events_per_s_fixed_limit: phases[2].replay_events_per_s,
        replay_events_per_s_adaptive: adaptive_rates[adaptive_rates.len() / 2],
        fixed_rate_limit,
        max_live_p99_increase: config.max_live_p99_increase,
        adaptive: median.2.clone(),
        failed_reads: phases.iter().map(|p| p.failed).sum(),
        phases,
        notes,
    })
}
