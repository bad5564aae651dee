//! `bench adopt`: what adopting an app's events table costs the app's inserts and the replay.

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;
use fold::IdKind;

use super::{print_files, workers, LogArgs};

/// The flags of `bench adopt`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The app's stream id type (the adopted log's).
    #[arg(long, default_value = "uuid", value_name = "TYPE")]
    pub id_type: IdKind,
    /// Events per insert of the app (one transaction each).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Insert rounds: one batch into the control table and one into the adopted one each.
    #[arg(long, default_value_t = 40)]
    pub insert_rounds: usize,
    /// Replay rounds: one replay of v4 from each log each.
    #[arg(long, default_value_t = 3)]
    pub replay_rounds: usize,
    /// Replay workers (default: the cores).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// `bench adopt`, validated.
pub(super) struct AdoptPlan {
    config: bench::AdoptBenchConfig,
}

impl AdoptArgs {
    pub(super) fn validate(self) -> Result<AdoptPlan> {
        if self.batch == 0 || self.insert_rounds == 0 || self.replay_rounds == 0 {
            bail!("--batch, --insert-rounds and --replay-rounds must be at least 1");
        }
        Ok(AdoptPlan {
            config: bench::AdoptBenchConfig {
                database_url: String::new(),
                id: self.id_type,
                batch: self.batch,
                insert_rounds: self.insert_rounds,
                replay_rounds: self.replay_rounds,
                workers: workers(self.workers)?,
                out_dir: Default::default(),
            },
        })
    }
}

pub(super) async fn adopt(url: String, out: &Path, p: AdoptPlan) -> Result<()> {
    let config = bench::AdoptBenchConfig { database_url: url, out_dir: out.to_owned(), ..p.config };
    let r = bench::adopt_bench(&config).await?;
    println!("scale: {} events, the app's ids {}", r.events, r.id_type);
    println!(
        "claim {:.3}s (one transaction), feed index {:.1}s (concurrently), history {:.0} events/s + log index {:.1}s",
        r.claim_seconds, r.index_seconds, r.history_events_per_s, r.history_index_seconds
    );
    println!(
        "the app's inserts ({} events a batch): control {:.2} ms, adopted {:.2} ms (feed running, {} events fed) \
         -> app_insert_overhead = {:.3}",
        r.insert_batch, r.control_batch_ms, r.adopted_batch_ms, r.fed_events, r.app_insert_overhead
    );
    let rates = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "replay of v4: native {} events/s, adopted {} events/s -> replay_vs_native = {:.3}",
        rates(&r.native_events_per_s),
        rates(&r.adopted_events_per_s),
        r.replay_vs_native
    );
    println!(
        "disk: the app's table {:.0} MB, the feed's index {:.1} MB, the log copy {:.0} MB (native log {:.0} MB)",
        r.app_table_bytes as f64 / 1e6,
        r.feed_index_bytes as f64 / 1e6,
        r.adopted_log_bytes as f64 / 1e6,
        r.native_log_bytes as f64 / 1e6
    );
    print_files(out, "adopt_inserts.csv", "adopt.svg");
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
