//! `bench tiers`: the replay's curve across scale tiers, from the JSON lines `bench replay`
//! printed at each tier (one file each), with the extrapolation to 1B events.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

/// The flags of `bench tiers`.
#[derive(Debug, Args)]
pub struct TiersArgs {
    /// Files holding the JSON line of a `bench replay` run each (e.g. its stdout), one per tier.
    #[arg(required = true, value_name = "FILE")]
    pub runs: Vec<PathBuf>,
    /// The tier to extrapolate to (events).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub target_events: u64,
}

struct Tier {
    /// The run's file name, without its extension.
    run: String,
    events: f64,
    aggregates: f64,
    replay: f64,
    scan: f64,
    replay_seconds: f64,
    peak_rss: f64,
    largest_partition_aggregates: f64,
    workers: f64,
}

fn read_tier(path: &Path) -> Result<Tier> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{') && l.contains("\"replay_events_per_s\""))
        .with_context(|| format!("{}: no JSON line of `bench replay`", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: bad JSON", path.display()))?;
    let f = |k: &str| -> Result<f64> {
        v.get(k).and_then(serde_json::Value::as_f64).with_context(|| format!("{}: no number {k:?}", path.display()))
    };
    Ok(Tier {
        run: path.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned()),
        events: f("events")?,
        aggregates: f("aggregates")?,
        replay: f("replay_events_per_s")?,
        scan: f("scan_events_per_s")?,
        replay_seconds: f("replay_seconds")?,
        peak_rss: f("replay_peak_rss_bytes")?,
        largest_partition_aggregates: f("largest_partition_aggregates")?,
        workers: f("workers")?,
    })
}

pub fn tiers(out: &Path, a: TiersArgs) -> Result<()> {
    let mut tiers = a.runs.iter().map(|p| read_tier(p)).collect::<Result<Vec<_>>>()?;
    if tiers.is_empty() {
        bail!("no runs given");
    }
    tiers.sort_by(|x, y| x.events.total_cmp(&y.events));
    println!(
        "{:>13} {:>11} {:>13} {:>13} {:>8} {:>10} {:>12}",
        "events", "aggregates", "replay ev/s", "scan ev/s", "ratio", "replay s", "peak RSS MB"
    );
    let mut rows = Vec::new();
    for t in &tiers {
        println!(
            "{:>13.0} {:>11.0} {:>13.0} {:>13.0} {:>8.2} {:>10.1} {:>12.0}",
            t.events,
            t.aggregates,
            t.replay,
            t.scan,
            t.replay / t.scan,
            t.replay_seconds,
            t.peak_rss / 1e6
        );
        rows.push(vec![
            t.run.clone(),
            format!("{:.0}", t.events),
            format!("{:.0}", t.aggregates),
            format!("{:.0}", t.replay),
            format!("{:.0}", t.scan),
            format!("{:.3}", t.replay_seconds),
            format!("{:.0}", t.peak_rss),
        ]);
    }
    bench::write_csv(
        &out.join("tiers.csv"),
        &[
            "run",
            "events",
            "aggregates",
            "replay_events_per_s",
            "scan_events_per_s",
            "replay_seconds",
            "replay_peak_rss_bytes",
        ],
        &rows,
    )?;
    bench::plot::figures::render("tiers", out)?;
    let last = tiers.last().expect("not empty");
    let target = a.target_events as f64;
    let scale = target / last.events;
    // The fold's memory: what the largest tier's replay held per aggregate of a worker's map.
    let per_aggregate = last.peak_rss / (last.workers * last.largest_partition_aggregates).max(1.0);
    println!(
        "extrapolated to {:.0} events ({:.0} aggregates at the largest tier's ratio), at the largest tier's rate: \
         replay {:.1} h; peak RSS at the same P: {:.1} GB ({per_aggregate:.0} B per aggregate in the workers' maps; \
         P x{scale:.0} keeps it at {:.1} GB)",
        target,
        last.aggregates * scale,
        target / last.replay / 3600.0,
        last.peak_rss * scale / 1e9,
        last.peak_rss / 1e9
    );
    println!("csv: {}  plot: {}", out.join("tiers.csv").display(), out.join("tiers.svg").display());
    Ok(())
}
