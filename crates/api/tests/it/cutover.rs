//! Cutover: refused while lagging, idempotent, and invisible to concurrent readers except
//! for the version they are served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fold::Row;
use lab::bank::{Account, AccountV3, V3, V4};
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn cutover_is_refused_while_lagging_then_idempotent() {
    let mut f = fixture(10, true).await;
    // New events arrive; the live v3 folds them, the new v4 has not yet.
    append(&mut f.client, &history(11..=14, 99)).await;
    project(&mut f.client, &V3, 14).await;
    let new_events: i64 =
        f.client.query_one("SELECT count(*) FROM log.events WHERE aggregate_id > 10", &[]).await.unwrap().get(0);

    let (status, body) = f.get("/projections").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], "v3", "{body}");
    let by_version: HashMap<String, Value> = body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["version"].as_str().unwrap().to_owned(), p.clone()))
        .collect();
    assert_eq!(by_version["v3"]["state"], "active");
    assert_eq!(by_version["v4"]["state"], "ready");
    assert_eq!(by_version["v3"]["lag_events"], 0, "{body}");
    assert_eq!(by_version["v4"]["lag_events"], new_events, "{body}");
    assert_eq!(by_version["v3"]["rows"], 14, "{body}");
    assert_eq!(by_version["v4"]["rows"], 10, "{body}");
    assert_eq!(by_version["v4"]["positions"].as_array().unwrap().len(), PARTITIONS as usize);

    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&format!("lags the active version v3 by {new_events} events")),
        "{body}"
    );
    assert_eq!(body["lag_events"], new_events, "{body}");
    let (_, current) = f.get("/aggregate/1").await;
    assert_eq!(current["projection_version"], "v3", "a refused cutover changes nothing");

    // v4 catches up; now the switch is allowed, once.
    project(&mut f.client, &V4, 14).await;
    let (status, first) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["switched"], true);
    assert_eq!(first["previous"], "v3");
    assert_eq!(first["switch_positions"].as_array().unwrap().len(), PARTITIONS as usize);
    for _ in 0..3 {
        let (status, again) = f.post("/cutover", r#"{"version":"v4"}"#).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["switched"], false);
        for k in ["version", "previous", "switch_positions", "new_positions", "activated_at"] {
            assert_eq!(again[k], first[k], "repeating the cutover returns the recorded {k}");
        }
    }
    let v4 = expected(&f.client, &V4, 14).await;
    let (_, current) = f.get("/aggregate/12").await;
    assert_row(&current, &V4, &v4[&12], "after the cutover");
}

#[tokio::test]
async fn rollback_to_the_retired_version_is_allowed_once_it_has_kept_up() {
    let mut f = fixture(10, true).await;
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!((status, body["rollback"].as_bool()), (200, Some(false)), "{body}");
    // New events reach the live v4 only: the retired v3 has not kept up.
    append(&mut f.client, &history(11..=12, 7)).await;
    project(&mut f.client, &V4, 12).await;
    let (status, body) = f.post("/cutover", r#"{"version":"v3"}"#).await;
    assert_eq!(status, 409, "a rollback to a version that has not kept up is refused: {body}");
    assert!(body["lag_events"].as_i64().unwrap() > 0, "{body}");
    let (_, current) = f.get("/aggregate/12").await;
    assert_eq!(current["projection_version"], "v4", "a refused rollback changes nothing: {current}");

    // v3's projector, restarted, catches up: the rollback passes the same check as a cutover.
    project(&mut f.client, &V3, 12).await;
    let (status, body) = f.post("/cutover", r#"{"version":"v3"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["rollback"].as_bool(), body["previous"].as_str()), (Some(true), Some("v4")), "{body}");
    let v3 = expected(&f.client, &V3, 12).await;
    let (_, current) = f.get("/aggregate/12").await;
    assert_row(&current, &V3, &v3[&12], "after the rollback");
    let (_, registry) = f.get("/projections").await;
    let states: HashMap<&str, &str> = registry["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["version"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, HashMap::from([("v3", "active"), ("v4", "retired")]), "{registry}");

    // The version retired by the rollback can come back the same way, but not once its table
    // is gone.
    f.client.batch_execute("DROP TABLE read.accounts_v4").await.unwrap();
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("is gone"), "{body}");
    let (_, current) = f.get("/aggregate/12").await;
    assert_eq!(current["projection_version"], "v3", "{current}");
}

#[tokio::test]
async fn cutover_to_a_building_or_unregistered_version_is_refused() {
    let mut f = fixture(3, false).await;
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 404, "{body}");
    readmodel::register(&mut f.client, &V4, readmodel::State::Building, PARTITIONS).await.unwrap();
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["state"], "building", "{body}");
}

