//! A figure: a title, a line saying where its data comes from, and panels stacked one above
//! the other with their plot areas aligned; written as SVG.

use std::path::Path;

use anyhow::Context;

use super::bars::BarPanel;
use super::svg::{Canvas, Text};
use super::text::{width, wrap, Anchor};
use super::xy::XyPanel;

/// Colours that stay apart for readers with colour-blindness (Okabe and Ito).
pub mod color {
    pub const BLUE: &str = "#0072B2";
    pub const ORANGE: &str = "#E69F00";
    pub const GREEN: &str = "#009E73";
    pub const RED: &str = "#D55E00";
    pub const PURPLE: &str = "#CC79A7";
    pub const SKY: &str = "#56B4E9";
    pub const GREY: &str = "#777777";
    pub const BLACK: &str = "#222222";
    /// Series colours in order.
    pub const SERIES: [&str; 6] = [BLUE, ORANGE, GREEN, RED, PURPLE, SKY];
}

/// One panel of a figure.
pub enum Panel {
    Xy(XyPanel),
    Bars(BarPanel),
}

/// A figure of one or more panels.
pub struct Figure {
    pub title: String,
    /// A small line under the title: the run the data comes from.
    pub source: Option<String>,
    pub width: f64,
    pub panels: Vec<Panel>,
}

/// The sizes a figure's parts share.
pub(super) mod size {
    /// Tick labels, legends, axis titles.
    pub const TEXT: f64 = 12.0;
    /// The figure's title.
    pub const TITLE: f64 = 17.0;
    /// A panel's heading.
    pub const HEADING: f64 = 13.0;
    /// The outer margin.
    pub const PAD: f64 = 12.0;
    /// One line of text with its spacing.
    pub const LINE: f64 = 18.0;
}

/// Where a panel is drawn: its plot area's left and right edges, and its top.
pub(super) struct Frame {
    pub left: f64,
    pub right: f64,
    pub top: f64,
}

impl Figure {
    /// A figure of `panels` under `title`, 900 pixels wide.
    pub fn new(title: impl Into<String>, panels: Vec<Panel>) -> Figure {
        Figure { title: title.into(), source: None, width: 900.0, panels }
    }

    /// The same figure with a line saying where its data comes from.
    pub fn source(self, source: impl Into<String>) -> Figure {
        Figure { source: Some(source.into()), ..self }
    }

    /// The figure as an SVG document.
    pub fn render(&self) -> String {
        let title = wrap(&self.title, size::TITLE * super::text::BOLD_WIDTH, self.width - 2.0 * size::PAD);
        let source = self.source.as_ref().map(|s| wrap(s, size::TEXT, self.width - 2.0 * size::PAD));
        let mut y = size::PAD + size::TITLE;
        let head = title.len() as f64 * (size::TITLE + 6.0) + source.as_ref().map_or(0.0, |s| s.len() as f64 * 16.0);
        // The plot areas of every panel share their left edge: the widest left margin.
        let left = self
            .panels
            .iter()
            .map(|p| match p {
                Panel::Xy(xy) => xy.left_margin(),
                Panel::Bars(b) => b.left_margin(),
            })
            .fold(0.0, f64::max)
            + size::PAD;
        let height = size::PAD
            + head
            + self
                .panels
                .iter()
                .map(|p| match p {
                    Panel::Xy(xy) => xy.height,
                    Panel::Bars(b) => b.height(),
                })
                .sum::<f64>()
            + size::PAD;
        let mut canvas = Canvas::new(self.width, height.ceil());
        for line in &title {
            canvas.text(Text::new(size::PAD, y, size::TITLE, Anchor::Start, line.clone()).bold());
            y += size::TITLE + 6.0;
        }
        for line in source.iter().flatten() {
            canvas.text(Text::new(size::PAD, y - 4.0, size::TEXT, Anchor::Start, line.clone()).color(color::GREY));
            y += 16.0;
        }
        let mut top = size::PAD + head;
        for panel in &self.panels {
            match panel {
                Panel::Xy(xy) => {
                    let right = self.width - size::PAD - xy.right_margin();
                    xy.draw(&mut canvas, &Frame { left, right, top });
                    top += xy.height;
                }
                Panel::Bars(b) => {
                    let right = self.width - size::PAD - b.right_margin();
                    b.draw(&mut canvas, &Frame { left, right, top });
                    top += b.height();
                }
            }
        }
        canvas.finish()
    }

    /// Writes the figure to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.render()).with_context(|| format!("writing {}", path.display()))
    }
}

/// One legend entry: a swatch in `color` and a name.
pub(super) struct LegendEntry<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub dashed: bool,
}

/// The width a legend needs on one line.
pub(super) fn legend_width(entries: &[LegendEntry]) -> f64 {
    entries.iter().map(|e| 22.0 + width(e.name, size::TEXT) + 16.0).sum()
}

/// Draws a legend on one line ending at `right`, its baseline at `y`.
pub(super) fn draw_legend(canvas: &mut Canvas, entries: &[LegendEntry], right: f64, y: f64) {
    let mut x = right - legend_width(entries) + 16.0;
    for e in entries {
        let mid = y - 0.3 * size::TEXT;
        canvas.line((x, mid), (x + 18.0, mid), e.color, 3.0, e.dashed.then_some("4 3"));
        x += 22.0;
        canvas.text(Text::new(x, y, size::TEXT, Anchor::Start, e.name));
        x += width(e.name, size::TEXT) + 16.0;
    }
}
