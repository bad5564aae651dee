//! The Kafka plots: what compaction leaves of each log (`bench compaction`, experiment 7) and
//! the tail of a topic under produce (`bench kafka`).

use anyhow::Result;

use super::Table;
use crate::plot::{color, Axis, BarPanel, BarRow, Figure, Kind, Panel, Series, Unit, XyPanel};

/// `n` with thousands separators (`9,778`).
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `compaction.csv`: per log, the aggregates whose state differs from the truth when folded
/// after compaction, and whether time travel still answers.
pub fn compaction(t: &Table) -> Result<Figure> {
    let (logs, diffs, travel) = (t.text("log")?, t.numbers("diffs")?, t.text("time_travel")?);
    let aggregates = if t.has("aggregates") { t.numbers("aggregates")? } else { vec![f64::NAN; logs.len()] };
    let rows = (0..logs.len())
        .map(|i| {
            let colour = if diffs[i] == 0.0 { color::GREEN } else { color::RED };
            let of =
                if aggregates[i].is_finite() { format!(" of {}", thousands(aggregates[i])) } else { String::new() };
            let works = matches!(travel[i].as_str(), "true" | "yes");
            BarRow::new(logs[i].clone(), diffs[i], colour)
                .value_label(format!("{}{of}", thousands(diffs[i])))
                .note(if works { "time travel: works" } else { "time travel: refused" })
        })
        .collect();
    let total = aggregates.iter().copied().filter(|a| a.is_finite()).fold(0.0, f64::max);
    let mut axis = Axis::counts("aggregates whose folded state differs from the true state");
    if total > 0.0 {
        axis = axis.range(0.0, total);
    }
    let bars = BarPanel::new(axis, rows)
        .heading("Each log folded after the topics' compaction (the event store keeps every event)");
    let figure = Figure::new(
        "Experiment 7: compaction keeps current state only where events carry it, and loses history",
        vec![Panel::Bars(bars)],
    );
    Ok(super::sourced(figure, t))
}

/// `kafka_tail.csv`: the projector's and the mirror's lag each sample.
pub fn tail(t: &Table) -> Result<Figure> {
    let (time, projector, mirror) =
        (t.numbers("t_s")?, t.numbers("projector_lag_records")?, t.numbers("mirror_lag_events")?);
    let panel = XyPanel::new(
        Axis::linear("seconds", Unit::Seconds),
        Axis::counts("records behind"),
        vec![
            Series::new(
                "projector: high watermarks − stored offsets",
                color::BLUE,
                Kind::Line,
                time.iter().copied().zip(projector),
            ),
            Series::new("mirror: event store − topic", color::ORANGE, Kind::Line, time.iter().copied().zip(mirror)),
        ],
    );
    Ok(super::sourced(Figure::new("The tail of a topic under produce", vec![Panel::Xy(panel)]), t))
}
