//! `bench converge` (experiment 4): replay from offset 0 while writers append at R events/s;
//! lag-to-tail over time, convergence time, the margin, and the crossover where it stops
//! converging. With `beyond`, the ingest doubles after the listed rates until a run does not
//! converge (the crossover) or the producer no longer reaches its target (its ceiling).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lab::bank::V4;
use serde::Serialize;

/// Configuration of the convergence runs.
#[derive(Debug, Clone)]
pub struct ConvergeConfig {
    pub database_url: String,
    /// Ingest rates to try, events/s.
    pub ingest: Vec<f64>,
    pub workers: usize,
    /// Cap on the replay's catch-up (the bulk phase runs at full speed), to place the crossover
    /// within the writers' reach on a small machine; `None`: full speed.
    pub replay_rate_limit: Option<f64>,
    /// Give up on converging after this long.
    pub max_time: Duration,
    /// After converging, keep watching this long to show the lag stays bounded.
    pub settle: Duration,
    /// The run whose figures head the report (the first run if no run has this target).
    pub headline_ingest: f64,
    /// Past the listed rates, double the ingest until the crossover or the producer's ceiling.
    pub beyond: bool,
    /// Producer writer connections.
    pub writers: u32,
    /// Niceness (0..=19) of the replay's PostgreSQL backends, so the producer's backends keep
    /// the cores they need and the rebuild takes what the writers leave; 0: the same priority.
    /// The replay's own threads share this process with the producer and keep theirs.
    pub replay_nice: i32,
    pub out_dir: PathBuf,
}

/// Achieved ingest below this share of the target means the producer is at its ceiling.
const CEILING_SHARE: f64 = 0.9;
/// Most doublings past the listed rates.
const MAX_DOUBLINGS: u32 = 6;

/// One run at one ingest rate.
#[derive(Debug, Clone, Serialize)]
pub struct ConvergeRun {
    pub target_ingest_events_per_s: f64,
    pub ingest_events_per_s: f64,
    pub converged: bool,
    pub convergence_s: Option<f64>,
    /// Whether the bulk phase ended within the time limit (a run that never left it says
    /// nothing about the crossover).
    pub bulk_done: bool,
    /// The replay's capacity (events/s): its catch-up cap, or its measured bulk rate.
    pub replay_events_per_s: f64,
    pub margin_events_per_s: f64,
    /// The catch-up's rate (events applied per second of catch-up): the ingest where the run
    /// converged (it waits for events), its capacity under the run's load where it did not.
    pub catch_up_events_per_s: Option<f64>,
    /// Largest lag after converging (bounded = it stays small).
    pub max_lag_after_converged: Option<i64>,
    pub samples: Vec<(f64, i64)>,
}

/// Figures of the convergence experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Converge {
    pub log_events: i64,
    pub replay_rate_limit: Option<f64>,
    /// The niceness of the replay's backends (0: the producer's).
    pub replay_nice: i32,
    pub runs: Vec<ConvergeRun>,
    pub converged: bool,
    pub convergence_s: Option<f64>,
    pub margin_events_per_s: f64,
    /// The smallest ingest rate that did not converge although its bulk phase ended, if any.
    pub crossover_ingest_events_per_s: Option<f64>,
    /// The target ingest of the headline run, and its margin over its achieved ingest.
    pub headline_ingest_events_per_s: f64,
    pub margin_over_ingest: f64,
    /// The achieved ingest of the first run whose producer fell short of its target, if any.
    pub producer_ceiling_events_per_s: Option<f64>,
}

