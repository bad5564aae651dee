//! Prometheus metrics: the recorder (installed at most once per process), the latency
//! middleware, and the active-version gauge.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Request latency in seconds, by route template and status.
pub const REQUEST_SECONDS: &str = "reproject_api_request_duration_seconds";
/// Requests, by route template and status.
pub const REQUESTS: &str = "reproject_api_requests_total";
/// 1 for the version the API last served as active (label `version`), 0 for the others.
pub const ACTIVE_INFO: &str = "reproject_active_projection_info";
/// Events in the log after a version's positions (label `version`), as of the last
/// `GET /projections`.
pub const LAG_EVENTS: &str = "reproject_projection_lag_events";

/// Explicit buckets: 100 µs to 5 s, dense where a point read's p99 lives (sub-millisecond to
/// 10 ms), so that the adaptive replay controller, which reads the p99 off these buckets, can tell
/// a 10% rise there.
const LATENCY_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle; installs the global recorder on first use, so several
/// servers in one process (the tests) share it. If some other recorder was installed first,
/// this one stays detached and `/metrics` renders only what it sees (nothing).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will not see the API's metrics");
        }
        handle
    })
}

/// Records latency and count of every request under its route template (not the raw path,
/// which would make one series per aggregate id).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_SECONDS, "route" => route.clone(), "status" => status.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(REQUESTS, "route" => route, "status" => status).increment(1);
    response
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn render() -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], handle().render())
}

/// The version last reported in [`ACTIVE_INFO`]. Only the gauge reads it: requests resolve
/// the active version in the database every time.
#[derive(Debug, Default)]
pub struct ActiveGauge {
    last: Mutex<Option<String>>,
}

impl ActiveGauge {
    /// Records that `version` was served as the active one (`None`: no version is active).
    /// Cheap when nothing changed, which is every request but the first after a cutover.
    pub fn observe(&self, version: Option<&str>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == version {
            return;
        }
        if let Some(old) = last.take() {
            metrics::gauge!(ACTIVE_INFO, "version" => old).set(0.0);
        }
        if let Some(new) = version {
            metrics::gauge!(ACTIVE_INFO, "version" => new.to_owned()).set(1.0);
        }
        *last = version.map(str::to_owned);
    }
}
