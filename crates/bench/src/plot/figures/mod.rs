//! The benchmarks' plots, each drawn from the CSV its benchmark writes (`NAME.csv` →
//! `NAME.svg`). A benchmark writes its CSV and calls [`render`]; `reproject bench plot` calls
//! [`render_all`] on a folder of CSVs, such as the committed data of `docs/plots/data`, so a
//! plot is redrawn from its data without rerunning its benchmark.

mod converge;
mod isolation;
mod kafka;
mod replay;
mod serving;
mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use replay::knee;
pub use table::Table;

use super::{color, Figure, Kind, Series};

/// A plot: the name of its CSV and SVG, and how its data becomes a figure.
pub struct Plot {
    pub name: &'static str,
    pub draw: fn(&Table) -> Result<Figure>,
}

/// Every plot a benchmark writes.
pub const PLOTS: &[Plot] = &[
    Plot { name: "replay", draw: replay::replay },
    Plot { name: "tiers", draw: replay::tiers },
    Plot { name: "batch_sweep", draw: replay::batch_sweep },
    Plot { name: "cutover", draw: serving::cutover },
    Plot { name: "time_travel", draw: serving::time_travel },
    Plot { name: "isolation", draw: isolation::phases },
    Plot { name: "isolation_curve", draw: isolation::curve },
    Plot { name: "isolation_adaptive_blocks", draw: isolation::adaptive_blocks },
    Plot { name: "isolation_presence_blocks", draw: isolation::presence_blocks },
    Plot { name: "converge", draw: converge::converge },
    Plot { name: "produce", draw: converge::produce },
    Plot { name: "compaction", draw: kafka::compaction },
    Plot { name: "kafka_tail", draw: kafka::tail },
];

/// `figure` with the table's `# source:` line under its title, when it has one.
fn sourced(figure: Figure, table: &Table) -> Figure {
    match table.source() {
        Some(s) => figure.source(s),
        None => figure,
    }
}

/// One series per distinct value of `keys` (in the order they first appear), of the rows'
/// `(xs, ys)`, named by `name` and coloured in turn.
fn series_by(keys: &[String], xs: &[f64], ys: &[f64], kind: Kind, name: impl Fn(&str) -> String) -> Vec<Series> {
    let mut distinct: Vec<&String> = Vec::new();
    for k in keys {
        if !distinct.contains(&k) {
            distinct.push(k);
        }
    }
    distinct
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let points = (0..keys.len()).filter(|r| &keys[*r] == key).map(|r| (xs[r], ys[r]));
            Series::new(name(key), color::SERIES[i % color::SERIES.len()], kind, points)
        })
        .collect()
}

/// The plot named `name`.
pub fn plot(name: &str) -> Result<&'static Plot> {
    PLOTS.iter().find(|p| p.name == name).with_context(|| format!("no plot named {name:?}"))
}

/// Draws plot `name` from `data/NAME.csv` as SVG text.
pub fn draw(name: &str, data: &Path) -> Result<String> {
    let table = Table::read(&data.join(format!("{name}.csv")))?;
    let figure = (plot(name)?.draw)(&table).with_context(|| format!("drawing {name}"))?;
    Ok(figure.render())
}

/// Draws plot `name` from `data/NAME.csv` into `out/NAME.svg`, and returns the SVG's path.
pub fn render_into(name: &str, data: &Path, out: &Path) -> Result<PathBuf> {
    let svg = draw(name, data)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(format!("{name}.svg"));
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Draws plot `name` from `dir/NAME.csv` into `dir/NAME.svg`: what a benchmark calls after
/// writing its CSV.
pub fn render(name: &str, dir: &Path) -> Result<PathBuf> {
    render_into(name, dir, dir)
}

/// Draws every plot whose CSV is in `data` into `out`; returns the SVGs written.
pub fn render_all(data: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    PLOTS
        .iter()
        .filter(|p| data.join(format!("{}.csv", p.name)).is_file())
        .map(|p| render_into(p.name, data, out))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{draw, PLOTS};
    use crate::plot::check::problems;

    fn docs() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/plots")
    }

    /// Every plot of the docs is drawn from its committed CSV, reads itself (no text over
    /// another, none off the canvas, SI tick labels), and is the SVG committed beside it: a
    /// change of the data or of the drawing that was not followed by `reproject bench plot`
    /// fails here.
    #[test]
    fn every_committed_plot_is_drawn_from_its_data_and_reads_itself() {
        let data = docs().join("data");
        let mut drawn = 0;
        for plot in PLOTS {
            if !data.join(format!("{}.csv", plot.name)).is_file() {
                continue;
            }
            let svg = draw(plot.name, &data).unwrap_or_else(|e| panic!("{}: {e:#}", plot.name));
            let found = problems(&svg);
            assert!(found.is_empty(), "{}.svg does not read itself:\n{}", plot.name, found.join("\n"));
            let committed = std::fs::read_to_string(docs().join(format!("{}.svg", plot.name)))
                .unwrap_or_else(|e| panic!("docs/plots/{}.svg: {e}", plot.name));
            assert!(
                committed == svg,
                "docs/plots/{}.svg is not what its data draws: run `reproject bench plot` and commit the result",
                plot.name
            );
            drawn += 1;
        }
        assert!(drawn >= 8, "only {drawn} plots have data under docs/plots/data");
    }

    /// Every data file under docs/plots/data belongs to a plot, and every SVG there that is
    /// drawn by this module has its data (the flame graph is perf's, not ours).
    #[test]
    fn the_docs_hold_no_plot_without_its_data_and_no_data_without_its_plot() {
        for entry in std::fs::read_dir(docs().join("data")).expect("docs/plots/data") {
            let name = entry.expect("an entry").file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".csv") {
                assert!(PLOTS.iter().any(|p| p.name == stem), "docs/plots/data/{name} belongs to no plot");
            }
        }
        for entry in std::fs::read_dir(docs()).expect("docs/plots") {
            let name = entry.expect("an entry").file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".svg") {
                let ours = !stem.ends_with("_flame");
                assert!(
                    !ours || docs().join("data").join(format!("{stem}.csv")).is_file(),
                    "docs/plots/{name} has no data"
                );
            }
        }
    }
}
