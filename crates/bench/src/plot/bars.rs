//! Horizontal bars, one row per category: the category's name at the left of its row, wrapped
//! so that no two names touch, every row holding a bar (no empty slots), its value at the bar's
//! end and an optional note at the right.

use super::axis::{Axis, Ticks};
use super::figure::{size, Frame};
use super::svg::{Canvas, Text};
use super::text::{width, wrap, Anchor};

/// One category's bar.
#[derive(Debug, Clone)]
pub struct BarRow {
    pub label: String,
    pub value: f64,
    /// The range of its runs, drawn as an error bar.
    pub range: Option<(f64, f64)>,
    pub color: &'static str,
    /// Printed at the right of the row (e.g. `time travel: refused`).
    pub note: Option<String>,
    /// Printed at the bar's end instead of the value in the axis's unit.
    pub value_label: Option<String>,
}

impl BarRow {
    /// A bar of `value` named `label`.
    pub fn new(label: impl Into<String>, value: f64, color: &'static str) -> BarRow {
        BarRow { label: label.into(), value, range: None, color, note: None, value_label: None }
    }

    /// The same bar with a note at the right of its row.
    pub fn note(self, note: impl Into<String>) -> BarRow {
        BarRow { note: Some(note.into()), ..self }
    }

    /// The same bar with its own value label.
    pub fn value_label(self, label: impl Into<String>) -> BarRow {
        BarRow { value_label: Some(label.into()), ..self }
    }

    /// The same bar with the range of its runs.
    pub fn range(self, lo: f64, hi: f64) -> BarRow {
        BarRow { range: Some((lo, hi)), ..self }
    }
}

/// A panel of horizontal bars along a value axis.
pub struct BarPanel {
    pub heading: Option<String>,
    pub value: Axis,
    pub rows: Vec<BarRow>,
    /// Vertical reference lines at a value, labelled above the bars.
    pub rules: Vec<(f64, String)>,
    /// The widest a category's name may be before it wraps.
    pub label_width: f64,
}

/// Height of one line of a wrapped category name.
const LINE: f64 = 15.0;

impl BarPanel {
    /// A panel of `rows` along `value`.
    pub fn new(value: Axis, rows: Vec<BarRow>) -> BarPanel {
        BarPanel { heading: None, value, rows, rules: Vec::new(), label_width: 250.0 }
    }

    /// The same panel with a heading.
    pub fn heading(self, heading: impl Into<String>) -> BarPanel {
        BarPanel { heading: Some(heading.into()), ..self }
    }

    /// The same panel with a reference line at `value`.
    pub fn rule(mut self, value: f64, label: impl Into<String>) -> BarPanel {
        self.rules.push((value, label.into()));
        self
    }

    fn lines(&self, row: &BarRow) -> Vec<String> {
        wrap(&row.label, size::TEXT, self.label_width)
    }

    fn row_height(&self, row: &BarRow) -> f64 {
        (self.lines(row).len() as f64 * LINE + 9.0).max(26.0)
    }

    fn head(&self) -> f64 {
        self.heading.as_ref().map_or(0.0, |_| size::LINE + 2.0) + if self.rules.is_empty() { 0.0 } else { size::LINE }
    }

    /// The panel's height, its labels included.
    pub fn height(&self) -> f64 {
        8.0 + self.head() + 8.0 + self.rows.iter().map(|r| self.row_height(r)).sum::<f64>() + 44.0
    }

    /// The room the category names need left of the bars.
    pub(super) fn left_margin(&self) -> f64 {
        self.rows.iter().flat_map(|r| self.lines(r)).map(|l| width(&l, size::TEXT)).fold(0.0, f64::max) + 12.0
    }

    /// The room the notes need right of the bars.
    pub(super) fn right_margin(&self) -> f64 {
        let notes = self.rows.iter().filter_map(|r| r.note.as_ref()).map(|n| width(n, size::TEXT)).fold(0.0, f64::max);
        if notes > 0.0 {
            notes + 20.0
        } else {
            8.0
        }
    }

    fn ticks(&self, left: f64, right: f64, canvas_width: f64) -> Ticks {
        let values = self.rows.iter().flat_map(|r| [Some(r.value), r.range.map(|x| x.0), r.range.map(|x| x.1)]);
        let values: Vec<f64> =
            values.flatten().chain(self.rules.iter().map(|r| r.0)).filter(|v| v.is_finite()).collect();
        let positive: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
        let lo = if self.value.scale == super::Scale::Log {
            positive.iter().copied().fold(f64::MAX, f64::min)
        } else {
            values.iter().copied().fold(0.0, f64::min)
        };
        // Room for the value at the end of the longest bar.
        let hi = values.iter().copied().fold(f64::MIN, f64::max).max(lo) * 1.08;
        let hi = if hi <= lo { lo + 1.0 } else { hi };
        // Bars grow from the axis's start: on a log axis that is a whole decade below the
        // smallest bar, so that a bar's length still says something about its value.
        let axis = match self.value.scale {
            super::Scale::Log if self.value.min.is_none() => {
                Axis { min: Some(10f64.powf(lo.log10().floor())), ..self.value.clone() }
            }
            _ => self.value.clone(),
        };
        axis.fitted_ticks(lo, hi, (left, right), size::TEXT, canvas_width)
    }