/// Checks one served row against the expectation of the version it names, and that the
/// reader never goes back from v4 to v3. Returns the version.
fn check(
    body: &Value,
    v3: &HashMap<i64, Row<AccountV3>>,
    v4: &HashMap<i64, Row<Account>>,
    seen_v4: &mut bool,
    who: &str,
) -> &'static str {
    let id = body["aggregate_id"].as_i64().unwrap_or_else(|| panic!("{who}: {body}"));
    match body["projection_version"].as_str() {
        Some("v3") => {
            assert!(!*seen_v4, "{who} was served v3 after v4: {body}");
            assert_row(body, &V3, &v3[&id], who);
            "v3"
        }
        Some("v4") => {
            *seen_v4 = true;
            assert_row(body, &V4, &v4[&id], who);
            "v4"
        }
        other => panic!("{who}: unexpected version {other:?}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_a_cutover_never_fail_tear_or_go_back() {
    let f = Arc::new(fixture(30, true).await);
    let v3 = Arc::new(expected(&f.client, &V3, f.n).await);
    let v4 = Arc::new(expected(&f.client, &V4, f.n).await);
    assert!((1..=f.n).all(|id| v3[&id].state.balance != v4[&id].state.balance), "the versions must be distinguishable");
    let switched = Arc::new(AtomicBool::new(false));
    let (warm, mut warmed) = tokio::sync::mpsc::channel::<()>(16);
    let readers = 6;
    let mut tasks = Vec::new();
    for r in 0..readers {
        let (f, v3, v4, switched, warm) = (f.clone(), v3.clone(), v4.clone(), switched.clone(), warm.clone());
        tasks.push(tokio::spawn(async move {
            let (mut seen_v4, mut after, mut counts) = (false, 0, (0, 0));
            for i in 0..100_000_i64 {
                // Read the flag before the request: a read that starts after the cutover
                // returned must see the new version.
                let started_after_switch = switched.load(Ordering::SeqCst);
                let id = (i * 7 + r) % f.n + 1;
                let (status, body) = f.get(&format!("/aggregate/{id}")).await;
                let who = format!("reader {r}, read {i}");
                assert_eq!(status, 200, "{who} failed: {body}");
                match check(&body, &v3, &v4, &mut seen_v4, &who) {
                    "v3" => counts.0 += 1,
                    _ => counts.1 += 1,
                }
                if started_after_switch {
                    assert!(seen_v4, "{who} started after the cutover and was served v3");
                    after += 1;
                    if after == 200 {
                        return counts;
                    }
                }
                if i == 100 {
                    warm.send(()).await.unwrap();
                }
            }
            panic!("reader {r} never finished");
        }));
    }
    drop(warm);
    for _ in 0..readers {
        warmed.recv().await.expect("every reader warms up on v3");
    }
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["switched"], true, "{body}");
    switched.store(true, Ordering::SeqCst);
    let (mut n3, mut n4) = (0, 0);
    for t in tasks {
        let (a, b) = t.await.unwrap();
        n3 += a;
        n4 += b;
    }
    assert!(n3 >= 100 * readers && n4 >= 200 * readers as usize, "v3 {n3}, v4 {n4}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_driver_sees_no_failure_and_no_regression_across_a_cutover() {
    let f = fixture(40, true).await;
    let base_count = |text: &str| counter(text, "reproject_api_requests_total", &[r#"route="/aggregate/{id}""#]);
    let (_, before) = f.get("/metrics").await;
    let before = base_count(before.as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("load.csv");
    let config = loadgen::LoadConfig {
        url: f.base.clone(),
        concurrency: 8,
        duration: Duration::from_secs(3),
        rate: None,
        // Ids past 40 are unknown: 404s are expected answers, not failures.
        aggregates: 50,
        ids: None,
        family: None,
        zipf: 1.1,
        seed: 5,
        csv_path: Some(csv.clone()),
    };
    let load = tokio::spawn(async move { loadgen::run(&config).await.unwrap() });
    // Switch once the load is under way (a few hundred reads served).
    loop {
        let (_, text) = f.get("/metrics").await;
        if base_count(text.as_str().unwrap()) >= before + 300.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 200, "{body}");
    let report = load.await.unwrap();
    eprintln!("load across the cutover: {}", report.to_json_line());
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(report.version_regressions, 0, "{}", report.to_json_line());
    assert!(report.not_found > 0, "{}", report.to_json_line());
    assert!(report.versions_served.get("v3").is_some_and(|n| *n > 0), "{}", report.to_json_line());
    assert!(report.versions_served.get("v4").is_some_and(|n| *n > 0), "{}", report.to_json_line());
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.lines().any(|l| l.ends_with("v3|v4")) || text.contains("v4"), "{text}");
}

/// After a cutover the retired version's live projector keeps tailing it for its retired
/// window, so a rollback (and the switch forward again) happens at once, under load, with no
/// failed read and no projector restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_inside_the_retired_window_switches_at_once_under_load() {
    let mut f = fixture(30, true).await;
    fn live<P: fold::Projection>(
        url: &str,
        projection: P,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<projector::Result<projector::LiveReport>> {
        let config = projector::LiveConfig {
            poll: Duration::from_millis(5),
            retired_window: Duration::from_secs(120),
            ..projector::LiveConfig::new(url, projection)
        };
        tokio::spawn(async move { projector::run_live(&config, stop).await })
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let v3 = live(&f.url, V3, stop.clone());
    let v4 = live(&f.url, V4, stop.clone());
    // The app keeps appending (new accounts) the whole time.
    let (stop_writer, writer_stop) = tokio::sync::watch::channel(false);
    let writer = {
        let url = f.url.clone();
        tokio::spawn(async move {
            let mut client = eventlog::connect(&url).await.unwrap();
            let mut next = 31;
            while !*writer_stop.borrow() {
                append(&mut client, &history(next..=next + 1, next as u64)).await;
                next += 2;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            next
        })
    };
    let config = loadgen::LoadConfig {
        url: f.base.clone(),
        concurrency: 4,
        duration: Duration::from_secs(6),
        rate: Some(400.0),
        aggregates: 30,
        ids: None,
        family: None,
        zipf: 1.1,
        seed: 9,
        csv_path: None,
    };
    let load = tokio::spawn(async move { loadgen::run(&config).await.unwrap() });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deadline = || Some(tokio::time::Instant::now() + Duration::from_secs(1));
    let forward =
        readmodel::cutover_waiting(&mut f.client, "v4", Some(tokio::time::Instant::now() + Duration::from_secs(30)))
            .await
            .expect("v4 catches up and is cut over");
    assert!(forward.switched && !forward.rollback);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let back = readmodel::cutover_waiting(&mut f.client, "v3", deadline()).await.expect("the rollback switches");
    let rollback_ms = started.elapsed().as_millis();
    assert!(back.switched && back.rollback, "{back:?}");
    assert!(rollback_ms <= 1_000, "the retired v3 kept up: the rollback took {rollback_ms} ms");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    readmodel::cutover_waiting(&mut f.client, "v4", deadline()).await.expect("and forward again");
    let forward_ms = started.elapsed().as_millis();
    let report = load.await.unwrap();
    eprintln!("rollback {rollback_ms} ms, forward again {forward_ms} ms; load {}", report.to_json_line());
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.versions_served.contains_key("v3") && report.versions_served.contains_key("v4"));
    stop_writer.send_replace(true);
    writer.await.unwrap();
    assert!(!v3.is_finished() && !v4.is_finished(), "neither projector stopped: no restart was needed");
    stop_tx.send_replace(true);
    v3.await.unwrap().unwrap();
    v4.await.unwrap().unwrap();
}
