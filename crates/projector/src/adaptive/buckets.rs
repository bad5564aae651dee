//! The live read path's latency histogram, read out of the API's Prometheus exposition
//! (`GET /metrics`) and turned into latency samples between two scrapes.
//!
//! The text format is parsed by `prom_text_format_parser`, which reads label values as the
//! format defines them (quoted, with escapes): the live route's label, `/aggregate/{id}`, holds
//! braces, which a parser that cuts the label set at the first `}` (`prometheus-parse`) drops.

use std::time::Duration;

use prom_text_format_parser::{Metric, Sample, Type, ValueType};
use tracing::debug;

/// The API's request-latency histogram (`api::telemetry::REQUEST_SECONDS`, a test in the api
/// crate keeps the two equal) and the route of the live point read.
pub const LIVE_LATENCY_METRIC: &str = "reproject_api_request_duration_seconds";
const LIVE_ROUTE: &str = "/aggregate/{id}";
/// The answers of the read path: a 404 is an id past the read model, read like any other.
const READ_STATUSES: [&str; 2] = ["200", "404"];
/// At most this many samples stand for one window's histogram.
pub(super) const MAX_WINDOW_SAMPLES: u64 = 20_000;

/// Cumulative counts of the live route's latency buckets: `(upper bound in seconds, count)`,
/// ascending, summed over the read path's answers (200 and 404).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, u64)>);

impl Buckets {
    /// Reads the live route's buckets out of a Prometheus text exposition.
    pub fn parse(exposition: &str) -> Buckets {
        let family = family_lines(exposition);
        if family.is_empty() {
            return Buckets::default();
        }
        let (metrics, error) = prom_text_format_parser::parse_scrape(&family);
        if let Some(error) = error {
            debug!(error = ?error, "lines of the live latency histogram not understood");
        }
        let mut sums: Vec<(f64, u64)> = Vec::new();
        for (bound, count) in
            metrics.iter().filter(|m| is_live_latency(m)).flat_map(|m| &m.samples).filter_map(live_bucket)
        {
            match sums.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, c)) => *c += count,
                None => sums.push((bound, count)),
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(sums)
    }

    /// The observations between `earlier` and `self` as latency samples: each bucket's new
    /// observations spread evenly over the bucket (as `histogram_quantile` interpolates), those
    /// past the last bound at that bound; scaled down to at most `MAX_WINDOW_SAMPLES`.
    pub fn samples_since(&self, earlier: &Buckets) -> Vec<Duration> {
        let count_at = |b: &Buckets, bound: f64| b.0.iter().find(|(x, _)| *x == bound).map_or(0, |(_, c)| *c);
        let mut deltas = Vec::with_capacity(self.0.len());
        let mut below = (0.0, 0u64);
        for &(bound, cumulative) in &self.0 {
            let new = cumulative.saturating_sub(count_at(earlier, bound));
            deltas.push((below.0, bound, new.saturating_sub(below.1)));
            below = (if bound.is_finite() { bound } else { below.0 }, new);
        }
        let total: u64 = deltas.iter().map(|d| d.2).sum();
        let keep = |n: u64| if total > MAX_WINDOW_SAMPLES { (n * MAX_WINDOW_SAMPLES).div_ceil(total) } else { n };
        let mut samples = Vec::new();
        for (lo, hi, n) in deltas {
            let n = keep(n);
            for i in 0..n {
                let seconds = if hi.is_finite() { lo + (hi - lo) * (i + 1) as f64 / n as f64 } else { lo };
                samples.push(Duration::from_secs_f64(seconds));
            }
        }
        samples
    }
}

/// The lines of the live latency family (its samples, and the `# TYPE` and `# HELP` comments
/// naming it), the rest of the exposition left out. The parser refuses a whole text for one line
/// it does not understand, so a line of another family must not be able to hide this one.
fn family_lines(exposition: &str) -> String {
    let of_family = |line: &str| {
        let named = line.strip_prefix("# TYPE ").or_else(|| line.strip_prefix("# HELP ")).unwrap_or(line);
        named.strip_prefix(LIVE_LATENCY_METRIC).is_some_and(|rest| {
            let rest = ["_bucket", "_sum", "_count"].iter().find_map(|s| rest.strip_prefix(s)).unwrap_or(rest);
            rest.starts_with(['{', ' ', '\t'])
        })
    };
    exposition.lines().filter(|l| of_family(l)).flat_map(|l| [l, "\n"]).collect()
}

/// The live latency histogram: declared as one (`# TYPE ... histogram`), or its `_bucket`
/// samples with no declaration, which the format reads as untyped (Prometheus's
/// `histogram_quantile` reads them all the same).
fn is_live_latency(metric: &Metric) -> bool {
    match metric.kind {
        Type::Histogram => metric.name == LIVE_LATENCY_METRIC,
        Type::Untyped => metric.name.strip_prefix(LIVE_LATENCY_METRIC) == Some("_bucket"),
        _ => false,
    }
}

