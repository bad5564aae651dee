//! The phases of `bench isolation`: the load alone or beside one replay, a replay paused and
//! running in alternating blocks, the presence check, and the rate curve.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use lab::bank::V4;

use super::blocks::{
    block_rows, bootstrap_p99_ratio, pool_blocks, round_ratios, Interleaved, Labels, CURVE_LABELS, PRESENCE_LABELS,
    RUNNING_OVER_PAUSED, STOPPED_OVER_ABSENT,
};
use super::child::{ReplayChild, ReplaySpec};
use super::output::write_curve;
use super::report::CurvePoint;
use super::{IsolationConfig, IsolationPhase};

pub(super) struct Bench<'a> {
    pub(super) config: &'a IsolationConfig,
    pub(super) base: String,
    pub(super) aggregates: i64,
}

impl Bench<'_> {
    async fn load(&self, duration: Duration, csv: Option<PathBuf>) -> Result<loadgen::LoadReport> {
        let cfg = loadgen::LoadConfig {
            url: self.base.clone(),
            concurrency: self.config.concurrency,
            duration,
            rate: Some(self.config.request_rate),
            aggregates: self.aggregates as u64,
            ids: None,
            family: None,
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
    pub(super) async fn phase(&self, name: &str, replay: Option<ReplaySpec>) -> Result<IsolationPhase> {
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
    pub(super) async fn paused_and_running(
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
    pub(super) async fn presence_phase(&self, spec: ReplaySpec) -> Result<Interleaved> {
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
    pub(super) async fn curve(&self, full_speed: f64) -> Result<(Vec<CurvePoint>, u64)> {
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
        write_curve(self.config, &points)?;
        Ok((points, failed))
    }
}

/// How long the replay of a presence block runs (connects, starts its COPY streams) before it
/// is stopped; inside the block's first second, which counts nowhere.
const PRESENCE_RUN: Duration = Duration::from_millis(700);

/// Load of the adaptive phase before its blocks start: the controller's baseline (the replay not
/// yet started), then the replay's start-up and first seconds.
const ADAPTIVE_WARMUP: Duration = Duration::from_secs(projector::adaptive::BASELINE.as_secs() + 3);

fn log_phase(phase: &IsolationPhase) {
    tracing::info!(
        phase = phase.phase,
        p50_ms = phase.p50_ms,
        p99_ms = phase.p99_ms,
        replay_events_per_s = phase.replay_events_per_s,
        "phase done"
    );
}
