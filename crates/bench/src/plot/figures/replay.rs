//! The replay's plots: replay against scan and naive (`bench replay`), the replay across tiers
//! (`bench tiers`), and the tail path's write batching (`bench batch-sweep`, experiment 1).

use anyhow::{bail, Result};

use super::Table;
use crate::plot::{color, si, Axis, BarPanel, BarRow, Figure, Kind, Panel, Scale, Series, Unit, XyPanel};

/// `replay.csv`: events/s of the raw scan, the replay and the naive projector, as bars on a log
/// axis (they span two decades), each with its ratio to the scan.
pub fn replay(t: &Table) -> Result<Figure> {
    let (methods, rates) = (t.text("method")?, t.numbers("events_per_s")?);
    let of = |method: &str| methods.iter().zip(&rates).find(|(m, _)| *m == method).map(|(_, r)| *r);
    let (scan, replayed) = (of("scan"), of("replay"));
    let events = t.numbers("events")?;
    let log_events = methods.iter().zip(&events).find(|(m, _)| *m == "scan").map_or(f64::NAN, |(_, e)| *e);
    let rows = methods
        .iter()
        .zip(&rates)
        .map(|(m, r)| {
            let (label, colour) = match m.as_str() {
                "scan" => ("raw scan: COPY TO, one stream, rows discarded", color::GREY),
                "replay" => ("replay: bulk fold and COPY in, then the barrier", color::BLUE),
                "naive_sync_commit" => ("naive: one event, one upsert, one commit", color::RED),
                "naive_async_commit" => ("naive with asynchronous commit", color::ORANGE),
                other => (other, color::PURPLE),
            };
            let row = BarRow::new(label, *r, colour);
            match (m.as_str(), scan, replayed) {
                ("scan", ..) => row,
                ("replay", Some(s), _) => row.note(format!("{:.2}× the scan", r / s)),
                (_, _, Some(p)) if *r > 0.0 => row.note(format!("the replay: {}× this", si(p / r))),
                _ => row,
            }
        })
        .collect();
    let bars = BarPanel::new(Axis::log("events per second (log scale)", Unit::Count), rows);
    let title = format!("Replay against the raw scan of the log and a naive projector ({} events)", si(log_events));
    Ok(super::sourced(Figure::new(title, vec![Panel::Bars(bars)]), t))
}

/// `tiers.csv`: one row per `bench replay` run; replay and scan events/s against the log's
/// size (median of a tier's runs, their range as an error bar), and the replay over the scan.
pub fn tiers(t: &Table) -> Result<Figure> {
    let (events, replay, scan) =
        (t.numbers("events")?, t.numbers("replay_events_per_s")?, t.numbers("scan_events_per_s")?);
    if events.is_empty() {
        bail!("tiers: no runs");
    }
    // Runs of one tier share its nominal size (the 100M log grows by what the producer added).
    let tier = |e: f64| 10f64.powf(e.log10().round());
    let points = |ys: &[f64]| events.iter().zip(ys).map(|(e, y)| (tier(*e), *y)).collect::<Vec<_>>();
    let ratios: Vec<f64> = replay.iter().zip(&scan).map(|(r, s)| r / s).collect();
    let x = Axis::log("events in the log (log scale; 10 per aggregate)", Unit::Count);
    let mut scan_series =
        Series::runs("raw COPY scan, one stream", color::GREY, Kind::LinePoints, &points(&scan)).dashed();
    // The scan's error bars a little right of the replay's, so that neither hides the other.
    scan_series.points.iter_mut().for_each(|p| p.x *= 1.06);
    let replay_series =
        Series::runs("replay, 2 workers (bulk + barrier)", color::BLUE, Kind::LinePoints, &points(&replay)).values();
    let rates =
        XyPanel::new(x.clone(), Axis::linear("events per second", Unit::Count), vec![replay_series, scan_series])
            .heading("Replay and scan rates (medians; error bars span a tier's runs, which span days)")
            .height(330.0);
    let mut ratio_series = Series::runs("replay / scan", color::BLUE, Kind::LinePoints, &points(&ratios));
    ratio_series.points.iter_mut().for_each(|p| p.label = Some(format!("{:.2}×", p.y)));
    let ratio = XyPanel::new(
        x,
        Axis { min: Some(0.0), ..Axis::linear("replay / scan, same run", Unit::Ratio) },
        vec![ratio_series],
    )
    .rule(0.8, "goal: ≥ 0.8× the scan")
    .heading("The replay as a share of the scan of the same log, in the same run")
    .height(260.0);
    let figure = Figure::new(
        "The replay across tiers: 1M, 10M and 100M events (2 cores)",
        vec![Panel::Xy(rates), Panel::Xy(ratio)],
    );
    Ok(super::sourced(figure, t))
}

/// The batch at which the tail path reaches 90% of its best rate: the first batch past which
/// batching stops paying.
pub fn knee(points: &[(f64, f64)]) -> Option<f64> {
    let best = points.iter().map(|p| p.1).fold(f64::NAN, f64::max);
    points.iter().find(|p| p.1 >= 0.9 * best).map(|p| p.0)
}

/// `batch_sweep.csv`: the tail path's events/s against events per batch, both on log axes
/// (432 to 246k events/s over batches of 1 to 250k), the knee marked.
pub fn batch_sweep(t: &Table) -> Result<Figure> {
    let runs: Vec<(f64, f64)> = t.numbers("batch")?.into_iter().zip(t.numbers("events_per_s")?).collect();
    let series = Series::runs("tail path, synchronous_commit=on", color::BLUE, Kind::LinePoints, &runs).values();
    let medians: Vec<(f64, f64)> = series.points.iter().map(|p| (p.x, p.y)).collect();
    let mut panel = XyPanel::new(
        Axis::log("events per batch (log scale)", Unit::Count),
        Axis { scale: Scale::Log, ..Axis::linear("events per second (log scale)", Unit::Count) },
        vec![series],
    );
    if let Some(k) = knee(&medians) {
        panel = panel.marker(k, format!("knee: {} events per batch (90% of the best)", si(k)));
    }
    let figure = Figure::new(
        "Experiment 1: tail-path throughput against write batch size",
        vec![Panel::Xy(panel.height(400.0))],
    );
    Ok(super::sourced(figure, t))
}
