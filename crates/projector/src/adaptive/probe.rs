//! The two sources of live read latency ([`MetricsProbe`]: the API's own histogram;
//! [`HttpProbe`]: timed requests of the controller's own) behind one trait, and the p99 the
//! controller takes of their samples.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tracing::debug;

use super::buckets::Buckets;
use crate::error::Error;
use crate::Result;

/// Probe requests per second (one in flight at a time).
pub const PROBES_PER_SECOND: f64 = 50.0;
/// A probe that takes longer than this counts as one sample of this latency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A source of live read-path latency samples.
pub trait Probe: Send {
    /// Latency samples taken over about `window` (empty when nothing answered).
    fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>>;
}

/// The 99th percentile (nearest rank) of `samples`, if any.
pub fn p99(samples: &[Duration]) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((samples.len() as f64) * 0.99).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The HTTP client of both latency sources: a request slower than [`PROBE_TIMEOUT`] gives up.
fn probe_client() -> Result<reqwest::Client> {
    reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().map_err(|e| Error::Probe(format!("http client: {e}")))
}

/// Reads the live p99 from the API's `/metrics`: each window is the difference of two scrapes.
#[derive(Debug)]
pub struct MetricsProbe {
    http: reqwest::Client,
    url: String,
    last: Option<Buckets>,
}

impl MetricsProbe {
    /// A reader of the metrics of the API at `api_url`.
    pub fn new(api_url: &str) -> Result<MetricsProbe> {
        let http = probe_client()?;
        Ok(MetricsProbe { http, url: format!("{}/metrics", api_url.trim_end_matches('/')), last: None })
    }

    async fn scrape(&self) -> Option<Buckets> {
        let resp = self.http.get(&self.url).send().await.ok()?;
        if !resp.status().is_success() {
            debug!(status = %resp.status(), url = %self.url, "metrics scrape answered with an error");
            return None;
        }
        Some(Buckets::parse(&resp.text().await.ok()?))
    }
}

impl Probe for MetricsProbe {
    fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>> {
        Box::pin(async move {
            let start = match self.last.take() {
                Some(b) => Some(b),
                None => self.scrape().await,
            };
            tokio::time::sleep(window).await;
            let end = self.scrape().await;
            let samples = match (&start, &end) {
                (Some(a), Some(b)) => b.samples_since(a),
                _ => Vec::new(),
            };
            self.last = end;
            samples
        })
    }
}

/// Probes the live API over HTTP, measured client-side: sequential GETs of
/// `{api_url}/aggregate/{id}` at [`PROBES_PER_SECOND`], ids cycling through `1..=aggregates`.
#[derive(Debug)]
pub struct HttpProbe {
    http: reqwest::Client,
    base: String,
    aggregates: u64,
    next: u64,
}

impl HttpProbe {
    /// A probe of the API at `api_url`.
    pub fn new(api_url: &str, aggregates: u64) -> Result<HttpProbe> {
        let http = probe_client()?;
        Ok(HttpProbe { http, base: api_url.trim_end_matches('/').to_owned(), aggregates: aggregates.max(1), next: 0 })
    }

    async fn one(&mut self) -> Option<Duration> {
        self.next = self.next % self.aggregates + 1;
        let t0 = Instant::now();
        let outcome = self.http.get(format!("{}/aggregate/{}", self.base, self.next)).send().await;
        match outcome {
            // A 404 is an answer of the read path (an id past the read model) like any other.
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 404 => {
                let _ = resp.bytes().await;
                Some(t0.elapsed())
            }
            Ok(resp) => {
                debug!(status = %resp.status(), "probe answered with an error");
                Some(t0.elapsed())
            }
            // A timed-out read is the slowest sample there is; a refused one says nothing about
            // latency.
            Err(e) if e.is_timeout() => Some(t0.elapsed()),
            Err(e) => {
                debug!(error = %e, "probe failed");
                None
            }
        }
    }
}

impl Probe for HttpProbe {
    fn sample(&mut self, window: Duration) -> BoxFuture<'_, Vec<Duration>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + window;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / PROBES_PER_SECOND));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut samples = Vec::new();
            loop {
                tick.tick().await;
                if tokio::time::Instant::now() >= deadline {
                    return samples;
                }
                samples.extend(self.one().await);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::aimd::tests::ms;

    #[test]
    fn p99_is_the_nearest_rank() {
        assert_eq!(p99(&[]), None);
        assert_eq!(p99(&ms(&[7])), Some(Duration::from_millis(7)));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(p99(&ms(&hundred)), Some(Duration::from_millis(99)));
        let many: Vec<u64> = (1..=200).rev().collect();
        assert_eq!(p99(&ms(&many)), Some(Duration::from_millis(198)));
    }
}
