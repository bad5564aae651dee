//! Benchmarks as commands. Each prints its figures as ratios against baselines measured in the
//! same run on the same log (the raw `COPY TO` scan, the naive projector), writes CSV under
//! `results/` and an SVG plot, and ends with one JSON line of its figures.

mod adopt;
mod converge;
mod cpu_split;
#[cfg(test)]
mod findings;
mod isolation;
pub mod large;
pub mod plot;
mod produce;
mod replay;
mod serving;
mod store;
mod sweep;

pub use adopt::{adopt_bench, AdoptBench, AdoptBenchConfig};
pub use converge::{converge, Converge, ConvergeConfig, ConvergeRun};
pub use cpu_split::split_cores;
pub use isolation::{isolation_bench, IsolationBench, IsolationConfig, IsolationPhase};
pub use produce::{produce_bench, ProduceBench, ProduceBenchConfig, ProducePhase};
pub use replay::{naive, replay_bench, scan, NaiveResult, ReplayBench, ReplayBenchConfig, ScanResult};
pub use serving::{
    build_active, cutover_bench, reset_read_side, start_api, time_travel_bench, time_travel_check, CutoverBench,
    CutoverBenchConfig, TimeTravelBench, TimeTravelCheck, TimeTravelClass,
};
pub use store::{store_bench, SnapshotPoint, StoreBench, StoreBenchConfig};
pub use sweep::{batch_sweep, Sweep, SweepConfig, SweepPoint};

/// Writes rows as CSV (header first); every row has the header's columns.
pub fn write_csv(path: &std::path::Path, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let write = || -> csv::Result<()> {
        let mut out = csv::Writer::from_path(path)?;
        out.write_record(header)?;
        for r in rows {
            out.write_record(r)?;
        }
        Ok(out.flush()?)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_rows_keep_their_columns_and_quote_only_what_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/t.csv");
        let rows = vec![vec!["1".to_owned(), "0.250".to_owned()], vec!["2".to_owned(), "a,b".to_owned()]];
        super::write_csv(&path, &["second", "p99_ms"], &rows).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second,p99_ms\n1,0.250\n2,\"a,b\"\n");
        let ragged = vec![vec!["1".to_owned()]];
        assert!(super::write_csv(&path, &["second", "p99_ms"], &ragged).is_err(), "a row short of a column");
    }
}