    /// Draws the panel in `frame`.
    pub(super) fn draw(&self, canvas: &mut Canvas, frame: &Frame) {
        let text = size::TEXT;
        let mut y = frame.top + 8.0;
        if let Some(h) = &self.heading {
            y += size::LINE;
            canvas.text(Text::new(size::PAD, y, size::HEADING, Anchor::Start, h.clone()).bold());
            y += 2.0;
        }
        let rule_row = y + size::LINE;
        if !self.rules.is_empty() {
            y += size::LINE;
        }
        let (left, right) = (frame.left, frame.right);
        let top = y + 8.0;
        let bottom = top + self.rows.iter().map(|r| self.row_height(r)).sum::<f64>();
        let t = self.ticks(left, right, canvas.width);
        let px = |v: f64| t.map(v.clamp(t.lo, t.hi), left, right);
        for v in &t.major {
            let x = px(*v);
            canvas.line((x, top), (x, bottom), "#e6e6e6", 1.0, None);
            canvas.line((x, bottom), (x, bottom + 4.0), "#888888", 1.0, None);
            canvas.text(Text::new(x, bottom + 17.0, text, Anchor::Middle, self.value.unit.format(*v)).tick());
        }
        canvas.line((left, bottom), (right, bottom), "#888888", 1.0, None);
        canvas.line((left, top), (left, bottom), "#888888", 1.0, None);
        canvas.text(Text::new((left + right) / 2.0, bottom + 35.0, text, Anchor::Middle, self.value.title.clone()));

        let mut row_top = top;
        let mut values = Vec::new();
        for row in &self.rows {
            let h = self.row_height(row);
            let mid = row_top + h / 2.0;
            let lines = self.lines(row);
            let first = mid - (lines.len() as f64 - 1.0) * LINE / 2.0 + 0.3 * text;
            for (i, line) in lines.iter().enumerate() {
                canvas.text(Text::new(left - 10.0, first + i as f64 * LINE, text, Anchor::End, line.clone()));
            }
            let start = px(t.lo.max(if self.value.scale == super::Scale::Log { t.lo } else { 0.0 }));
            let end = if row.value.is_finite() && (self.value.scale == super::Scale::Linear || row.value > 0.0) {
                px(row.value)
            } else {
                start
            };
            let bar = (h - 10.0).clamp(12.0, 22.0);
            canvas.rect(start, mid - bar / 2.0, (end - start).max(2.0), bar, row.color, None);
            if let Some((lo, hi)) = row.range {
                let (a, b) = (px(lo), px(hi));
                canvas.line((a, mid), (b, mid), "#222222", 1.5, None);
                canvas.line((a, mid - 5.0), (a, mid + 5.0), "#222222", 1.5, None);
                canvas.line((b, mid - 5.0), (b, mid + 5.0), "#222222", 1.5, None);
            }
            if let Some(note) = &row.note {
                canvas.text(Text::new(right + 16.0, mid + 0.3 * text, text, Anchor::Start, note.clone()));
            }
            let label = row.value_label.clone().unwrap_or_else(|| self.value.unit.format(row.value));
            let after = row.range.map_or(end, |(_, hi)| px(hi).max(end));
            values.push((after, end, mid, label));
            row_top += h;
        }
        for (after, end, mid, label) in values {
            canvas.try_text([
                Text::new(after + 6.0, mid + 0.3 * text, text, Anchor::Start, label.clone()).bold(),
                Text::new(end - 6.0, mid + 0.3 * text, text, Anchor::End, label).bold().color("#ffffff"),
            ]);
        }
        for (v, label) in &self.rules {
            let x = px(*v);
            canvas.line((x, top - 4.0), (x, bottom), "#444444", 1.5, Some("5 3"));
            let w = width(label, text);
            let at = x.clamp(left + w / 2.0, canvas.width - size::PAD - w / 2.0);
            canvas.try_text([
                Text::new(at, rule_row, text, Anchor::Middle, label.clone()),
                Text::new(x, rule_row, text, Anchor::Start, label.clone()),
            ]);
        }
    }
}
