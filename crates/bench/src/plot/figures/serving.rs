//! The serving plots: reads across the cutover (`bench cutover`, experiment 2) and time travel's
//! latency by history length (`bench time-travel`).

use anyhow::{bail, Result};

use super::Table;
use crate::plot::{color, si, Axis, Figure, Kind, Panel, Point, Series, Unit, XyPanel};

/// `cutover.csv`, one row per second of the load: `second`, `reads_<version>` for each version
/// that served, `not_found`, `failed`, `p50_ms`, `p99_ms`. Two panels over the same seconds:
/// the reads each version served, stacked, and the latency, its scale set by the seconds
/// around the switch (a warm-up spike above it is drawn at the top with its value); the switch
/// marked in both.
pub fn cutover(t: &Table) -> Result<Figure> {
    let seconds = t.numbers("second")?;
    let versions: Vec<String> =
        t.columns().iter().filter_map(|c| c.strip_prefix("reads_")).map(str::to_owned).collect();
    if versions.is_empty() {
        bail!("cutover: no reads_<version> column");
    }
    let mut reads: Vec<(String, Vec<f64>)> =
        versions.iter().map(|v| Ok((v.clone(), t.numbers(&format!("reads_{v}"))?))).collect::<Result<_>>()?;
    // The versions in the order they first served.
    reads.sort_by_key(|(_, n)| n.iter().position(|r| *r > 0.0).unwrap_or(usize::MAX));
    let failed = t.numbers("failed")?;
    let total_failed: f64 = failed.iter().filter(|f| f.is_finite()).sum();
    // The switch: the first second the last version served, as far into it as the share of its
    // reads the version before still served.
    let switch = reads.last().and_then(|(_, new)| {
        let s = new.iter().position(|r| *r > 0.0)?;
        let old: f64 = reads[..reads.len() - 1].iter().map(|(_, n)| n[s]).sum();
        (s > 0 || old > 0.0).then(|| seconds[s] + old / (old + new[s]).max(1.0))
    });
    let palette = [color::BLUE, color::ORANGE, color::GREEN, color::PURPLE];
    let mut columns: Vec<Series> = reads
        .iter()
        .enumerate()
        .map(|(i, (v, n))| {
            Series::new(
                format!("served by {v}"),
                palette[i % palette.len()],
                Kind::Columns,
                seconds.iter().copied().zip(n.iter().copied()),
            )
        })
        .collect();
    if t.has("not_found") {
        let nf = t.numbers("not_found")?;
        if nf.iter().any(|n| *n > 0.0) {
            columns.push(Series::new("not found (404)", color::GREY, Kind::Columns, seconds.iter().copied().zip(nf)));
        }
    }
    if total_failed > 0.0 {
        columns.push(Series::new(
            "failed",
            color::RED,
            Kind::Columns,
            seconds.iter().copied().zip(failed.iter().copied()),
        ));
    }
    // Both panels span the same seconds, half a second either side, so the switch lines up.
    let last = seconds.iter().copied().fold(0.0, f64::max);
    let seconds_axis = Axis::linear("seconds of load", Unit::Seconds).range(-0.5, last + 0.5);
    let mut reads_panel = XyPanel::new(seconds_axis.clone(), Axis::counts("reads per second"), columns)
        .heading(format!("Reads each second, by the version that served them ({} failed)", si(total_failed)))
        .height(300.0);

    let (p50, p99) = (t.numbers("p50_ms")?, t.numbers("p99_ms")?);
    // The scale: the worst p99 within 5 s of the switch (or of the whole run but its first
    // seconds of warm-up), with room above it.
    let near: Vec<f64> = seconds
        .iter()
        .zip(&p99)
        .filter(|(s, _)| switch.map_or(**s >= 3.0, |w| (**s - w).abs() <= 5.0))
        .map(|(_, p)| *p)
        .filter(|p| p.is_finite())
        .collect();
    let top = near.iter().copied().fold(0.0, f64::max) * 1.5;
    let latency = |name: &str, colour, ys: &[f64]| {
        let mut s = Series::new(name, colour, Kind::LinePoints, seconds.iter().copied().zip(ys.iter().copied()));
        s.points.retain(|p| p.y > 0.0);
        s
    };
    let mut latency_panel = XyPanel::new(
        seconds_axis,
        Axis { max: (top > 0.0).then_some(top), ..Axis::linear("latency per second", Unit::Millis) },
        vec![latency("p99", color::RED, &p99), latency("p50", color::BLUE, &p50).dashed()],
    )
    .heading("Read latency each second; the scale is set by the seconds around the switch")
    .height(300.0);
    if let Some(x) = switch {
        let to = &reads.last().expect("a version").0;
        reads_panel = reads_panel.marker(x, format!("cutover to {to}"));
        latency_panel = latency_panel.marker(x, format!("cutover to {to}"));
    }
    let figure = Figure::new(
        "Experiment 2: live reads across the cutover",
        vec![Panel::Xy(reads_panel), Panel::Xy(latency_panel)],
    );
    Ok(super::sourced(figure, t))
}

/// `time_travel.csv`: as-of latency against the aggregate's history, without and with
/// snapshots, both axes logarithmic (1 to 10k events, 0.2 to 50 ms).
pub fn time_travel(t: &Table) -> Result<Figure> {
    let (modes, events, p50, p99) = (t.text("mode")?, t.numbers("events")?, t.numbers("p50_ms")?, t.numbers("p99_ms")?);
    let pick = |mode: &str, ys: &[f64]| -> Vec<(f64, f64)> {
        modes.iter().zip(events.iter().zip(ys)).filter(|(m, _)| *m == mode).map(|(_, (e, y))| (*e, *y)).collect()
    };
    let mut series = Vec::new();
    for (mode, name, colour) in
        [("no_snapshots", "no snapshots", color::RED), ("snapshots", "snapshots every 100 versions", color::BLUE)]
    {
        let mut s = Series::new(format!("p99, {name}"), colour, Kind::LinePoints, pick(mode, &p99));
        s.points = s.points.into_iter().map(|p| Point::labelled(p.x, p.y, format!("{} ms", si(p.y)))).collect();
        series.push(s);
        series.push(Series::new(format!("p50, {name}"), colour, Kind::Line, pick(mode, &p50)).dashed());
    }
    let panel = XyPanel::new(
        Axis::log("events in the aggregate's history (log scale)", Unit::Count),
        Axis::log("as-of latency over HTTP (log scale)", Unit::Millis),
        series,
    )
    .rule(5.0, "target: p99 < 5 ms for a 1k-event aggregate")
    .height(420.0);
    let figure = Figure::new(
        "Time travel: state as of an offset, folded from the log or from a snapshot",
        vec![Panel::Xy(panel)],
    );
    Ok(super::sourced(figure, t))
}
