//! The load driver: `concurrency` workers reading `GET /aggregate/{id}` with Zipf-distributed
//! ids, recording every request's status and latency, a per-second log (optionally CSV) and a
//! summary. It is bounded (it stops issuing at `duration`, and each request has a timeout) and
//! it only targets loopback addresses.
//!
//! Each worker issues its requests one after another, so "a worker saw an older version after
//! a newer one" is a real regression in what one client observed across a cutover.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use reqwest::Url;
use serde::Serialize;

/// Errors of the load driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the load driver only targets loopback addresses, not {0:?}")]
    NotLoopback(String),
    #[error("invalid load configuration: {0}")]
    Config(String),
    #[error("cannot build the http client: {0}")]
    Client(reqwest::Error),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("a load worker panicked: {0}")]
    Worker(String),
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080` (loopback only).
    pub url: String,
    /// Workers, each with one request in flight at a time.
    pub concurrency: usize,
    /// How long to issue requests.
    pub duration: Duration,
    /// Total requests per second across workers; `None`: as fast as the API answers.
    pub rate: Option<f64>,
    /// Aggregate ids are drawn from `1..=aggregates` (ignored when `ids` is given).
    pub aggregates: u64,
    /// The ids to read, most popular first: the Zipf rank `r` reads `ids[r - 1]` (path
    /// segments as the API parses them: integers, uuids, texts). `None`: `1..=aggregates`.
    pub ids: Option<std::sync::Arc<Vec<String>>>,
    /// The read model to read (`?family=`); `None`: the API's default.
    pub family: Option<String>,
    /// The Zipf exponent of the ids (1.1 in the lab profile; 0 is uniform).
    pub zipf: f64,
    /// Seed of the id sequence (each worker derives its own stream from it).
    pub seed: u64,
    /// Where to write the per-second CSV, if anywhere.
    pub csv_path: Option<PathBuf>,
}

/// One second of the run (by request start time).
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub second: u64,
    /// 2xx and 404 answers.
    pub ok: u64,
    /// Everything else, transport errors included.
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The projection versions served in this second.
    pub versions: Vec<String>,
    /// 2xx answers per projection version in this second (a cutover's second has two).
    pub served: BTreeMap<String, u64>,
    /// The latencies of this second's requests, in microseconds: seconds are merged into the
    /// latency of a stretch of the run (`bench isolation` pools the seconds a replay ran).
    #[serde(skip)]
    pub latency_us: Histogram<u64>,
}

/// The run's summary.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 404 answers: expected (ids past the read model), so not failures.
    pub not_found: u64,
    /// Any other status, and transport errors (refused, reset, timed out).
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    /// 2xx answers per `projection_version`.
    pub versions_served: BTreeMap<String, u64>,
    /// Times a worker was served an older version after a newer one.
    pub version_regressions: u64,
    /// The first few failures, for the log.
    pub failures: Vec<String>,
    /// The per-second rows (every second of the run, empty ones included).
    #[serde(skip)]
    pub seconds: Vec<Second>,
}

impl LoadReport {
    /// The summary as one JSON line (without the per-second rows).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }

    /// Writes the per-second rows as CSV to `path`: `second,ok,failed,p50_ms,p99_ms,versions,served`,
    /// the versions of a second joined by `|`, and `served` the 2xx answers of each (`v3=120|v4=80`).
    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut out = csv::Writer::from_path(path)?;
        out.write_record(["second", "ok", "failed", "p50_ms", "p99_ms", "versions", "served"])?;
        for s in &self.seconds {
            out.write_record([
                s.second.to_string(),
                s.ok.to_string(),
                s.failed.to_string(),
                format!("{:.3}", s.p50_ms),
                format!("{:.3}", s.p99_ms),
                s.versions.join("|"),
                s.served.iter().map(|(v, n)| format!("{v}={n}")).collect::<Vec<_>>().join("|"),
            ])?;
        }
        out.flush()
    }
}

const MAX_FAILURES_KEPT: usize = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One second's counts of one worker (merged across workers at the end).
struct Bucket {
    ok: u64,
    failed: u64,
    hist: Histogram<u64>,
    /// 2xx answers per version.
    versions: BTreeMap<String, u64>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket { ok: 0, failed: 0, hist: new_hist(), versions: BTreeMap::new() }
    }

    fn merge(&mut self, other: Bucket) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.hist.add(&other.hist).expect("same histogram bounds");
        for (v, n) in other.versions {
            *self.versions.entry(v).or_default() += n;
        }
    }
}

/// Everything one worker recorded.
struct Tally {
    hist: Histogram<u64>,
    seconds: BTreeMap<u64, Bucket>,
    ok: u64,
    not_found: u64,
    failed: u64,
    versions: BTreeMap<String, u64>,
    regressions: u64,
    failures: Vec<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: new_hist(),
            seconds: BTreeMap::new(),
            ok: 0,
            not_found: 0,
            failed: 0,
            versions: BTreeMap::new(),
            regressions: 0,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, second: u64, message: String) {
        self.failed += 1;
        self.seconds.entry(second).or_insert_with(Bucket::new).failed += 1;
        if self.failures.len() < MAX_FAILURES_KEPT {
            self.failures.push(format!("at {second}s: {message}"));
        }
    }
}

/// The version number of `v12` (12); `None` for names that do not look like that.
fn version_number(v: &str) -> Option<u64> {
    v.strip_prefix('v')?.parse().ok()
}

/// Refuses anything but `http://` to a loopback address.
pub fn check_loopback(url: &str) -> Result<Url, Error> {
    let parsed = Url::parse(url).map_err(|e| Error::Config(format!("url {url:?}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(Error::Config(format!("url {url:?}: only http:// is supported")));
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        return Err(Error::NotLoopback(parsed.host_str().unwrap_or_default().to_owned()));
    }
    Ok(parsed)
}

fn validate(config: &LoadConfig) -> Result<(), Error> {
    if config.concurrency == 0 || config.concurrency > 10_000 {
        return Err(Error::Config(format!("concurrency must be 1..=10000, got {}", config.concurrency)));
    }
    if config.aggregates == 0 && config.ids.is_none() {
        return Err(Error::Config("aggregates must be at least 1".into()));
    }
    if config.ids.as_ref().is_some_and(|ids| ids.is_empty()) {
        return Err(Error::Config("no aggregate ids to read (the read model is empty?)".into()));
    }
    if !(config.zipf.is_finite() && config.zipf >= 0.0) {
        return Err(Error::Config(format!("zipf exponent must be a non-negative number, got {}", config.zipf)));
    }
    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::Config(format!("rate must be a positive number, got {rate}")));
        }
    }
    if config.duration.is_zero() {
        return Err(Error::Config("duration must be positive".into()));
    }
    Ok(())
}

