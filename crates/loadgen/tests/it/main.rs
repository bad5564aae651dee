//! The load driver against stub servers on loopback: counting, versions, regressions, pacing,
//! CSV, and bounded failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// How the stub answers request number `n` for aggregate `id`.
type Answer = fn(u64, u64) -> (StatusCode, Value);

async fn stub(answer: Answer) -> (String, Arc<AtomicU64>) {
    let served = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/aggregate/{id}",
            get(|State((count, answer)): State<(Arc<AtomicU64>, Answer)>, Path(id): Path<u64>| async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answer(n, id);
                (status, Json(body))
            }),
        )
        .with_state((served.clone(), answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), served)
}

fn config(url: &str, duration_ms: u64) -> loadgen::LoadConfig {
    loadgen::LoadConfig {
        url: url.to_owned(),
        concurrency: 4,
        duration: Duration::from_millis(duration_ms),
        rate: None,
        aggregates: 150,
        ids: None,
        family: None,
        zipf: 1.1,
        seed: 7,
        csv_path: None,
    }
}

#[tokio::test]
async fn counts_statuses_versions_and_writes_the_csv() {
    // Ids above 100 are unknown; the first 300 answers come from v3, the rest from v4.
    let (url, served) = stub(|n, id| {
        if id > 100 {
            (StatusCode::NOT_FOUND, json!({ "error": "unknown" }))
        } else {
            (StatusCode::OK, json!({ "aggregate_id": id, "projection_version": if n < 300 { "v3" } else { "v4" } }))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sub/load.csv");
    let mut c = config(&url, 1_500);
    c.csv_path = Some(csv.clone());
    let report = loadgen::run(&c).await.unwrap();
    assert_eq!(report.requests, served.load(Ordering::SeqCst), "every request answered is counted once");
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.not_found > 0, "zipf over 150 ids reaches past 100: {report:?}");
    assert_eq!(report.ok + report.not_found, report.requests);
    assert!(report.versions_served["v3"] > 0 && report.versions_served["v4"] > 0, "{report:?}");
    assert_eq!(report.version_regressions, 0);
    assert!(report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms, "{report:?}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "second,ok,failed,p50_ms,p99_ms,versions,served");
    assert_eq!(lines.len() - 1, report.seconds.len());
    assert!(report.seconds.len() >= 2, "{text}");
    assert_eq!(report.seconds.iter().map(|s| s.ok).sum::<u64>(), report.ok + report.not_found);
    for (version, total) in &report.versions_served {
        let per_second: u64 = report.seconds.iter().filter_map(|s| s.served.get(version)).sum();
        assert_eq!(per_second, *total, "the seconds' reads of {version} add up to its total");
    }
    assert!(text.contains("v3="), "the served column counts each version: {text}");
    let line: Value = serde_json::from_str(&report.to_json_line()).unwrap();
    assert_eq!(line["requests"], report.requests);
    assert!(line.get("seconds").is_none(), "the summary line leaves out the per-second rows");
}

#[tokio::test]
async fn failures_and_version_regressions_are_counted() {
    // v4 then back to v3, with every tenth answer a 503.
    let (url, _) = stub(|n, _| {
        if n % 10 == 9 {
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "down" }))
        } else {
            (StatusCode::OK, json!({ "projection_version": if (100..200).contains(&n) { "v4" } else { "v3" } }))
        }
    })
    .await;
    let report = loadgen::run(&config(&url, 800)).await.unwrap();
    assert!(report.failed > 0);
    assert!(report.failures.iter().any(|f| f.contains("503")), "{:?}", report.failures);
    assert!(report.version_regressions > 0, "{report:?}");
}

#[tokio::test]
async fn a_rate_paces_the_requests() {
    let (url, _) = stub(|_, _| (StatusCode::OK, json!({ "projection_version": "v3" }))).await;
    let mut c = config(&url, 1_000);
    c.rate = Some(200.0);
    let report = loadgen::run(&c).await.unwrap();
    assert!((150..=230).contains(&report.requests), "about 200 requests in 1 s at 200/s: {}", report.requests);
}

#[tokio::test]
async fn a_dead_target_fails_every_request_and_still_stops_on_time() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let report = loadgen::run(&config(&format!("http://127.0.0.1:{port}"), 500)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.requests > 0 && report.failed == report.requests, "{report:?}");
}

#[tokio::test]
async fn refuses_remote_targets_and_bad_settings() {
    assert!(matches!(loadgen::run(&config("http://192.0.2.1:80", 100)).await, Err(loadgen::Error::NotLoopback(_))));
    let mut c = config("http://127.0.0.1:1", 100);
    c.concurrency = 0;
    assert!(matches!(loadgen::run(&c).await, Err(loadgen::Error::Config(_))));
    let mut c = config("http://127.0.0.1:1", 100);
    c.rate = Some(0.0);
    assert!(matches!(loadgen::run(&c).await, Err(loadgen::Error::Config(_))));
}
