//! Axes: linear or logarithmic, their range and ticks chosen from the data and the room
//! there is, tick labels in the axis's [`Unit`].

use super::labels::Unit;
use super::text::width;

/// How values map to distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Equal distance per decade, for values that span decades (batch sizes, log sizes,
    /// latencies of 0.2 to 50 ms).
    Log,
}

/// An axis: its title, unit and scale, and optionally a fixed range.
#[derive(Debug, Clone)]
pub struct Axis {
    pub title: String,
    pub unit: Unit,
    pub scale: Scale,
    /// The lowest value shown; by default from the data (and 0 on a linear axis of values that
    /// are not negative).
    pub min: Option<f64>,
    /// The highest value shown; by default from the data.
    pub max: Option<f64>,
    /// Only whole-number ticks (counts).
    pub integer: bool,
}

impl Axis {
    /// A linear axis from zero.
    pub fn linear(title: &str, unit: Unit) -> Axis {
        Axis { title: title.to_owned(), unit, scale: Scale::Linear, min: None, max: None, integer: false }
    }

    /// A linear axis of whole numbers from zero (events, requests, records).
    pub fn counts(title: &str) -> Axis {
        Axis { integer: true, ..Axis::linear(title, Unit::Count) }
    }

    /// A logarithmic axis.
    pub fn log(title: &str, unit: Unit) -> Axis {
        Axis { scale: Scale::Log, ..Axis::linear(title, unit) }
    }

    /// The same axis with a fixed range.
    pub fn range(self, min: f64, max: f64) -> Axis {
        Axis { min: Some(min), max: Some(max), ..self }
    }

    /// The range and ticks for data in `lo..=hi`, with at most `max_ticks` ticks.
    pub fn ticks(&self, lo: f64, hi: f64, max_ticks: usize) -> Ticks {
        let max_ticks = max_ticks.max(2);
        match self.scale {
            Scale::Linear => self.linear_ticks(lo, hi, max_ticks),
            Scale::Log => self.log_ticks(lo, hi, max_ticks),
        }
    }

    /// The range and ticks for data in `lo..=hi` along `from..to` pixels of a horizontal axis:
    /// as many ticks as fit with their labels (`size` pixels high) 10 pixels apart and within
    /// `0..canvas_width`; at worst the two ends alone.
    pub fn fitted_ticks(&self, lo: f64, hi: f64, (from, to): (f64, f64), size: f64, canvas_width: f64) -> Ticks {
        let mut last = None;
        for n in (2..=12).rev() {
            let t = self.ticks(lo, hi, n);
            let spans: Vec<(f64, f64)> = t
                .major
                .iter()
                .map(|v| {
                    let (x, w) = (t.map(*v, from, to), width(&self.unit.format(*v), size));
                    (x - w / 2.0, x + w / 2.0)
                })
                .collect();
            let apart = spans.windows(2).all(|w| w[0].1 + 10.0 <= w[1].0);
            if apart && spans.iter().all(|s| s.0 >= 0.0 && s.1 <= canvas_width) {
                return t;
            }
            last = Some(t);
        }
        let mut t = last.expect("at least one try");
        if t.major.len() > 2 {
            t.major = vec![t.major[0], t.major[t.major.len() - 1]];
        }
        t
    }

