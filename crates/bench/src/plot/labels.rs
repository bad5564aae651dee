//! Numbers as a reader wants them on a plot: three significant digits and an SI prefix
//! (`200k`, `1.5M`, `100M`), a unit where the axis has one (`5 s`, `2.5 ms`, `10%`), never
//! `200000.0`.

/// What an axis's values are, which decides how its tick labels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Counts and rates: `800`, `12.5k`, `1M`.
    Count,
    /// Seconds: `0 s`, `30 s`.
    Seconds,
    /// Milliseconds: `0.5 ms`, `20 ms`.
    Millis,
    /// Percentages of something: `1%`, `25%`.
    Percent,
    /// A ratio of two measurements: `1×`, `1.1×`.
    Ratio,
    /// Bytes: `500 MB`, `4.3 GB`.
    Bytes,
}

impl Unit {
    /// `v` as a label in this unit.
    pub fn format(self, v: f64) -> String {
        let n = si(v);
        match self {
            Unit::Count => n,
            Unit::Seconds => format!("{n} s"),
            Unit::Millis => format!("{n} ms"),
            Unit::Percent => format!("{n}%"),
            Unit::Ratio => format!("{n}×"),
            Unit::Bytes => format!("{n}B").replace("kB", " kB").replace("MB", " MB").replace("GB", " GB"),
        }
    }
}

/// `v` rounded to three significant digits, with `k`, `M` or `G` past a thousand: `432`,
/// `29.5k`, `246k`, `1M`, `0.25`; never a trailing `.0`.
pub fn si(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() { "–".into() } else { "0".into() };
    }
    // Round first, so that 999,600 becomes 1M rather than 1000k.
    let magnitude = v.abs().log10().floor() as i32;
    let step = 10f64.powi(magnitude - 2);
    let rounded = (v / step).round() * step;
    let (div, prefix) = match rounded.abs() {
        a if a >= 1e9 => (1e9, "G"),
        a if a >= 1e6 => (1e6, "M"),
        a if a >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let x = rounded / div;
    let decimals = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{x:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{prefix}")
}

/// An axis label for a count or a rate (the name the benches used before [`si`]).
pub fn count_label(v: f64) -> String {
    si(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_labels_have_three_significant_digits_and_a_prefix() {
        for (v, want) in [
            (0.0, "0"),
            (0.25, "0.25"),
            (1.0, "1"),
            (5.0, "5"),
            (432.0, "432"),
            (1_000.0, "1k"),
            (12_500.0, "12.5k"),
            (29_514.0, "29.5k"),
            (200_000.0, "200k"),
            (246_359.0, "246k"),
            (999_600.0, "1M"),
            (1_500_000.0, "1.5M"),
            (100_000_000.0, "100M"),
            (1e9, "1G"),
            (-2_000.0, "-2k"),
        ] {
            assert_eq!(si(v), want, "{v}");
        }
    }

    #[test]
    fn units_follow_the_number() {
        assert_eq!(Unit::Seconds.format(5.0), "5 s");
        assert_eq!(Unit::Millis.format(2.5), "2.5 ms");
        assert_eq!(Unit::Percent.format(25.0), "25%");
        assert_eq!(Unit::Ratio.format(1.1), "1.1×");
        assert_eq!(Unit::Bytes.format(519e6), "519 MB");
    }
}
