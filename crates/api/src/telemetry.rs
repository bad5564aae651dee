//! Prometheus metrics: the recorder (installed at most once per process), the latency
//! middleware, and the active-version gauge.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latency in seconds, by route template and status.
pub const REQUEST_SECONDS: &str = "reproject_api_request_duration_seconds";
/// Requests, by route template and status.
pub const REQUESTS: &str = "reproject_api_requests_total";
/// 1 for the version the API last served as active (label `version`), 0 for the others.
pub const ACTIVE_INFO: &str = "reproject_active_projection_info";
/// Events in the log after a version's positions (label `version`), as of the last
/// `GET /projections`.
pub const LAG_EVENTS: &str = "reproject_projection_lag_events";
/// Events held behind a version gap (label `version`), from `read.held_events`.
pub const HELD_EVENTS: &str = "reproject_held_events";
/// Dead-lettered events (label `version`), from `read.dead_letters`.
pub const DEAD_LETTERS: &str = "reproject_dead_letters";
/// Quarantined aggregates, whose rows are not served (label `version`).
pub const QUARANTINED: &str = "reproject_quarantined_aggregates";
/// The share of a version's build done, 0..=1 (label `version`; 1 once it is ready).
pub const BUILD_PROGRESS: &str = "reproject_build_progress_ratio";
/// Seconds until a building version should be ready, at its replay's measured rate (label
/// `version`; 0 once it is ready).
pub const BUILD_ETA: &str = "reproject_build_eta_seconds";
/// PostgreSQL: backends connected to this database (`pg_stat_database.numbackends`).
pub const PG_BACKENDS: &str = "reproject_pg_backends";
/// PostgreSQL: transactions committed in this database.
pub const PG_XACT_COMMIT: &str = "reproject_pg_xact_commit_total";
/// PostgreSQL: transactions rolled back in this database.
pub const PG_XACT_ROLLBACK: &str = "reproject_pg_xact_rollback_total";
/// PostgreSQL: blocks read from the OS (not found in shared buffers).
pub const PG_BLOCKS_READ: &str = "reproject_pg_blocks_read_total";
/// PostgreSQL: blocks found in shared buffers.
pub const PG_BLOCKS_HIT: &str = "reproject_pg_blocks_hit_total";
/// PostgreSQL: rows returned by scans.
pub const PG_TUPLES_RETURNED: &str = "reproject_pg_tuples_returned_total";
/// PostgreSQL: rows inserted.
pub const PG_TUPLES_INSERTED: &str = "reproject_pg_tuples_inserted_total";
/// PostgreSQL: deadlocks detected.
pub const PG_DEADLOCKS: &str = "reproject_pg_deadlocks_total";
/// PostgreSQL: the database's size on disk.
pub const PG_DATABASE_BYTES: &str = "reproject_pg_database_size_bytes";
/// PostgreSQL: age of the oldest open transaction in this database (0 when none): a long one
/// holds the tail's boundary back.
pub const PG_OLDEST_XACT_SECONDS: &str = "reproject_pg_oldest_transaction_age_seconds";

/// The projection version that served a request, attached to its response by the read
/// handlers, so that the latency histogram can be split by version.
#[derive(Debug, Clone)]
pub struct ServedVersion(pub String);

/// Explicit buckets: 100 µs to 5 s, dense where a point read's p99 lives (sub-millisecond to
/// 10 ms), so that the adaptive replay controller, which reads the p99 off these buckets, can tell
/// a 10% rise there.
const LATENCY_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0, 5.0,
];

/// The projectors' batch-size histogram (`projector::metric::BATCH_EVENTS`, named here because
/// this crate does not depend on the projectors), which counts events, not seconds.
const BATCH_EVENTS_METRIC: &str = "reproject_projector_batch_events";

/// Buckets of [`BATCH_EVENTS_METRIC`]: events per batch, 1 to 100k.
const BATCH_BUCKETS: [f64; 11] =
    [1.0, 10.0, 100.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0, 100_000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle; installs the global recorder on first use, so several
/// servers in one process (the tests) share it. If some other recorder was installed first,
/// this one stays detached and `/metrics` renders only what it sees (nothing).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(BATCH_EVENTS_METRIC.to_owned()), &BATCH_BUCKETS)
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
    let seconds = started.elapsed().as_secs_f64();
    match response.extensions().get::<ServedVersion>() {
        Some(ServedVersion(version)) => metrics::histogram!(
            REQUEST_SECONDS, "route" => route.clone(), "status" => status.clone(), "version" => version.clone()
        )
        .record(seconds),
        None => {
            metrics::histogram!(REQUEST_SECONDS, "route" => route.clone(), "status" => status.clone()).record(seconds)
        }
    }
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