    fn linear_ticks(&self, lo: f64, hi: f64, max_ticks: usize) -> Ticks {
        let lo = self.min.unwrap_or(if lo >= 0.0 { 0.0 } else { lo });
        let hi = self.max.unwrap_or(hi).max(lo);
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        let raw = span / (max_ticks - 1) as f64;
        let magnitude = 10f64.powf(raw.log10().floor());
        let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw * 0.999).unwrap_or(raw);
        if self.integer {
            step = step.max(1.0).round();
        }
        let first = if self.min.is_some() { lo } else { (lo / step).floor() * step };
        let mut last = if self.max.is_some() { hi } else { (hi / step).ceil() * step };
        if last <= first {
            last = first + step;
        }
        let mut major = Vec::new();
        let mut k = (first / step).ceil();
        while k * step <= last + step * 1e-9 {
            // Clean up the float noise of k * step (0.30000000000000004).
            let v = (k * step / magnitude).round() * magnitude;
            major.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
            k += 1.0;
        }
        Ticks { lo: first, hi: last, scale: Scale::Linear, major }
    }

    fn log_ticks(&self, lo: f64, hi: f64, max_ticks: usize) -> Ticks {
        let lo = self.min.unwrap_or(lo).max(f64::MIN_POSITIVE);
        let hi = self.max.unwrap_or(hi).max(lo);
        let first = if self.min.is_some() { lo } else { round_125(lo, false) };
        let mut last = if self.max.is_some() { hi } else { round_125(hi, true) };
        if last <= first {
            last = first * 10.0;
        }
        let (d0, d1) = (first.log10().floor() as i32, last.log10().ceil() as i32);
        let decades = (d1 - d0).max(1) as usize;
        let every = decades.div_ceil(max_ticks - 1).max(1);
        let multiples: &[f64] = if decades * 3 <= max_ticks {
            &[1.0, 2.0, 5.0]
        } else if decades * 2 <= max_ticks {
            &[1.0, 3.0]
        } else {
            &[1.0]
        };
        let mut major = Vec::new();
        for d in (d0..=d1).filter(|d| ((d - d0) as usize).is_multiple_of(every)) {
            for m in multiples {
                let v = m * 10f64.powi(d);
                if v >= first * (1.0 - 1e-9) && v <= last * (1.0 + 1e-9) {
                    major.push(v);
                }
            }
        }
        Ticks { lo: first, hi: last, scale: Scale::Log, major }
    }
}

/// `v` rounded down (or `up`) to 1, 2 or 5 times a power of ten: the ends of a log axis, so
/// that it spans its data and not whole empty decades.
fn round_125(v: f64, up: bool) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    let m = v / decade;
    let steps = [1.0, 2.0, 5.0, 10.0];
    let pick = if up {
        steps.iter().find(|s| **s >= m * (1.0 - 1e-9)).copied().unwrap_or(10.0)
    } else {
        steps.iter().rev().find(|s| **s <= m * (1.0 + 1e-9)).copied().unwrap_or(1.0)
    };
    pick * decade
}

/// An axis laid out: its range, and the values that get a tick and a label.
#[derive(Debug, Clone)]
pub struct Ticks {
    pub lo: f64,
    pub hi: f64,
    pub scale: Scale,
    pub major: Vec<f64>,
}

impl Ticks {
    /// Where `v` falls between `from` (at `lo`) and `to` (at `hi`), in pixels.
    pub fn map(&self, v: f64, from: f64, to: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => (v.max(f64::MIN_POSITIVE).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        };
        from + t * (to - from)
    }

    /// Whether `v` can be drawn (a log axis has no place for zero or below).
    pub fn can_show(&self, v: f64) -> bool {
        v.is_finite() && (self.scale == Scale::Linear || v > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_cover_the_data() {
        let t = Axis::linear("", Unit::Count).ticks(0.0, 246_359.0, 6);
        assert_eq!(t.major, vec![0.0, 50_000.0, 100_000.0, 150_000.0, 200_000.0, 250_000.0]);
        assert_eq!((t.lo, t.hi), (0.0, 250_000.0));
        let t = Axis::linear("", Unit::Millis).ticks(0.0, 3.3, 8);
        assert_eq!(t.major, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
    }

    #[test]
    fn count_axes_have_whole_ticks() {
        let t = Axis::counts("").ticks(0.0, 3.0, 10);
        assert!(t.major.iter().all(|v| v.fract() == 0.0), "{:?}", t.major);
    }

    #[test]
    fn log_ticks_are_decades_and_thin_out_when_room_is_short() {
        let t = Axis::log("", Unit::Count).ticks(1.0, 250_000.0, 10);
        assert_eq!(t.major, vec![1.0, 10.0, 100.0, 1e3, 1e4, 1e5]);
        assert_eq!((t.lo, t.hi), (1.0, 500_000.0), "the ends at 1, 2 or 5 times a power of ten");
        let t = Axis::log("", Unit::Count).ticks(1.0, 250_000.0, 4);
        assert_eq!(t.major, vec![1.0, 100.0, 1e4]);
        let t = Axis::log("", Unit::Millis).ticks(0.19, 49.3, 12);
        assert_eq!(t.major, vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert!((t.map(1.0, 0.0, 300.0) - 300.0 / 2.7).abs() < 1.0);
    }
}
