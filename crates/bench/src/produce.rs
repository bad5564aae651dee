//! `bench produce`: the producer's ceiling on this machine, unpaced, first beside nothing else,
//! then while a full-speed replay of v4 runs on the same log (each replay pass starts from an
//! empty read side, and the pass is repeated until the producer's time is up); conflicts and
//! retries per second, a per-second CSV and one SVG of both phases.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lab::bank::V4;
use serde::Serialize;

/// Configuration of the producer benchmark.
#[derive(Debug, Clone)]
pub struct ProduceBenchConfig {
    pub database_url: String,
    /// The producer (writers, batch, ratios); its rate and duration are set per phase.
    pub produce: lab::ProduceConfig,
    /// How long each phase produces.
    pub duration: Duration,
    /// Replay workers of the second phase.
    pub replay_workers: usize,
    /// Skip the phase beside a replay.
    pub skip_replay: bool,
    pub out_dir: PathBuf,
}

/// One phase of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ProducePhase {
    pub phase: String,
    pub report: lab::ProduceReport,
    /// Replay passes completed during the phase, and their bulk rate (events/s).
    pub replays: u32,
    pub replay_events_per_s: Option<f64>,
}

/// Figures of the producer benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceBench {
    pub log_events_at_start: i64,
    pub aggregates_at_start: i64,
    pub writers: u32,
    pub batch: u32,
    pub duration_s: f64,
    pub produce_events_per_s: f64,
    pub conflicts_per_s: f64,
    pub retries_per_s: f64,
    /// Slowest whole second of the phase alone.
    pub min_second_events_per_s: f64,
    pub with_replay_events_per_s: Option<f64>,
    pub with_replay_conflicts_per_s: Option<f64>,
    pub replay_events_per_s: Option<f64>,
    pub phases: Vec<ProducePhase>,
}

/// Runs the producer alone, then beside replays.
pub async fn produce_bench(config: &ProduceBenchConfig) -> Result<ProduceBench> {
    let client = eventlog::connect(&config.database_url).await.context("connecting")?;
    let log_events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let aggregates: i64 = client.query_one("SELECT count(*) FROM lab.expected_accounts", &[]).await?.get(0);
    let produce = lab::ProduceConfig { rate: 0.0, duration: Some(config.duration), ..config.produce.clone() };

    let never = tokio::sync::watch::channel(false).1;
    let alone = lab::produce::run(&config.database_url, produce.clone(), never).await.context("producing alone")?;
    tracing::info!(events_per_s = alone.events_per_s, "producer alone");
    let mut phases = vec![ProducePhase { phase: "alone".into(), report: alone, replays: 0, replay_events_per_s: None }];

    if !config.skip_replay {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let producer = {
            let url = config.database_url.clone();
            let cfg = lab::ProduceConfig { duration: None, ..produce.clone() };
            tokio::spawn(async move { lab::produce::run(&url, cfg, stop_rx).await })
        };
        // Full-speed replays, one after another, for the producer's whole time.
        let started = Instant::now();
        let mut rates = Vec::new();
        while started.elapsed() < config.duration {
            crate::reset_read_side(&config.database_url).await?;
            let cfg = projector::ReplayConfig {
                workers: config.replay_workers,
                stop_at_head: true,
                ..projector::ReplayConfig::new(&config.database_url, V4)
            };
            let never = tokio::sync::watch::channel(false).1;
            let left = config.duration.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, projector::replay(&cfg, never)).await {
                Ok(report) => rates.push(report.context("replay")?.bulk_events_per_s),
                Err(_) => break,
            }
        }
        stop_tx.send(true).ok();
        let report = producer.await?.context("producing beside a replay")?;
        tracing::info!(events_per_s = report.events_per_s, replays = rates.len(), "producer beside replays");
        let replay = (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64);
        phases.push(ProducePhase {
            phase: "beside a full-speed replay".into(),
            report,
            replays: rates.len() as u32,
            replay_events_per_s: replay,
        });
    }

    let mut rows = Vec::new();
    for p in &phases {
        for s in &p.report.per_second {
            rows.push(vec![
                p.phase.clone(),
                format!("{:.2}", s.t_s),
                s.events.to_string(),
                format!("{:.0}", s.events_per_s),
                s.conflicts.to_string(),
                s.retries.to_string(),
            ]);
        }
    }
    crate::write_csv(
        &config.out_dir.join("produce.csv"),
        &["phase", "t_s", "events", "events_per_s", "conflicts", "retries"],
        &rows,
    )?;
    crate::plot::figures::render("produce", &config.out_dir)?;

    let alone = &phases[0].report;
    // Whole seconds only: the last sample is a part-second.
    let whole = &alone.per_second[..alone.per_second.len().saturating_sub(1)];
    let with = phases.get(1);
    Ok(ProduceBench {
        log_events_at_start: log_events,
        aggregates_at_start: aggregates,
        writers: produce.writers,
        batch: produce.batch,
        duration_s: config.duration.as_secs_f64(),
        produce_events_per_s: alone.events_per_s,
        conflicts_per_s: alone.conflicts_per_s,
        retries_per_s: alone.retries as f64 / alone.seconds.max(1e-9),
        min_second_events_per_s: whole.iter().map(|s| s.events_per_s).reduce(f64::min).unwrap_or(0.0),
        with_replay_events_per_s: with.map(|p| p.report.events_per_s),
        with_replay_conflicts_per_s: with.map(|p| p.report.conflicts_per_s),
        replay_events_per_s: with.and_then(|p| p.replay_events_per_s),
        phases,
    })
}
