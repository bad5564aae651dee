//! The catch-up plots: lag to the tail under ingest (`bench converge`, experiment 4) and the
//! producer's rate each second (`bench produce`).

use anyhow::Result;

use super::Table;
use crate::plot::{color, si, Axis, Figure, Kind, Panel, Point, Series, Unit, XyPanel};

/// `converge.csv`, one row per lag sample: `ingest_events_per_s` (the run's target), `t_s`,
/// `lag_events`, and, when the bench wrote them, `achieved_events_per_s` and `convergence_s`
/// (empty: did not converge). One line per run, the moment each converged marked on it.
pub fn converge(t: &Table) -> Result<Figure> {
    let (target, time, lag) = (t.numbers("ingest_events_per_s")?, t.numbers("t_s")?, t.numbers("lag_events")?);
    let achieved = if t.has("achieved_events_per_s") { t.numbers("achieved_events_per_s")? } else { target.clone() };
    let converged = if t.has("convergence_s") { t.numbers("convergence_s")? } else { vec![f64::NAN; target.len()] };
    let mut runs: Vec<f64> = target.clone();
    runs.dedup();
    let mut series = Vec::new();
    let mut moments = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let rows: Vec<usize> = (0..target.len()).filter(|k| target[*k] == *run).collect();
        let first = rows[0];
        let colour = color::SERIES[i % color::SERIES.len()];
        let done = converged[first];
        let name = format!(
            "ingest {}/s (target {}/s){}",
            si(achieved[first]),
            si(*run),
            if done.is_finite() { "" } else { ", did not converge" }
        );
        series.push(Series::new(name, colour, Kind::Line, rows.iter().map(|k| (time[*k], lag[*k]))));
        if done.is_finite() {
            // The lag at the moment of convergence: the sample nearest to it.
            let at = rows.iter().min_by(|a, b| (time[**a] - done).abs().total_cmp(&(time[**b] - done).abs()));
            let y = at.map_or(0.0, |k| lag[*k]);
            moments.push(Point::labelled(done, y, format!("converged at {} s", si(done))));
        }
    }
    series.push(Series {
        name: String::new(),
        color: color::BLACK,
        kind: Kind::Points,
        dashed: false,
        values: false,
        points: moments,
    });
    let panel = XyPanel::new(
        Axis::linear("seconds since the replay started", Unit::Seconds),
        Axis::counts("lag to the tail (events)"),
        series,
    )
    .height(420.0);
    let figure =
        Figure::new("Experiment 4: lag to the tail while replaying from offset 0 under ingest", vec![Panel::Xy(panel)]);
    Ok(super::sourced(figure, t))
}

/// `produce.csv`: the producer's events/s each second, one line per phase.
pub fn produce(t: &Table) -> Result<Figure> {
    let (phase, time, rate) = (t.text("phase")?, t.numbers("t_s")?, t.numbers("events_per_s")?);
    let series = super::series_by(&phase, &time, &rate, Kind::Line, |p| p.replace('_', " "));
    let panel = XyPanel::new(Axis::linear("seconds", Unit::Seconds), Axis::counts("events per second"), series);
    Ok(super::sourced(Figure::new("The producer, unpaced: events appended each second", vec![Panel::Xy(panel)]), t))
}
