//! `bench produce`: the producer's ceiling, alone and beside full-speed replays.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{print_files, workers, LogArgs};
use crate::cli::parse_duration;

/// The flags of `bench produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Writer connections (each owns a range of the aggregates).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub writers: u32,
    /// Most commands per transaction.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// How long each phase produces.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Replay workers of the second phase (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Only the producer alone (no phase beside a replay).
    #[arg(long)]
    pub no_replay: bool,
}

/// `bench produce`, validated.
pub(super) struct ProducePlan {
    writers: u32,
    batch: u32,
    duration: Duration,
    workers: usize,
    no_replay: bool,
}

impl ProduceArgs {
    pub(super) fn validate(self) -> Result<ProducePlan> {
        Ok(ProducePlan {
            writers: self.writers,
            batch: self.batch,
            duration: self.duration,
            workers: workers(self.workers)?,
            no_replay: self.no_replay,
        })
    }
}

pub(super) async fn produce(url: String, out: &Path, p: ProducePlan) -> Result<()> {
    let config = bench::ProduceBenchConfig {
        database_url: url,
        produce: lab::ProduceConfig { writers: p.writers, batch: p.batch, ..lab::ProduceConfig::new(0.0, None, 3) },
        duration: p.duration,
        replay_workers: p.workers,
        skip_replay: p.no_replay,
        out_dir: out.to_owned(),
    };
    let r = bench::produce_bench(&config).await?;
    println!(
        "scale: {} events, {} aggregates in the log at start; {} writers, batches of up to {} commands, {:?} per phase",
        r.log_events_at_start, r.aggregates_at_start, r.writers, r.batch, p.duration
    );
    for phase in &r.phases {
        println!("{}: {}", phase.phase, phase.report.render());
        if let Some(rate) = phase.replay_events_per_s {
            println!("  beside {} full-speed replays of v4 (bulk {rate:.0} events/s on average)", phase.replays);
        }
    }
    println!("slowest whole second alone: {:.0} events/s", r.min_second_events_per_s);
    print_files(out, "produce.csv", "produce.svg");
    let mut json = serde_json::to_value(&r)?;
    if let Some(phases) = json.get_mut("phases").and_then(|r| r.as_array_mut()) {
        for ph in phases {
            ph.get_mut("report").and_then(|r| r.as_object_mut()).map(|o| o.remove("per_second"));
        }
    }
    println!("{json}");
    Ok(())
}
