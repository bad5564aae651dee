//! `bench plot`: redraws plots from the CSV files their benchmarks wrote, or from the committed
//! data of the docs, without running a benchmark.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

/// The flags of `bench plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The folder of CSV files, one per plot (`cutover.csv`, `tiers.csv`, ...).
    #[arg(long, default_value = "docs/plots/data")]
    pub data: PathBuf,
    /// Where the SVG files go.
    #[arg(long, default_value = "docs/plots")]
    pub svg: PathBuf,
}

/// Draws every plot whose CSV file is in `--data` into `--svg`.
pub fn plot(a: PlotArgs) -> Result<()> {
    let written = bench::plot::figures::render_all(&a.data, &a.svg)?;
    if written.is_empty() {
        let names: Vec<&str> = bench::plot::figures::PLOTS.iter().map(|p| p.name).collect();
        bail!("no CSV file of a plot in {} (looked for {}.csv)", a.data.display(), names.join(".csv, "));
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
