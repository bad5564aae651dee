//! The CSV files and plots of `bench isolation`.

use anyhow::Result;

use super::blocks::{Interleaved, Labels};
use super::report::CurvePoint;
use super::{IsolationConfig, IsolationPhase};

/// Writes an interleaved phase's blocks as CSV and plots their p99 over time, one line per side.
pub(super) fn write_blocks(
    config: &IsolationConfig,
    name: &str,
    title: &str,
    phase: &Interleaved,
    labels: Labels,
) -> Result<()> {
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

/// Writes the rate curve as CSV, and plots its p99 ratio (with its interval) against the rate.
pub(super) fn write_curve(config: &IsolationConfig, points: &[CurvePoint]) -> Result<()> {
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
        &config.out_dir.join("isolation_curve.svg"),
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
    Ok(())
}

/// Writes the phases as CSV, and plots the live p99 of every phase and the replay's rate of
/// every phase with a replay.
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
    Ok(())
}
