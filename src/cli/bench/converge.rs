//! `bench converge` (experiment 4): a replay from 0 while writers append, at each ingest rate.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::{print_files, workers, LogArgs};
use crate::cli::parse_duration;

/// The flags of `bench converge`.
#[derive(Debug, Args)]
pub struct ConvergeArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Ingest rates (events/s), one run each.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000")]
    pub ingest: Vec<f64>,
    /// The run whose figures head the JSON line (the first run if no run has this rate).
    #[arg(long, default_value_t = 20_000.0)]
    pub headline: f64,
    /// Past the listed rates, double the ingest until a run does not converge (the
    /// crossover) or the producer falls short of its target (its ceiling).
    #[arg(long)]
    pub beyond: bool,
    /// Producer writer connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub writers: u32,
    /// Cap the replay's catch-up (events/s) so the crossover falls within the writers' reach.
    #[arg(long)]
    pub replay_rate_limit: Option<f64>,
    /// Run the replay's PostgreSQL backends at this niceness (0-19), so the producer's keep
    /// the cores they need and the rebuild takes what the writers leave: on a machine whose
    /// cores the replay fills, the producer then reaches a rate it cannot reach beside it.
    /// The replay is not capped. 0: the same priority as the producer.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub replay_nice: i32,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Give up converging after this long.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    pub max_time: Duration,
    /// After converging, watch the lag this long.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub settle: Duration,
}

/// `bench converge`, validated.
pub(super) struct ConvergePlan {
    ingest: Vec<f64>,
    headline: f64,
    beyond: bool,
    writers: u32,
    replay_rate_limit: Option<f64>,
    replay_nice: i32,
    workers: usize,
    max_time: Duration,
    settle: Duration,
}

impl ConvergeArgs {
    pub(super) fn validate(self) -> Result<ConvergePlan> {
        if self.ingest.is_empty() || self.ingest.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            bail!("--ingest must be positive rates");
        }
        if self.replay_rate_limit.is_some_and(|r| !r.is_finite() || r <= 0.0) {
            bail!("--replay-rate-limit must be a positive number of events per second");
        }
        Ok(ConvergePlan {
            ingest: self.ingest,
            headline: self.headline,
            beyond: self.beyond,
            writers: self.writers,
            replay_rate_limit: self.replay_rate_limit,
            replay_nice: self.replay_nice,
            workers: workers(self.workers)?,
            max_time: self.max_time,
            settle: self.settle,
        })
    }
}

pub(super) async fn converge(url: String, out: &Path, p: ConvergePlan) -> Result<()> {
    let config = bench::ConvergeConfig {
        database_url: url,
        ingest: p.ingest,
        workers: p.workers,
        replay_rate_limit: p.replay_rate_limit,
        max_time: p.max_time,
        settle: p.settle,
        headline_ingest: p.headline,
        beyond: p.beyond,
        writers: p.writers,
        replay_nice: p.replay_nice,
        out_dir: out.to_owned(),
    };
    let c = bench::converge(&config).await?;
    println!(
        "scale: {} events in the log at start; replay cap {:?}; replay backends at nice {}",
        c.log_events, c.replay_rate_limit, c.replay_nice
    );
    println!(
        "{:>12} {:>12} {:>10} {:>14} {:>12} {:>12} {:>12} {:>16}",
        "target/s", "ingest/s", "converged", "convergence_s", "replay/s", "margin/s", "catch_up/s", "max_lag_after"
    );
    for r in &c.runs {
        println!(
            "{:>12.0} {:>12.0} {:>10} {:>14} {:>12.0} {:>12.0} {:>12} {:>16}",
            r.target_ingest_events_per_s,
            r.ingest_events_per_s,
            r.converged,
            r.convergence_s.map_or("-".into(), |s| format!("{s:.1}")),
            r.replay_events_per_s,
            r.margin_events_per_s,
            r.catch_up_events_per_s.map_or("-".into(), |s| format!("{s:.0}")),
            r.max_lag_after_converged.map_or("-".into(), |l| l.to_string())
        );
    }
    match c.crossover_ingest_events_per_s {
        Some(x) => println!("crossover: no convergence from {x:.0} events/s of ingest"),
        None => println!("crossover: not reached (every ingest rate tried converged)"),
    }
    if let Some(x) = c.producer_ceiling_events_per_s {
        println!("producer ceiling: it reached {x:.0} events/s, short of its target");
    }
    println!(
        "headline ({:.0}/s of ingest): converged {}, margin {:.0} events/s = {:.1}x the ingest",
        c.headline_ingest_events_per_s, c.converged, c.margin_events_per_s, c.margin_over_ingest
    );
    print_files(out, "converge.csv", "converge.svg");
    let mut json = serde_json::to_value(&c)?;
    if let Some(runs) = json.get_mut("runs").and_then(|r| r.as_array_mut()) {
        for r in runs {
            r.as_object_mut().map(|o| o.remove("samples"));
        }
    }
    println!("{json}");
    Ok(())
}
