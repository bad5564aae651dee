//! Benchmarks as commands. Each prints its figures as ratios against baselines measured in the
//! same run on the same log (the raw `COPY TO` scan, the naive projector), writes CSV under
//! `results/` and an SVG plot, and ends with one JSON line of its figures.

mod converge;
mod cpu_split;
mod isolation;
pub mod large;
pub mod plot;
mod produce;
mod replay;
mod serving;
mod sweep;

pub use converge::{converge, Converge, ConvergeConfig, ConvergeRun};
pub use cpu_split::split_cores;
pub use isolation::{isolation_bench, IsolationBench, IsolationConfig, IsolationPhase};
pub use produce::{produce_bench, ProduceBench, ProduceBenchConfig, ProducePhase};
pub use replay::{naive, replay_bench, scan, NaiveResult, ReplayBench, ReplayBenchConfig, ScanResult};
pub use serving::{
    build_active, cutover_bench, reset_read_side, start_api, time_travel_bench, time_travel_check, CutoverBench,
    CutoverBenchConfig, TimeTravelBench, TimeTravelCheck, TimeTravelClass,
};
pub use sweep::{batch_sweep, Sweep, SweepConfig, SweepPoint};

/// Writes rows as CSV (header first).
pub fn write_csv(path: &std::path::Path, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.join(","));
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}
