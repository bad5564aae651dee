//! A panel of values against values: lines, points with their range, stacked columns; markers
//! for the moments that matter, reference lines, and values past the axis's top drawn at the
//! top edge with their value printed.

use super::axis::{Axis, Ticks};
use super::figure::{draw_legend, legend_width, size, Frame, LegendEntry};
use super::labels::si;
use super::svg::{Canvas, Text};
use super::text::{width, Anchor};

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Line,
    Points,
    LinePoints,
    /// Columns, stacked on the columns of the series before it at the same x.
    Columns,
}

/// One value, with the range of its runs when it was measured more than once.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub range: Option<(f64, f64)>,
    /// Printed beside the point (in place of its value).
    pub label: Option<String>,
}

impl Point {
    /// A point with a label printed beside it.
    pub fn labelled(x: f64, y: f64, label: impl Into<String>) -> Point {
        Point { x, y, range: None, label: Some(label.into()) }
    }
}

/// A named series of points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub kind: Kind,
    pub dashed: bool,
    /// Print each point's value beside it.
    pub values: bool,
    pub points: Vec<Point>,
}

impl Series {
    /// A series of `(x, y)` points.
    pub fn new(
        name: impl Into<String>,
        color: &'static str,
        kind: Kind,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) -> Series {
        let points = points.into_iter().map(|(x, y)| Point { x, y, range: None, label: None }).collect();
        Series { name: name.into(), color, kind, dashed: false, values: false, points }
    }

    /// A series of runs: the points of one x are one point, their median, with their range as an
    /// error bar.
    pub fn runs(name: impl Into<String>, color: &'static str, kind: Kind, runs: &[(f64, f64)]) -> Series {
        let mut xs: Vec<f64> = runs.iter().map(|r| r.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let points = xs
            .into_iter()
            .map(|x| {
                let mut ys: Vec<f64> = runs.iter().filter(|r| r.0 == x).map(|r| r.1).collect();
                ys.sort_by(f64::total_cmp);
                let mid = ys.len() / 2;
                let y = if ys.len() % 2 == 1 { ys[mid] } else { (ys[mid - 1] + ys[mid]) / 2.0 };
                let range = (ys.len() > 1).then(|| (ys[0], ys[ys.len() - 1]));
                Point { x, y, range, label: None }
            })
            .collect();
        Series { name: name.into(), color, kind, dashed: false, values: false, points }
    }

    /// The same series with its values printed.
    pub fn values(self) -> Series {
        Series { values: true, ..self }
    }

    /// The same series dashed.
    pub fn dashed(self) -> Series {
        Series { dashed: true, ..self }
    }
}

/// A vertical line at a moment that matters (the switch, the knee), labelled above the plot.
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// A horizontal reference line (a goal, a baseline), labelled at its right end.
#[derive(Debug, Clone)]
pub struct Rule {
    pub y: f64,
    pub label: String,
}

/// Whether `p` is the largest of the run of consecutive points above `top` it belongs to: a run
/// of clipped points gets one label, its peak's.
fn is_peak_of_clipped_run(points: &[&Point], p: &Point, top: f64) -> bool {
    let Some(i) = points.iter().position(|q| std::ptr::eq(*q, p)) else { return true };
    let start = points[..i].iter().rposition(|q| q.y <= top).map_or(0, |k| k + 1);
    let end = points[i..].iter().position(|q| q.y <= top).map_or(points.len(), |k| i + k);
    points[start..end].iter().all(|q| q.y <= p.y) && points[start..i].iter().all(|q| q.y < p.y)
}

/// A panel of series against an x and a y axis.
pub struct XyPanel {
    pub heading: Option<String>,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    pub rules: Vec<Rule>,
    /// The panel's height, its labels included.
    pub height: f64,
}

/// Distance from the plot area's bottom to the x tick labels' baseline, and to the x title's.
const X_TICKS: f64 = 17.0;
const X_TITLE: f64 = 35.0;

impl XyPanel {
    /// A panel of `series`, 360 pixels high.
    pub fn new(x: Axis, y: Axis, series: Vec<Series>) -> XyPanel {
        XyPanel { heading: None, x, y, series, markers: Vec::new(), rules: Vec::new(), height: 360.0 }
    }

