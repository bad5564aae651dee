//! The SVG document a plot is drawn into: shapes, and text placed only where it overlaps no
//! text already there.

use std::fmt::Write;

use super::text::{Anchor, TextBox, BOLD_WIDTH, FONT_FAMILY};

/// A text to draw: its baseline position, size, anchor and role.
#[derive(Debug, Clone)]
pub struct Text {
    pub x: f64,
    pub y: f64,
    pub size: f64,
    pub anchor: Anchor,
    pub content: String,
    /// The SVG class: `tick` for tick labels (the check reads them as numbers), else `label`.
    pub class: &'static str,
    pub color: &'static str,
    pub bold: bool,
}

impl Text {
    /// A label of `size` pixels in black.
    pub fn new(x: f64, y: f64, size: f64, anchor: Anchor, content: impl Into<String>) -> Text {
        Text { x, y, size, anchor, content: content.into(), class: "label", color: "#222222", bold: false }
    }

    /// The same text as a tick label.
    pub fn tick(self) -> Text {
        Text { class: "tick", ..self }
    }

    /// The same text in `color`.
    pub fn color(self, color: &'static str) -> Text {
        Text { color, ..self }
    }

    /// The same text in bold.
    pub fn bold(self) -> Text {
        Text { bold: true, ..self }
    }

    /// Its estimated box.
    pub fn bounds(&self) -> TextBox {
        let size = if self.bold { self.size * BOLD_WIDTH } else { self.size };
        let b = TextBox::of(&self.content, self.x, self.y, size, self.anchor);
        if self.bold {
            TextBox { top: self.y - 0.76 * self.size, bottom: self.y + 0.24 * self.size, ..b }
        } else {
            b
        }
    }
}

/// An SVG document being drawn.
pub struct Canvas {
    pub width: f64,
    pub height: f64,
    body: String,
    placed: Vec<TextBox>,
}

/// `v` with at most one decimal, for coordinates.
fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// `s` with XML's special characters escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Canvas {
    /// An empty white canvas.
    pub fn new(width: f64, height: f64) -> Canvas {
        let mut c = Canvas { width, height, body: String::new(), placed: Vec::new() };
        c.rect(0.0, 0.0, width, height, "#ffffff", None);
        c
    }

    /// A filled rectangle, optionally outlined.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: Option<&str>) {
        let stroke = stroke.map_or(String::new(), |s| format!(r#" stroke="{s}" stroke-width="1""#));
        let _ = writeln!(
            self.body,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"{stroke}/>"#,
            n(x),
            n(y),
            n(w.max(0.0)),
            n(h.max(0.0))
        );
    }

    /// A straight line; `dash` is an SVG dash array (`"4 3"`).
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), stroke: &str, width: f64, dash: Option<&str>) {
        let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            self.body,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{stroke}" stroke-width="{}"{dash}/>"#,
            n(from.0),
            n(from.1),
            n(to.0),
            n(to.1),
            n(width)
        );
    }

    /// A line through `points`.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, dash: Option<&str>) {
        if points.len() < 2 {
            return;
        }
        let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
        let pts = points.iter().map(|(x, y)| format!("{},{}", n(*x), n(*y))).collect::<Vec<_>>().join(" ");
        let _ = writeln!(
            self.body,
            r#"<polyline points="{pts}" fill="none" stroke="{stroke}" stroke-width="{}" stroke-linejoin="round"{dash}/>"#,
            n(width)
        );
    }

    /// A filled polygon.
    pub fn polygon(&mut self, points: &[(f64, f64)], fill: &str) {
        let pts = points.iter().map(|(x, y)| format!("{},{}", n(*x), n(*y))).collect::<Vec<_>>().join(" ");
        let _ = writeln!(self.body, r#"<polygon points="{pts}" fill="{fill}"/>"#);
    }

    /// A filled circle.
    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, fill: &str) {
        let _ = writeln!(self.body, r#"<circle cx="{}" cy="{}" r="{}" fill="{fill}"/>"#, n(cx), n(cy), n(r));
    }

    /// Whether `text` would overlap no text already placed and lie on the canvas.
    pub fn fits(&self, text: &Text) -> bool {
        let b = text.bounds();
        b.inside(self.width, self.height) && self.placed.iter().all(|p| !p.overlaps(&b))
    }

    /// Places `text` whatever it overlaps (titles, ticks: the layout makes room for them).
    pub fn text(&mut self, text: Text) {
        self.placed.push(text.bounds());
        let weight = if text.bold { r#" font-weight="bold""# } else { "" };
        // A white halo keeps a label legible where it crosses a line or a grid.
        let halo = if text.color == "#ffffff" {
            ""
        } else {
            r##" stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke""##
        };
        let _ = writeln!(
            self.body,
            r#"<text class="{}" x="{}" y="{}" font-size="{}" text-anchor="{}" font-family="{FONT_FAMILY}" fill="{}"{weight}{halo}>{}</text>"#,
            text.class,
            n(text.x),
            n(text.y),
            n(text.size),
            text.anchor.as_svg(),
            text.color,
            escape(&text.content)
        );
    }

    /// Places the first of `candidates` that fits; false when none does (the label is left out
    /// rather than drawn over another).
    pub fn try_text(&mut self, candidates: impl IntoIterator<Item = Text>) -> bool {
        for t in candidates {
            if self.fits(&t) {
                self.text(t);
                return true;
            }
        }
        false
    }

    /// The finished document.
    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n{}</svg>\n",
            self.body,
            w = n(self.width),
            h = n(self.height)
        )
    }
}
