//! SVG plots (no fonts needed: text is rendered by the viewer).

use std::path::Path;

use plotters::prelude::*;

/// A bar chart of named values.
pub fn bars(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .y_label_formatter(&|y| count_label(*y))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(BLUE.mix(0.6).filled())
            .margin(30)
            .data(bars.iter().enumerate().map(|(i, b)| (i, b.1))),
    )?;
    root.present()?;
    Ok(())
}

/// An axis label for a count or a rate: whole numbers, with k and M past ten thousand
/// (`2M`, `1.5M`, `250k`, `800`), never `2000000.0`.
pub fn count_label(v: f64) -> String {
    let trim = |s: String| s.trim_end_matches('0').trim_end_matches('.').to_owned();
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(format!("{:.2}", v / 1e6))),
        a if a >= 1e4 => format!("{}k", trim(format!("{:.1}", v / 1e3))),
        _ => format!("{v:.0}"),
    }
}

/// A line chart of one or more series of (x, y) points; `log_x` for sweeps over decades.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let y_max = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(0.0, f64::max).max(1.0) * 1.1;
    let (x_min, x_max) = if x_min >= x_max { (x_min - 1.0, x_min + 1.0) } else { (x_min, x_max) };
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 22)).margin(15).x_label_area_size(40).y_label_area_size(90);
    if log_x {
        let mut chart = builder.build_cartesian_2d((x_min.max(1e-9)..x_max).log_scale(), 0.0..y_max)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).y_label_formatter(&|y| count_label(*y)).draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    } else {
        let mut chart = builder.build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).y_label_formatter(&|y| count_label(*y)).draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::count_label;

    #[test]
    fn count_labels_are_whole_numbers_or_short_multiples() {
        assert_eq!(count_label(2_000_000.0), "2M");
        assert_eq!(count_label(1_500_000.0), "1.5M");
        assert_eq!(count_label(250_000.0), "250k");
        assert_eq!(count_label(12_500.0), "12.5k");
        assert_eq!(count_label(800.0), "800");
        assert_eq!(count_label(0.0), "0");
    }
}