/// Runs one replay per ingest rate.
pub async fn converge(config: &ConvergeConfig) -> Result<Converge> {
    let mut client = eventlog::connect(&config.database_url).await.context("connecting")?;
    readmodel::ensure_schema(&mut client).await?;
    let log_events: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await?.get(0);
    let mut runs: Vec<ConvergeRun> = Vec::new();
    let mut rates: std::collections::VecDeque<f64> = config.ingest.iter().copied().collect();
    let mut doublings = 0;
    let mut ceiling = None;
    while let Some(rate) = rates.pop_front() {
        // Each run starts from the log alone (the first version to catch up activates itself).
        crate::reset_read_side(&config.database_url).await?;
        let (stop_producer, producer_stop) = tokio::sync::watch::channel(false);
        let producer = {
            let url = config.database_url.clone();
            let cfg =
                lab::ProduceConfig { writers: config.writers, ..lab::ProduceConfig::new(rate, None, rate as u64) };
            tokio::spawn(async move { lab::produce::run(&url, cfg, producer_stop).await })
        };
        let (stop_replay, replay_stop) = tokio::sync::watch::channel(false);
        let replay = {
            let cfg = projector::ReplayConfig {
                workers: config.workers,
                catch_up_rate_limit: config.replay_rate_limit,
                stop_at_head: false,
                priority: projector::CpuPriority { nice: config.replay_nice, idle: false, cpus: 0 },
                priority_process: false,
                ..projector::ReplayConfig::new(&config.database_url, V4)
            };
            tokio::spawn(async move { projector::replay(&cfg, replay_stop).await })
        };
        let started = Instant::now();
        let threshold = rate.max(1_000.0);
        let mut samples = Vec::new();
        let mut converged_at: Option<f64> = None;
        let mut max_after: Option<i64> = None;
        let mut bulk_seen = false;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = started.elapsed().as_secs_f64();
            let Ok(info) = readmodel::version_info(&client, "v4").await else { continue };
            let lag = readmodel::lag_events(&client, &info.positions).await?;
            samples.push((t, lag));
            // Converged: past the bulk phase and within about a second of ingest of the tail.
            let bulk_done = info.positions.iter().all(|p| p.tx >= info.bulk_boundary.unwrap_or(i64::MAX));
            bulk_seen |= bulk_done;
            if converged_at.is_none() && bulk_done && lag as f64 <= threshold {
                converged_at = Some(t);
            }
            if let Some(c) = converged_at {
                max_after = Some(max_after.unwrap_or(0).max(lag));
                if t - c >= config.settle.as_secs_f64() {
                    break;
                }
            } else if t >= config.max_time.as_secs_f64() {
                break;
            }
            if replay.is_finished() {
                break;
            }
        }
        stop_replay.send(true).ok();
        stop_producer.send(true).ok();
        let produced = producer.await?.context("producer")?;
        let replayed = replay.await?.context("replay")?;
        // The replay's capacity: its cap when capped, else its measured bulk rate.
        let replay_rate = config.replay_rate_limit.unwrap_or(replayed.bulk_events_per_s);

        let run = ConvergeRun {
            target_ingest_events_per_s: rate,
            ingest_events_per_s: produced.events_per_s,
            converged: converged_at.is_some(),
            convergence_s: converged_at,
            bulk_done: bulk_seen,
            replay_events_per_s: replay_rate,
            margin_events_per_s: replay_rate - produced.events_per_s,
            catch_up_events_per_s: replayed.catch_up.as_ref().map(|c| c.events_per_s),
            max_lag_after_converged: max_after,
            samples,
        };
        tracing::info!(
            rate,
            ingest = run.ingest_events_per_s,
            converged = run.converged,
            convergence_s = ?run.convergence_s,
            "convergence run"
        );
        let (converged, achieved) = (run.converged, run.ingest_events_per_s);
        runs.push(run);
        if achieved < CEILING_SHARE * rate {
            ceiling.get_or_insert(achieved);
        }
        if config.beyond && rates.is_empty() && converged && ceiling.is_none() && doublings < MAX_DOUBLINGS {
            doublings += 1;
            rates.push_back(rate * 2.0);
        }
    }
    let first = runs.iter().find(|r| r.target_ingest_events_per_s == config.headline_ingest).or(runs.first()).cloned();
    // A run still in its bulk phase at the time limit is no crossover: it ran out of time.
    let crossover = runs.iter().find(|r| !r.converged && r.bulk_done).map(|r| r.target_ingest_events_per_s);
    let mut rows = Vec::new();
    for r in &runs {
        for (t, lag) in &r.samples {
            rows.push(vec![
                format!("{}", r.target_ingest_events_per_s),
                format!("{t:.2}"),
                lag.to_string(),
                format!("{:.0}", r.ingest_events_per_s),
                r.convergence_s.map_or(String::new(), |s| format!("{s:.2}")),
            ]);
        }
    }
    crate::write_csv(
        &config.out_dir.join("converge.csv"),
        &["ingest_events_per_s", "t_s", "lag_events", "achieved_events_per_s", "convergence_s"],
        &rows,
    )?;
    crate::plot::figures::render("converge", &config.out_dir)?;
    Ok(Converge {
        log_events,
        replay_rate_limit: config.replay_rate_limit,
        replay_nice: config.replay_nice,
        converged: first.as_ref().is_some_and(|r| r.converged),
        convergence_s: first.as_ref().and_then(|r| r.convergence_s),
        margin_events_per_s: first.as_ref().map_or(0.0, |r| r.margin_events_per_s),
        crossover_ingest_events_per_s: crossover,
        headline_ingest_events_per_s: first.as_ref().map_or(0.0, |r| r.target_ingest_events_per_s),
        margin_over_ingest: first.as_ref().map_or(0.0, |r| r.margin_events_per_s / r.ingest_events_per_s.max(1e-9)),
        producer_ceiling_events_per_s: ceiling,
        runs,
    })
}
