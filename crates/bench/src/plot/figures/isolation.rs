//! The plots of `bench isolation` (experiment 3): the live p99 of each phase, the rate curve
//! with its intervals, and the p99 of each block of an interleaved phase.

use anyhow::Result;

use super::Table;
use crate::plot::{color, si, Axis, BarPanel, BarRow, Figure, Kind, Panel, Point, Series, Unit, XyPanel};

/// A phase's name as a reader would say it, and its colour.
fn phase(name: &str) -> (String, &'static str) {
    let (label, colour) = match name {
        "no_replay" => ("no replay", color::GREY),
        "full_speed" => ("full-speed replay, normal priority", color::RED),
        "fixed_limit" => ("replay at a fixed rate limit, nice 19", color::ORANGE),
        "adaptive_paused" => ("adaptive replay: its paused blocks", color::SKY),
        "adaptive" => ("adaptive replay: its running blocks", color::BLUE),
        "no_replay_after" => ("no replay, after", color::GREY),
        "presence_stopped" => ("presence check: a stopped replay process", color::PURPLE),
        "presence_absent" => ("presence check: no replay process", color::GREY),
        other => return (other.replace('_', " "), color::GREEN),
    };
    (label.to_owned(), colour)
}

/// `isolation.csv`: the live p99 of every phase as a bar, the replay's rate beside it.
pub fn phases(t: &Table) -> Result<Figure> {
    let (names, p99, rate) = (t.text("phase")?, t.numbers("p99_ms")?, t.numbers("replay_events_per_s")?);
    let rows = names
        .iter()
        .zip(p99.iter().zip(&rate))
        .map(|(n, (p, r))| {
            let (label, colour) = phase(n);
            let row = BarRow::new(label, *p, colour);
            if *r > 0.0 {
                row.note(format!("replay {} events/s", si(*r)))
            } else {
                row
            }
        })
        .collect();
    let mut bars = BarPanel::new(Axis::linear("live read p99 (8 readers, 500 reads/s)", Unit::Millis), rows);
    if let Some(base) = p99.first().filter(|p| p.is_finite()) {
        bars = bars.rule(*base, format!("no replay: {} ms", si(*base)));
    }
    let figure = Figure::new(
        "Experiment 3: the live read p99 beside a replay, by how the replay is held back",
        vec![Panel::Bars(bars)],
    );
    Ok(super::sourced(figure, t))
}

/// `isolation_curve.csv`: the p99 ratio (running over paused blocks) against the replay's
/// fixed rate, its 90% interval as an error bar; one series per core layout when the CSV has a
/// `cores` column (`shared`, `split`).
pub fn curve(t: &Table) -> Result<Figure> {
    let fraction = t.numbers("fraction_of_full_speed")?;
    let (ratio, lo, hi) = (t.numbers("p99_ratio")?, t.numbers("ci90_low")?, t.numbers("ci90_high")?);
    let cores = if t.has("cores") { t.text("cores")? } else { vec!["shared".to_owned(); fraction.len()] };
    let mut layouts: Vec<String> = cores.clone();
    layouts.dedup();
    let mut series = Vec::new();
    for (k, layout) in layouts.iter().enumerate() {
        // Two layouts at one rate would hide each other's error bars: each is moved aside a little.
        let nudge = 1.0 + 0.05 * k as f64;
        let points = (0..fraction.len())
            .filter(|i| &cores[*i] == layout)
            .map(|i| Point {
                x: fraction[i] * 100.0 * nudge,
                y: ratio[i],
                range: (lo[i].is_finite() && hi[i].is_finite()).then_some((lo[i], hi[i])),
                label: Some(format!("{}×", si(ratio[i]))),
            })
            .collect();
        let (name, colour) = match layout.as_str() {
            "split" => ("cores split: live path on core 0, replay on core 1", color::BLUE),
            _ => ("cores shared", color::RED),
        };
        series.push(Series {
            name: name.into(),
            color: colour,
            kind: Kind::LinePoints,
            dashed: false,
            values: false,
            points,
        });
    }
    let panel = XyPanel::new(
        Axis::log("the replay's fixed rate, % of its full speed (log scale)", Unit::Percent),
        Axis { min: Some(0.0), ..Axis::linear("live p99, replay running / paused", Unit::Ratio) },
        series,
    )
    .rule(1.1, "allowance: 1.1×")
    .height(420.0);
    let figure =
        Figure::new("Experiment 3: what each replay rate costs the live p99 (90% intervals)", vec![Panel::Xy(panel)]);
    Ok(super::sourced(figure, t))
}

/// The p99 of every block of an interleaved phase, one series per kind of block.
fn blocks(t: &Table, title: &str) -> Result<Figure> {
    let (block, state, p99) = (t.numbers("block")?, t.text("replay")?, t.numbers("p99_ms")?);
    let series = super::series_by(&state, &block, &p99, Kind::Points, |s| format!("replay {s}"));
    let panel = XyPanel::new(
        Axis::counts("block (in the order run)"),
        Axis::linear("live p99 of the block", Unit::Millis),
        series,
    );
    Ok(super::sourced(Figure::new(title, vec![Panel::Xy(panel)]), t))
}

/// `isolation_adaptive_blocks.csv`: the adaptive replay, paused and running.
pub fn adaptive_blocks(t: &Table) -> Result<Figure> {
    blocks(t, "Live p99 per block: the adaptive replay paused and running, alternately")
}

/// `isolation_presence_blocks.csv`: a stopped replay process and none.
pub fn presence_blocks(t: &Table) -> Result<Figure> {
    blocks(t, "Live p99 per block: a stopped replay process and none, alternately")
}
