//! The CSV files and plots of `bench isolation`.

use anyhow::Result;

use super::blocks::Interleaved;
use super::report::CurvePoint;
use super::{IsolationConfig, IsolationPhase};

/// Writes an interleaved phase's blocks as CSV (`name`.csv) and plots the p99 of each block, one
/// series per kind of block.
pub(super) fn write_blocks(config: &IsolationConfig, name: &str, phase: &Interleaved) -> Result<()> {
    crate::write_csv(
        &config.out_dir.join(format!("{name}.csv")),
        &["block", "replay", "requests", "p99_ms"],
        &phase
            .blocks
            .iter()
            .map(|(k, state, n, p99)| vec![k.to_string(), (*state).to_owned(), n.to_string(), format!("{p99:.3}")])
            .collect::<Vec<_>>(),
    )?;
    crate::plot::figures::render(name, &config.out_dir)?;
    Ok(())
}

/// Writes the rate curve as CSV, and plots its p99 ratio (with its interval) against the rate;
/// `cores` says whether the live path and the replays had cores of their own (`split`) or not
/// (`shared`).
pub(super) fn write_curve(config: &IsolationConfig, points: &[CurvePoint]) -> Result<()> {
    let cores = if config.live_cpus != 0 { "split" } else { "shared" };
    crate::write_csv(
        &config.out_dir.join("isolation_curve.csv"),
        &[
            "fraction_of_full_speed",
            "rate_limit",
            "replay_events_per_s",
            "p99_ratio",
            "ci90_low",
            "ci90_high",
            "p50_ratio",
            "cores",
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
                    cores.to_owned(),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    crate::plot::figures::render("isolation_curve", &config.out_dir)?;
    Ok(())
}

/// Writes the phases as CSV, and plots the live p99 of every phase beside the replay's rate.
pub(super) fn write_phases(config: &IsolationConfig, phases: &[IsolationPhase]) -> Result<()> {
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
    crate::plot::figures::render("isolation", &config.out_dir)?;
    Ok(())
}