    /// The same panel with a heading.
    pub fn heading(self, heading: impl Into<String>) -> XyPanel {
        XyPanel { heading: Some(heading.into()), ..self }
    }

    /// The same panel, `height` pixels high.
    pub fn height(self, height: f64) -> XyPanel {
        XyPanel { height, ..self }
    }

    /// The same panel with a marker.
    pub fn marker(mut self, x: f64, label: impl Into<String>) -> XyPanel {
        self.markers.push(Marker { x, label: label.into() });
        self
    }

    /// The same panel with a reference line.
    pub fn rule(mut self, y: f64, label: impl Into<String>) -> XyPanel {
        self.rules.push(Rule { y, label: label.into() });
        self
    }

    fn x_extent(&self) -> (f64, f64) {
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.x)).chain(self.markers.iter().map(|m| m.x));
        let xs: Vec<f64> = xs.filter(|x| x.is_finite() && (self.x.scale == super::Scale::Linear || *x > 0.0)).collect();
        let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        if xs.is_empty() {
            return (0.0, 1.0);
        }
        if let (Some(min), Some(max)) = (self.x.min, self.x.max) {
            return (min, max);
        }
        if self.series.iter().any(|s| s.kind == Kind::Columns) {
            let half = self.column_spacing() / 2.0;
            return (lo - half, hi + half);
        }
        // On a log axis, points at the ends would sit on the axes: a little room either side.
        if self.x.scale == super::Scale::Log && self.series.iter().any(|s| s.kind != Kind::Line) {
            return (lo / 1.15, hi * 1.15);
        }
        (lo, hi)
    }

    fn y_extent(&self) -> (f64, f64) {
        let mut ys: Vec<f64> = Vec::new();
        let mut stacks: Vec<(f64, f64)> = Vec::new();
        for s in &self.series {
            for p in &s.points {
                if s.kind == Kind::Columns {
                    match stacks.iter_mut().find(|(x, _)| *x == p.x) {
                        Some(stack) => stack.1 += p.y,
                        None => stacks.push((p.x, p.y)),
                    }
                } else {
                    ys.push(p.y);
                }
                if let Some((lo, hi)) = p.range {
                    ys.extend([lo, hi]);
                }
            }
        }
        ys.extend(stacks.iter().map(|s| s.1));
        ys.extend(self.rules.iter().map(|r| r.y));
        let ys: Vec<f64> =
            ys.into_iter().filter(|y| y.is_finite() && (self.y.scale == super::Scale::Linear || *y > 0.0)).collect();
        if ys.is_empty() {
            return (0.0, 1.0);
        }
        ys.iter().fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(*y), hi.max(*y)))
    }

    fn column_spacing(&self) -> f64 {
        let mut xs: Vec<f64> =
            self.series.iter().filter(|s| s.kind == Kind::Columns).flat_map(|s| s.points.iter().map(|p| p.x)).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        if xs.len() < 2 {
            return 1.0;
        }
        xs.windows(2).map(|w| w[1] - w[0]).fold(f64::MAX, f64::min)
    }

    fn y_ticks(&self) -> Ticks {
        let (lo, hi) = self.y_extent();
        self.y.ticks(lo, hi, ((self.height - 110.0) / 34.0).max(3.0) as usize)
    }

    /// The room the y tick labels need left of the plot area.
    pub(super) fn left_margin(&self) -> f64 {
        let t = self.y_ticks();
        t.major.iter().map(|v| width(&self.y.unit.format(*v), size::TEXT)).fold(0.0, f64::max) + 10.0
    }

    /// The room the panel needs right of the plot area.
    pub(super) fn right_margin(&self) -> f64 {
        8.0
    }

    fn legend(&self) -> Vec<LegendEntry<'_>> {
        self.series
            .iter()
            .filter(|s| !s.name.is_empty())
            .map(|s| LegendEntry { name: &s.name, color: s.color, dashed: s.dashed })
            .collect()
    }

    /// Draws the panel in `frame`.
    pub(super) fn draw(&self, canvas: &mut Canvas, frame: &Frame) {
        let text = size::TEXT;
        let mut row = frame.top + size::LINE;
        if let Some(h) = &self.heading {
            canvas.text(Text::new(size::PAD, row, size::HEADING, Anchor::Start, h.clone()).bold());
            row += size::LINE + 2.0;
        }
        // The y axis's title above its tick labels; the legend on the same line if it fits.
        let legend = self.legend();
        canvas.text(Text::new(size::PAD, row, text, Anchor::Start, self.y.title.clone()));
        let title_end = size::PAD + width(&self.y.title, text) + 24.0;
        if !legend.is_empty() {
            if title_end + legend_width(&legend) > frame.right {
                row += size::LINE;
            }
            draw_legend(canvas, &legend, frame.right, row);
        }
        if !self.markers.is_empty() {
            row += size::LINE;
        }
        let marker_row = row;
        let (top, bottom) = (row + 10.0, frame.top + self.height - 44.0);
        let (left, right) = (frame.left, frame.right);

        let yt = self.y_ticks();
        let (x_lo, x_hi) = self.x_extent();
        // Columns span half a column either side of their x: the axis spans exactly that.
        let x_axis = if self.series.iter().any(|s| s.kind == Kind::Columns) {
            Axis { min: Some(x_lo), max: Some(x_hi), ..self.x.clone() }
        } else {
            self.x.clone()
        };
        let xt = x_axis.fitted_ticks(x_lo, x_hi, (left, right), text, canvas.width);
        let (px, py) = (|v: f64| xt.map(v, left, right), |v: f64| yt.map(v, bottom, top));

        // Grid, axes, ticks.
        for v in &yt.major {
            let y = py(*v);
            canvas.line((left, y), (right, y), "#e6e6e6", 1.0, None);
            canvas.text(Text::new(left - 8.0, y + 0.3 * text, text, Anchor::End, self.y.unit.format(*v)).tick());
        }
        for v in &xt.major {
            let x = px(*v);
            canvas.line((x, top), (x, bottom), "#eeeeee", 1.0, None);
            canvas.line((x, bottom), (x, bottom + 4.0), "#888888", 1.0, None);
            canvas.text(Text::new(x, bottom + X_TICKS, text, Anchor::Middle, self.x.unit.format(*v)).tick());
        }
        canvas.line((left, bottom), (right, bottom), "#888888", 1.0, None);
        canvas.line((left, top), (left, bottom), "#888888", 1.0, None);
        canvas.text(Text::new((left + right) / 2.0, bottom + X_TITLE, text, Anchor::Middle, self.x.title.clone()));

        // Markers: the line now, the label in its row above the plot.
        for m in &self.markers {
            let x = px(m.x);
            canvas.line((x, top - 4.0), (x, bottom), "#444444", 1.5, Some("5 3"));
            let w = width(&m.label, text);
            let anchor_x = x.clamp(left + w / 2.0, canvas.width - size::PAD - w / 2.0);
            canvas.try_text([
                Text::new(anchor_x, marker_row, text, Anchor::Middle, m.label.clone()).bold(),
                Text::new(x, marker_row, text, Anchor::Start, m.label.clone()).bold(),
                Text::new(x, marker_row, text, Anchor::End, m.label.clone()).bold(),
            ]);
        }
        for r in &self.rules {
            if !yt.can_show(r.y) || r.y > yt.hi || r.y < yt.lo {
                continue;
            }
            let y = py(r.y);
            canvas.line((left, y), (right, y), "#555555", 1.0, Some("2 3"));
            canvas.try_text([
                Text::new(right - 4.0, y - 5.0, text, Anchor::End, r.label.clone()).color("#444444"),
                Text::new(right - 4.0, y + 14.0, text, Anchor::End, r.label.clone()).color("#444444"),
                Text::new(left + 6.0, y - 5.0, text, Anchor::Start, r.label.clone()).color("#444444"),
            ]);
        }

        self.draw_columns(canvas, &xt, &yt, (left, right, top, bottom));
        let mut late: Vec<(f64, f64, String)> = Vec::new();
        for s in self.series.iter().filter(|s| s.kind != Kind::Columns) {
            let shown: Vec<&Point> = s.points.iter().filter(|p| xt.can_show(p.x) && yt.can_show(p.y)).collect();
            let place = |p: &Point| (px(p.x), py(p.y.min(yt.hi)));
            if matches!(s.kind, Kind::Line | Kind::LinePoints) {
                let pts: Vec<(f64, f64)> = shown.iter().map(|p| place(p)).collect();
                canvas.polyline(&pts, s.color, 2.0, s.dashed.then_some("6 4"));
            }
            for p in &shown {
                let (x, y) = place(p);
                if let Some((lo, hi)) = p.range {
                    let (ylo, yhi) = (py(lo.max(yt.lo)), py(hi.min(yt.hi)));
                    canvas.line((x, ylo), (x, yhi), s.color, 1.5, None);
                    canvas.line((x - 4.0, ylo), (x + 4.0, ylo), s.color, 1.5, None);
                    canvas.line((x - 4.0, yhi), (x + 4.0, yhi), s.color, 1.5, None);
                }
                if matches!(s.kind, Kind::Points | Kind::LinePoints) {
                    canvas.circle(x, y, 3.5, s.color);
                }
                if p.y > yt.hi {
                    canvas.polygon(&[(x - 5.0, top + 7.0), (x + 5.0, top + 7.0), (x, top)], s.color);
                    if is_peak_of_clipped_run(&shown, p, yt.hi) {
                        late.push((x, top, format!("{} ↑", self.y.unit.format(p.y))));
                    }
                } else if let Some(label) = &p.label {
                    late.push((x, y, label.clone()));
                } else if s.values {
                    late.push((x, y, si(p.y)));
                }
            }
        }
        // Values last, each where it overlaps nothing (or left out).
        for (x, y, label) in late {
            canvas.try_text([
                Text::new(x, y - 8.0, text, Anchor::Middle, label.clone()),
                Text::new(x + 8.0, y + 0.3 * text, text, Anchor::Start, label.clone()),
                Text::new(x, y + 18.0, text, Anchor::Middle, label.clone()),
                Text::new(x - 8.0, y + 0.3 * text, text, Anchor::End, label.clone()),
                Text::new(x + 8.0, y + 16.0, text, Anchor::Start, label),
            ]);
        }
    }

    fn draw_columns(
        &self,
        canvas: &mut Canvas,
        xt: &Ticks,
        yt: &Ticks,
        (left, right, top, bottom): (f64, f64, f64, f64),
    ) {
        let columns: Vec<&Series> = self.series.iter().filter(|s| s.kind == Kind::Columns).collect();
        if columns.is_empty() {
            return;
        }
        let spacing = self.column_spacing();
        let w = ((xt.map(spacing, left, right) - xt.map(0.0, left, right)) * 0.8).max(1.0);
        let mut stacks: Vec<(f64, f64)> = Vec::new();
        for s in columns {
            for p in &s.points {
                let base = stacks.iter().find(|(x, _)| *x == p.x).map_or(0.0, |s| s.1);
                let y0 = if base <= yt.lo { bottom } else { yt.map(base.min(yt.hi), bottom, top) };
                let y1 = yt.map((base + p.y).clamp(yt.lo, yt.hi), bottom, top);
                let x = xt.map(p.x, left, right);
                canvas.rect(x - w / 2.0, y1, w, y0 - y1, s.color, None);
                match stacks.iter_mut().find(|(x, _)| *x == p.x) {
                    Some(stack) => stack.1 += p.y,
                    None => stacks.push((p.x, p.y)),
                }
            }
        }
    }
}
