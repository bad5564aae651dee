//! Current reads, and every way a request can be wrong or unanswerable.

use lab::bank::{V3, V4};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn serves_the_active_versions_row_exactly() {
    let f = fixture(12, true).await;
    let v3 = expected(&f.client, &V3, f.n).await;
    for id in 1..=f.n {
        let (status, body) = f.get(&format!("/aggregate/{id}")).await;
        assert_eq!(status, 200, "{body}");
        assert_row(&body, &V3, &v3[&id], &format!("aggregate {id}"));
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors_never_a_500() {
    let f = fixture(5, true).await;
    for (path, want) in [
        ("/aggregate/abc", 400),
        ("/aggregate/1.5", 400),
        ("/aggregate/-4", 404),
        ("/aggregate/0", 404),
        ("/aggregate/5a6fd385-7a2b-4c1e-9d3f-0123456789ab", 400),
        ("/aggregate/99999999999999999999999", 400),
        ("/aggregate/999999", 404),
        ("/aggregate/1/as-of", 400),
        ("/aggregate/1/as-of?ts=yesterday", 400),
        ("/aggregate/1/as-of?ts=2025-13-01T00:00:00Z", 400),
        ("/aggregate/1/as-of?offset=minus", 400),
        ("/aggregate/1/as-of?offset=-1", 400),
        ("/aggregate/1/as-of?offset=5&version=v9", 400),
        ("/aggregate/1/as-of?offset=5&when=now", 400),
        ("/aggregate/x/as-of?offset=5", 400),
        ("/aggregate/999999/as-of?offset=500", 404),
        ("/aggregate/1/as-of?offset=0", 404),
        ("/aggregate/1/as-of?ts=2000-01-01T00:00:00Z", 404),
        ("/no/such/route", 404),
        ("/aggregate", 404),
    ] {
        let (status, body) = f.get(path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{path}: a JSON error expected, got {body}");
    }
    for (body, want) in [
        ("not json", 400),
        ("", 400),
        ("[]", 400),
        (r#"{"versio":"v4"}"#, 400),
        (r#"{"version":4}"#, 400),
        (r#"{"version":""}"#, 400),
        (r#"{"version":"v4","force":true}"#, 400),
        (r#"{"version":"v9"}"#, 404),
    ] {
        let (status, reply) = f.post("/cutover", body).await;
        assert_eq!(status, want, "{body:?}: {reply}");
        assert!(reply["error"].is_string(), "{body:?}: {reply}");
    }
    let (status, reply) = f.get("/cutover").await;
    assert_eq!(status, 405, "{reply}");
    assert!(reply["error"].is_string(), "{reply}");
    // A cutover body without a JSON content type is a bad request too, not a 415 without a body.
    let resp = f
        .http
        .post(format!("{}/cutover", f.base))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .body(r#"{"version":"v4"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    // None of that changed anything.
    let (status, body) = f.get("/aggregate/3").await;
    assert_eq!((status, body["projection_version"].as_str()), (200, Some("v3")), "{body}");
}

#[tokio::test]
async fn no_active_version_is_a_503_and_time_travel_still_works() {
    let f = fixture(3, false).await;
    f.client.execute("UPDATE read.projections SET state = 'retired'", &[]).await.unwrap();
    let (status, body) = f.get("/aggregate/1").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no projection version of \"accounts\" is active"), "{body}");
    // Time travel needs only the log; without an active version it folds with the newest fold.
    let (status, body) = f.get("/aggregate/1/as-of?offset=1000000").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["projection_version"], "v4", "{body}");
}

#[tokio::test]
async fn a_quarantined_aggregate_is_a_409_never_a_row() {
    let f = fixture(4, false).await;
    for id in [2_i64, 77] {
        f.client
            .execute(
                "INSERT INTO read.quarantined_aggregates (version, aggregate_id, global_seq, reason) \
                 VALUES ('v3', $1, 1, 'malformed deposited payload')",
                &[&id.to_string()],
            )
            .await
            .unwrap();
    }
    let (status, body) = f.get("/aggregate/2").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["quarantined"], true, "{body}");
    assert!(body.get("balance").is_none(), "no state is served: {body}");
    // With a row as without one, the 409 names the event that could not be folded and why.
    assert_eq!(body["reason"], "malformed deposited payload", "{body}");
    assert_eq!(body["global_seq"], 1, "{body}");
    // Quarantined before its first row was written: still not "unknown".
    let (status, body) = f.get("/aggregate/77").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["reason"], "malformed deposited payload", "{body}");
    let (status, _) = f.get("/aggregate/3").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_expose_latency_by_route_and_the_active_version() {
    let f = fixture(3, true).await;
    for path in ["/aggregate/1", "/aggregate/2", "/aggregate/abc", "/aggregate/1/as-of?offset=3", "/projections"] {
        f.get(path).await;
    }
    let (status, text) = f.get("/metrics").await;
    assert_eq!(status, 200);
    let text = text.as_str().expect("text exposition, not JSON");
    for needle in [
        "# TYPE reproject_api_request_duration_seconds histogram",
        // Reads carry the version that served them; other routes have no version label.
        r#"reproject_api_request_duration_seconds_bucket{route="/aggregate/{id}",status="200",version="v3",le="0.001"}"#,
        r#"reproject_api_request_duration_seconds_bucket{route="/projections",status="200",le="0.001"}"#,
        r#"le="0.0001""#,
        "reproject_api_requests_total{",
        r#"reproject_active_projection_info{version="v3"} 1"#,
        "reproject_projection_lag_events{",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(counter(text, "reproject_api_requests_total", &[r#"route="/aggregate/{id}""#, r#"status="400""#]) >= 1.0);
}

#[tokio::test]
async fn a_database_without_a_read_model_is_a_503() {
    let url = pgharness::throwaway().fresh_database();
    let state = api::state(&url, 1, None, lab::catalog::projections()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await.unwrap() });
    let resp = reqwest::get(format!("{base}/aggregate/1")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("the event log does not exist"), "{body}");
}

#[test]
fn the_adaptive_controller_reads_the_histogram_the_api_writes() {
    assert_eq!(projector::adaptive::LIVE_LATENCY_METRIC, api::REQUEST_SECONDS);
}

#[tokio::test]
async fn held_dead_and_quarantined_show_in_projections_and_metrics() {
    let f = fixture(4, false).await;
    f.client
        .batch_execute(
            "INSERT INTO read.quarantined_aggregates (version, aggregate_id, global_seq, reason) \
             VALUES ('v3', 3, 7, 'malformed deposited payload'); \
             INSERT INTO read.dead_letters (version, global_seq, partition, aggregate_id, aggregate_version, type, payload, error) \
             VALUES ('v3', 7, 0, 3, 2, 'deposited', '{}', 'missing amount_cents'); \
             INSERT INTO read.held_events (version, partition, aggregate_id, aggregate_version, global_seq, tx_id, type, ts, payload) \
             VALUES ('v3', 0, 4, 9, 8, 1, 'deposited', now(), '{\"amount_cents\": 5}'), \
                    ('v3', 0, 4, 10, 9, 1, 'deposited', now(), '{\"amount_cents\": 5}')",
        )
        .await
        .unwrap();
    let (status, body) = f.get("/projections").await;
    assert_eq!(status, 200, "{body}");
    let v3 = &body["projections"][0];
    assert_eq!(v3["version"], "v3", "{body}");
    assert_eq!(
        (&v3["held_events"], &v3["dead_letters"], &v3["quarantined_aggregates"]),
        (&json!(2), &json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(v3["build"]["progress_ratio"], 1.0, "an active version is built: {body}");
    // /metrics reads the same counts from the database when scraped (at most once a second per
    // server; other tests' servers in this process set the same series for their own v3).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, text) = f.get("/metrics").await;
        let text = text.as_str().unwrap_or_default().to_owned();
        let has = |line: &str| text.lines().any(|l| l == line);
        if has("reproject_held_events{version=\"v3\"} 2")
            && has("reproject_dead_letters{version=\"v3\"} 1")
            && has("reproject_quarantined_aggregates{version=\"v3\"} 1")
            && text.contains("reproject_pg_xact_commit_total ")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "gauges missing from /metrics:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_building_version_shows_its_progress_and_expected_completion() {
    let f = fixture(4, false).await;
    let mut client = eventlog::connect(&f.url).await.unwrap();
    readmodel::register(&mut client, &V4, readmodel::State::Building, 4).await.unwrap();
    let now = chrono::Utc::now();
    readmodel::record_build_progress(
        &client,
        &readmodel::BuildProgress {
            version: "v4".into(),
            phase: readmodel::BuildPhase::Bulk,
            events_done: 1_000,
            events_total: 4_000,
            events_per_s: 100.0,
            started_at: now,
            updated_at: now,
        },
    )
    .await
    .unwrap();
    let (status, body) = f.get("/projections").await;
    assert_eq!(status, 200, "{body}");
    let v4 = body["projections"].as_array().unwrap().iter().find(|p| p["version"] == "v4").expect("v4 listed").clone();
    assert_eq!(v4["state"], "building", "{body}");
    assert_eq!(v4["build"]["phase"], "bulk", "{body}");
    assert_eq!(v4["build"]["progress_ratio"], 0.25, "{body}");
    let eta = v4["build"]["eta_seconds"].as_f64().expect("an ETA");
    assert!((25.0..=30.0).contains(&eta), "3000 events to go at 100/s, minus the time since: {eta}");
    assert!(v4["build"]["expected_ready_at"].is_string(), "{body}");
}

/// An API with no default family serves the one family with an active version, and when
/// several are active a read naming none is a 400 that names them (not a 503 about one of
/// them); `?family=` always works. The log's estimate counts a backfill made since the last
/// ANALYZE, and the load driver's id sample holds ids that exist.
#[tokio::test]
async fn a_read_without_a_family_is_served_or_told_which_families_there_are() {
    let mut f = fixture(6, false).await;
    let state = api::state(&f.url, 1, None, lab::catalog::projections()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await.unwrap() });
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let resp = reqwest::get(url).await.unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = get("/aggregate/2").await;
    assert_eq!((status, body["projection_version"].as_str()), (200, Some("v3")), "one family active: {body}");
    build(&mut f.client, &lab::activity::ActivityV1, 6).await;
    readmodel::cutover(&mut f.client, "activity_v1").await.unwrap();
    let (status, body) = get("/aggregate/2").await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("accounts, activity") && message.contains("?family="), "{message}");
    let (status, body) = get("/aggregate/2?family=activity").await;
    assert_eq!((status, body["projection_version"].as_str()), (200, Some("activity_v1")), "{body}");

    // A backfill since the last ANALYZE: the estimate follows the pages, not the old count.
    f.client.batch_execute("ANALYZE log.events").await.unwrap();
    let before: i64 = f.client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0);
    append(&mut f.client, &history(100..=2_099, 3)).await;
    let now: i64 = f.client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0);
    let (_, projections) = f.get("/projections").await;
    let estimate = projections["log_events_estimate"].as_i64().unwrap();
    assert!(now > before * 10, "the backfill is large: {before} -> {now}");
    assert!((estimate - now).abs() * 5 < now, "estimate {estimate} of {now} events after a backfill");

    let (version, ids) = readmodel::sample_ids(&f.client, Some("accounts"), 4).await.unwrap();
    assert_eq!((version.as_str(), ids.len()), ("v3", 4));
    for id in ids {
        let (status, body) = f.get(&format!("/aggregate/{id}")).await;
        assert_eq!(status, 200, "a sampled id exists: {body}");
    }
    let e = readmodel::sample_ids(&f.client, None, 4).await.unwrap_err().to_string();
    assert!(e.contains("several families are active"), "{e}");
}
