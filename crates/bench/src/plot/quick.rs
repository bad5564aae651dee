//! A plot straight from values, for a benchmark whose plot has no figure of its own in
//! [`figures`](super::figures) yet: the same conventions, with its title and axis names given.

use std::path::Path;

use super::{color, Axis, BarPanel, BarRow, Figure, Kind, Panel, Scale, Series, Unit, XyPanel};

/// Horizontal bars of named values (one row each), on a log axis when they span decades.
pub fn bars(path: &Path, title: &str, value_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let values: Vec<f64> = bars.iter().map(|b| b.1).filter(|v| *v > 0.0).collect();
    let (lo, hi) = values.iter().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let scale = if !values.is_empty() && hi / lo >= 100.0 { Scale::Log } else { Scale::Linear };
    let rows = bars
        .iter()
        .enumerate()
        .map(|(i, (name, v))| BarRow::new(name.clone(), *v, color::SERIES[i % color::SERIES.len()]))
        .collect();
    let axis = Axis { scale, ..Axis::linear(value_label, Unit::Count) };
    Figure::new(title, vec![Panel::Bars(BarPanel::new(axis, rows))]).write(path)
}

/// Lines of one or more named series of `(x, y)` points; `log_x` for sweeps over decades.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
) -> anyhow::Result<()> {
    let x = if log_x { Axis::log(x_label, Unit::Count) } else { Axis::linear(x_label, Unit::Count) };
    let series = series
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            Series::new(name.clone(), color::SERIES[i % color::SERIES.len()], Kind::LinePoints, points.iter().copied())
        })
        .collect();
    Figure::new(title, vec![Panel::Xy(XyPanel::new(x, Axis::linear(y_label, Unit::Count), series))]).write(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::check::problems;

    #[test]
    fn quick_plots_read_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let bar_path = dir.path().join("bars.svg");
        let names = ["control table, one insert per transaction", "adopted table, the feed running", "third"];
        let data: Vec<(String, f64)> = names.iter().zip([1.2, 1.35, 250.0]).map(|(n, v)| (n.to_string(), v)).collect();
        bars(&bar_path, "insert latency", "ms", &data).unwrap();
        let line_path = dir.path().join("lines.svg");
        let series = vec![("a".to_owned(), vec![(1.0, 200_000.0), (1_000.0, 1_000_000.0)])];
        lines(&line_path, "a sweep", "batch", "events/s", &series, true).unwrap();
        for path in [bar_path, line_path] {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(problems(&svg).is_empty(), "{}: {:?}", path.display(), problems(&svg));
        }
    }
}
