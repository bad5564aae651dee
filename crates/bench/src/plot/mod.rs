//! The plots of the benchmarks, drawn to one set of conventions so that each reads without its
//! text: tick labels as SI numbers with their unit (`200k`, `1M`, `5 s`, never `200000.0`),
//! whole-number ticks on counts, a log axis where values span decades, categories as
//! horizontal bars with their names wrapped (no name over another, no empty slot), the moment
//! that matters marked (the switch, the knee), values that would flatten the rest of a panel
//! drawn at its top edge with their value printed, and the range of repeated runs as error
//! bars. Every label is placed only where it overlaps no other; [`check`] reads a finished SVG
//! back and says whether it holds.
//!
//! The SVG is written here rather than by a plotting library so that every text's position,
//! size and anchor is known, which is what makes the check possible. [`figures`] holds the
//! plots of the benchmarks, each drawn from the CSV its benchmark writes, so that a committed
//! CSV redraws its plot (`reproject bench plot`) without rerunning the benchmark.

mod axis;
mod bars;
pub mod check;
mod figure;
pub mod figures;
mod labels;
mod quick;
mod svg;
mod text;
mod xy;

pub use axis::{Axis, Scale};
pub use bars::{BarPanel, BarRow};
pub use figure::{color, Figure, Panel};
pub use labels::{count_label, si, Unit};
pub use quick::{bars, lines};
pub use xy::{Kind, Point, Series, XyPanel};