/// One bucket of the live route, answered by the read path: `(upper bound, cumulative count)`.
fn live_bucket(sample: &Sample) -> Option<(f64, u64)> {
    if sample.value.value_type != ValueType::Sample {
        return None;
    }
    let label = |key: &str| sample.labels.iter().find(|l| l.key == key).map(|l| l.value.as_str());
    if label("route") != Some(LIVE_ROUTE) || !label("status").is_some_and(|s| READ_STATUSES.contains(&s)) {
        return None;
    }
    let bound = label("le")?.parse::<f64>().ok().filter(|b| !b.is_nan())?;
    let count = sample.value.value.parse::<f64>().ok().filter(|c| c.is_finite() && *c >= 0.0)?;
    Some((bound, count as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::p99;

    /// An exposition as the API's exporter writes it: two statuses of the live route, and a
    /// route the controller must ignore.
    fn exposition(ok: [u64; 4], not_found: [u64; 4], other: [u64; 4]) -> String {
        let mut text = String::from("# TYPE reproject_api_request_duration_seconds histogram\n");
        for (route, status, counts) in
            [("/aggregate/{id}", "200", ok), ("/aggregate/{id}", "404", not_found), ("/projections", "200", other)]
        {
            for (le, c) in ["0.0005", "0.001", "0.002", "+Inf"].iter().zip(counts) {
                text.push_str(&format!(
                    "reproject_api_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"{le}\"}} {c}\n"
                ));
            }
            text.push_str(&format!(
                "reproject_api_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} {}\n",
                counts[3]
            ));
        }
        text
    }

    #[test]
    fn the_live_routes_buckets_are_summed_over_its_answers() {
        let b = Buckets::parse(&exposition([10, 20, 30, 31], [1, 2, 2, 2], [500, 500, 500, 500]));
        assert_eq!(b.0, vec![(0.0005, 11), (0.001, 22), (0.002, 32), (f64::INFINITY, 33)]);
        assert_eq!(Buckets::parse("no metrics here\n"), Buckets::default());
        let undeclared = exposition([10, 20, 30, 31], [1, 2, 2, 2], [500, 500, 500, 500])
            .replace("# TYPE reproject_api_request_duration_seconds histogram\n", "");
        assert_eq!(Buckets::parse(&undeclared), b, "buckets without their # TYPE line");
    }

    #[test]
    fn a_line_of_another_family_the_parser_refuses_hides_nothing() {
        let mut text = String::from("# TYPE reproject_other gauge\nreproject_other{label=unquoted} 1\n");
        text.push_str(&exposition([10, 20, 30, 31], [0; 4], [0; 4]));
        text.push_str("reproject_api_request_duration_seconds_total_else 3\n");
        assert!(prom_text_format_parser::parse_scrape(&text).0.is_empty(), "the parser refuses the whole text");
        let b = Buckets::parse(&text);
        assert_eq!(b.0, vec![(0.0005, 10), (0.001, 20), (0.002, 30), (f64::INFINITY, 31)]);
    }

    #[test]
    fn the_exporters_own_exposition_is_read() {
        // A recorder built as `api::telemetry` builds its own: explicit buckets for every
        // histogram and others for one, the labels the latency middleware records (with the
        // served version, and without it when no version served the request), a description,
        // and other families around.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.002])
            .unwrap()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("reproject_projector_batch_events".to_owned()),
                &[1.0, 10.0],
            )
            .unwrap()
            .build_recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_histogram!(LIVE_LATENCY_METRIC, "request latency, \"quoted\" and {braced}");
            metrics::counter!("reproject_api_requests_total", "route" => LIVE_ROUTE, "status" => "200").increment(3);
            for (status, seconds) in [("200", 0.0004), ("200", 0.0015), ("503", 0.0004)] {
                metrics::histogram!(LIVE_LATENCY_METRIC, "route" => LIVE_ROUTE, "status" => status, "version" => "v3")
                    .record(seconds);
            }
            metrics::histogram!(LIVE_LATENCY_METRIC, "route" => LIVE_ROUTE, "status" => "404").record(0.0004);
            metrics::histogram!(LIVE_LATENCY_METRIC, "route" => "/projections", "status" => "200").record(0.0001);
            metrics::histogram!("reproject_projector_batch_events", "version" => "v4").record(5.0);
            metrics::gauge!("reproject_active_projection_info", "version" => "v3").set(1.0);
        });
        let text = recorder.handle().render();
        let b = Buckets::parse(&text);
        assert_eq!(b.0, vec![(0.0005, 2), (0.001, 2), (0.002, 3), (f64::INFINITY, 3)], "{text}");
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes_spread_over_its_buckets() {
        let before = Buckets::parse(&exposition([10, 20, 30, 30], [0; 4], [0; 4]));
        // 100 new reads: 98 under 0.5 ms, 1 in (1, 2] ms, 1 past the last bound.
        let after = Buckets::parse(&exposition([108, 118, 129, 130], [0; 4], [7; 4]));
        let samples = after.samples_since(&before);
        assert_eq!(samples.len(), 100);
        assert_eq!(samples.iter().filter(|d| **d <= Duration::from_micros(500)).count(), 98);
        assert_eq!(samples.iter().filter(|d| **d > Duration::from_millis(1)).count(), 2);
        // The 99th of 100 is the one in (1, 2] ms, at its upper end.
        assert_eq!(p99(&samples), Some(Duration::from_millis(2)));
        assert!(after.samples_since(&after).is_empty(), "no reads, no samples");
    }

    #[test]
    fn a_busy_window_is_scaled_down_keeping_its_shape() {
        let before = Buckets::parse(&exposition([0; 4], [0; 4], [0; 4]));
        let after = Buckets::parse(&exposition([990_000, 990_000, 1_000_000, 1_000_000], [0; 4], [0; 4]));
        let samples = after.samples_since(&before);
        assert!(samples.len() as u64 <= MAX_WINDOW_SAMPLES + 4, "{}", samples.len());
        let slow = samples.iter().filter(|d| **d > Duration::from_millis(1)).count() as f64;
        assert!((slow / samples.len() as f64 - 0.01).abs() < 0.001, "1% stays 1%: {slow}");
    }
}