/// One worker: requests until the deadline, optionally paced.
/// What a worker reads: `{base}/aggregate/{id}{query}`, the id drawn from `ids` (or the rank
/// itself).
#[derive(Clone)]
struct Target {
    base: String,
    ids: Option<std::sync::Arc<Vec<String>>>,
    query: String,
}

async fn worker(
    client: reqwest::Client,
    target: Target,
    zipf: Zipf<f64>,
    mut rng: rand::rngs::StdRng,
    started: Instant,
    deadline: Instant,
    pace: Option<(Duration, Duration)>,
) -> Tally {
    let mut tally = Tally::new();
    let mut newest: Option<u64> = None;
    let mut ticker = pace.map(|(first, every)| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::from_std(started + first), every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        let rank = zipf.sample(&mut rng) as u64;
        let id = match &target.ids {
            Some(ids) => ids[(rank as usize - 1).min(ids.len() - 1)].clone(),
            None => rank.to_string(),
        };
        let second = t0.duration_since(started).as_secs();
        let outcome = client.get(format!("{}/aggregate/{id}{}", target.base, target.query)).send().await;
        // The body is part of the answer: read it before stopping the clock.
        let outcome = match outcome {
            Ok(resp) => {
                let status = resp.status();
                resp.bytes().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        let micros = (t0.elapsed().as_micros() as u64).max(1);
        tally.hist.saturating_record(micros);
        let bucket = tally.seconds.entry(second).or_insert_with(Bucket::new);
        bucket.hist.saturating_record(micros);
        match outcome {
            Ok((status, body)) if status.is_success() => {
                let version = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("projection_version")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned());
                if let Some(n) = version_number(&version) {
                    if newest.is_some_and(|seen| n < seen) {
                        tally.regressions += 1;
                    }
                    newest = newest.max(Some(n));
                }
                bucket.ok += 1;
                *bucket.versions.entry(version.clone()).or_default() += 1;
                *tally.versions.entry(version).or_default() += 1;
                tally.ok += 1;
            }
            Ok((status, _)) if status == reqwest::StatusCode::NOT_FOUND => {
                bucket.ok += 1;
                tally.not_found += 1;
            }
            Ok((status, body)) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                tally.fail(second, format!("GET /aggregate/{id}: {status}: {text}"));
            }
            Err(e) => tally.fail(second, format!("GET /aggregate/{id}: {e}")),
        }
    }
    tally
}

/// Runs the load and returns its report, writing the per-second CSV when asked.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, Error> {
    validate(config)?;
    let base = check_loopback(&config.url)?;
    let base = base.as_str().trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(Error::Client)?;
    let n = config.ids.as_ref().map_or(config.aggregates, |ids| ids.len() as u64);
    let zipf = Zipf::new(n, config.zipf).map_err(|e| Error::Config(format!("zipf: {e}")))?;
    let query = config.family.as_ref().map_or(String::new(), |f| format!("?family={f}"));
    let started = Instant::now();
    let deadline = started + config.duration;
    // With a rate, each worker ticks at concurrency/rate and the workers' phases are spread
    // evenly over one tick, so the load is smooth rather than C requests at once.
    let every = config.rate.map(|r| Duration::from_secs_f64(config.concurrency as f64 / r));
    let mut tasks = Vec::with_capacity(config.concurrency);
    for w in 0..config.concurrency {
        let rng = rand::rngs::StdRng::seed_from_u64(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w as u64);
        let pace = every.map(|e| (e.mul_f64(w as f64 / config.concurrency as f64), e));
        let target = Target { base: base.clone(), ids: config.ids.clone(), query: query.clone() };
        tasks.push(tokio::spawn(worker(client.clone(), target, zipf, rng, started, deadline, pace)));
    }
    let mut total = Tally::new();
    for t in tasks {
        let tally = t.await.map_err(|e| Error::Worker(e.to_string()))?;
        total.hist.add(&tally.hist).expect("same histogram bounds");
        for (s, bucket) in tally.seconds {
            total.seconds.entry(s).or_insert_with(Bucket::new).merge(bucket);
        }
        total.ok += tally.ok;
        total.not_found += tally.not_found;
        total.failed += tally.failed;
        total.regressions += tally.regressions;
        for (v, n) in tally.versions {
            *total.versions.entry(v).or_default() += n;
        }
        total.failures.extend(tally.failures);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    total.failures.truncate(MAX_FAILURES_KEPT);
    let ms = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e3 };
    // Every second of the run, so that a stall shows as a row of zeros rather than a gap.
    let last = total.seconds.keys().next_back().copied().unwrap_or(0).max(config.duration.as_secs().saturating_sub(1));
    let seconds: Vec<Second> = (0..=last)
        .map(|s| match total.seconds.get(&s) {
            Some(b) => Second {
                second: s,
                ok: b.ok,
                failed: b.failed,
                p50_ms: ms(&b.hist, 0.5),
                p99_ms: ms(&b.hist, 0.99),
                versions: b.versions.keys().cloned().collect(),
                served: b.versions.clone(),
                latency_us: b.hist.clone(),
            },
            None => Second {
                second: s,
                ok: 0,
                failed: 0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                versions: Vec::new(),
                served: BTreeMap::new(),
                latency_us: new_hist(),
            },
        })
        .collect();
    let requests = total.ok + total.not_found + total.failed;
    let report = LoadReport {
        requests,
        ok: total.ok,
        not_found: total.not_found,
        failed: total.failed,
        p50_ms: ms(&total.hist, 0.5),
        p99_ms: ms(&total.hist, 0.99),
        max_ms: total.hist.max() as f64 / 1e3,
        elapsed_s,
        requests_per_s: requests as f64 / elapsed_s,
        versions_served: total.versions,
        version_regressions: total.regressions,
        failures: total.failures,
        seconds,
    };
    if let Some(path) = &config.csv_path {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
        }
        report.write_csv(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    }
    tracing::info!(
        requests,
        failed = report.failed,
        p99_ms = report.p99_ms,
        regressions = report.version_regressions,
        "load finished"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in ["http://127.0.0.1:8080", "http://localhost:1/", "http://[::1]:9/", "http://127.3.4.5"] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "https://127.0.0.1",
            "127.0.0.1:80",
            "http://127.0.0.1.evil.com/",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_numbers() {
        assert_eq!(version_number("v3"), Some(3));
        assert_eq!(version_number("v12"), Some(12));
        assert_eq!(version_number("unknown"), None);
    }
}
