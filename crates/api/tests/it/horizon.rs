//! Final time-travel answers and the horizon: a cut is answered as final only when nothing
//! that commits later can land inside it, and a final answer never changes.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use eventlog::NewEvent;
use fold::Row;
use lab::bank::{Account, V4};
use serde_json::Value;
use tokio_postgres::Client;

use crate::support::*;

/// The next version of aggregate `id` in the log.
async fn next_version(client: &Client, id: i64) -> i32 {
    client.query_one("SELECT max(version) + 1 FROM log.events WHERE aggregate_id = $1", &[&id]).await.unwrap().get(0)
}

fn deposit(id: i64, version: i32, ts: DateTime<Utc>) -> NewEvent {
    NewEvent {
        aggregate_id: id.into(),
        version,
        event_type: "deposited".into(),
        ts,
        payload: r#"{"amount_cents":777}"#.into(),
    }
}

/// The fold of aggregate `id`'s events with `global_seq <= offset` and `ts <= ts`.
async fn fold_of_prefix(client: &Client, id: i64, ts: DateTime<Utc>, offset: i64) -> Row<Account> {
    let events = eventlog::aggregate_events(client, &fold::AggregateId::from(id), ts, offset).await.unwrap();
    fold::fold_from(&V4, None, events.iter().map(|e| e.decode(&V4).unwrap())).unwrap().row.unwrap()
}

/// Polls `path` until its answer is final (10 s at most).
async fn until_final(f: &Fixture, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = f.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        if body["final"] == true {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never became final: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ts_param(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test]
async fn an_offset_cut_is_not_final_while_a_writer_inside_it_runs_then_final_and_fixed() {
    let f = fixture(10, false).await;
    let mut late = eventlog::connect(&f.url).await.unwrap();
    let mut other = eventlog::connect(&f.url).await.unwrap();
    // 1. A writer appends a deposit to aggregate 5 and stays open.
    let v5 = next_version(&f.client, 5).await;
    let tx = late.transaction().await.unwrap();
    let s1 = eventlog::append_event(&tx, &deposit(5, v5, Utc::now())).await.unwrap();
    // 2. Another appends to aggregate 7 and commits, with a larger global_seq.
    let v7 = next_version(&f.client, 7).await;
    let s2 = {
        let t = other.transaction().await.unwrap();
        let s = eventlog::append_event(&t, &deposit(7, v7, Utc::now())).await.unwrap();
        t.commit().await.unwrap();
        s
    };
    assert!(s2 > s1, "{s2} > {s1}");
    // 3. As of s2: answered, but not final, and says why and where the horizon is.
    let path = format!("/aggregate/5/as-of?offset={s2}&version=v4");
    let (status, before) = f.get(&path).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["final"], false, "a writer inside the cut is still running: {before}");
    // Why: the writer may still commit below the offset, or (just after the API started) the
    // sampler has not proven any offset yet.
    assert!(before["not_final_because"].as_str().unwrap().contains("offset"), "{before}");
    let horizon = eventlog::boundary(&f.client).await.unwrap();
    assert!(before["horizon"]["xid"].as_i64().unwrap() <= horizon, "{before}");
    assert!(before["horizon"]["final_through_offset"].as_i64().unwrap_or(0) < s1, "{before}");
    assert_eq!(before["aggregate_version"], v5 - 1, "{before}");
    // The same cut never turns final while the writer runs, however long we wait for the
    // sampler (several of its periods).
    let (_, again) = f.get(&path).await;
    assert_eq!(again["final"], false, "{again}");
    // 4. The writer commits: the cut becomes final, and equals the fold of the log prefix.
    tx.commit().await.unwrap();
    let after = until_final(&f, &path).await;
    let expected = fold_of_prefix(&f.client, 5, DateTime::<Utc>::MAX_UTC, s2).await;
    assert_eq!(expected.aggregate_version, v5, "the late event is inside the cut");
    assert_row(&after, &V4, &expected, &path);
    assert!(after.get("not_final_because").is_none(), "{after}");
    // 5. A final answer stays equal across later commits, and while other writers run.
    let v5b = next_version(&f.client, 5).await;
    append(&mut other, &[deposit(5, v5b, Utc::now())]).await;
    let running = late.transaction().await.unwrap();
    eventlog::append_event(&running, &deposit(7, v7 + 1, Utc::now())).await.unwrap();
    for _ in 0..5 {
        let (status, body) = f.get(&path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["final"], true, "a final cut stays final: {body}");
        assert_row(&body, &V4, &expected, "after later commits");
    }
    running.rollback().await.unwrap();
}

#[tokio::test]
async fn a_ts_cut_with_a_late_writer_inside_it_is_never_final_alone_and_final_pinned_to_an_offset() {
    let f = fixture(10, false).await;
    let mut late = eventlog::connect(&f.url).await.unwrap();
    let events = eventlog::aggregate_events(&f.client, &3.into(), DateTime::<Utc>::MAX_UTC, i64::MAX).await.unwrap();
    let last_ts = events.iter().map(|e| e.ts).max().unwrap();
    let cut = last_ts + chrono::Duration::days(1);
    // A writer whose event time lies inside the cut, which commits late.
    let v3 = next_version(&f.client, 3).await;
    let tx = late.transaction().await.unwrap();
    eventlog::append_event(&tx, &deposit(3, v3, last_ts + chrono::Duration::hours(1))).await.unwrap();
    let path = format!("/aggregate/3/as-of?ts={}&version=v4", ts_param(cut));
    let (status, before) = f.get(&path).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["final"], false, "{before}");
    assert!(before["not_final_because"].as_str().unwrap().contains("never final"), "{before}");
    assert_eq!(before["aggregate_version"], v3 - 1, "{before}");
    tx.commit().await.unwrap();
    // The answer changes: it said it might.
    let (_, after) = f.get(&path).await;
    assert_eq!(after["aggregate_version"], v3, "{after}");
    assert_eq!(after["final"], false, "a ts cut alone is never final: {after}");
    // Pinned to an offset the horizon has passed, the same time cut is final.
    let pinned = loop {
        let (_, body) = f.get(&path).await;
        let through = body["horizon"]["final_through_offset"].as_i64().unwrap_or(0);
        let head: i64 = f.client.query_one("SELECT max(global_seq) FROM log.events", &[]).await.unwrap().get(0);
        if through >= head {
            break through;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pinned_path = format!("{path}&offset={pinned}");
    let body = until_final(&f, &pinned_path).await;
    assert_row(&body, &V4, &fold_of_prefix(&f.client, 3, cut, pinned).await, &pinned_path);
}

#[tokio::test]
async fn a_position_cut_is_final_below_the_horizon_and_not_at_or_above_it() {
    let f = fixture(10, false).await;
    let mut late = eventlog::connect(&f.url).await.unwrap();
    let v2 = next_version(&f.client, 2).await;
    let tx = late.transaction().await.unwrap();
    eventlog::append_event(&tx, &deposit(2, v2, Utc::now())).await.unwrap();
    let horizon = eventlog::boundary(&f.client).await.unwrap();
    let (status, below) = f.get(&format!("/aggregate/2/as-of?position={horizon}&version=v4")).await;
    assert_eq!(status, 200, "{below}");
    assert_eq!(below["final"], true, "{below}");
    assert_eq!(below["aggregate_version"], v2 - 1, "{below}");
    let (_, above) = f.get(&format!("/aggregate/2/as-of?position={}&version=v4", horizon + 1)).await;
    assert_eq!(above["final"], false, "the writer at xid {horizon} still runs: {above}");
    tx.commit().await.unwrap();
    let (_, still) = f.get(&format!("/aggregate/2/as-of?position={horizon}&version=v4")).await;
    assert_eq!(still["aggregate_version"], v2 - 1, "a final position cut did not change: {still}");
}

#[tokio::test]
async fn get_projections_and_metrics_name_the_transaction_holding_the_horizon() {
    let f = fixture(5, false).await;
    // An idle transaction holding an xid in another database of the cluster.
    let other_db = pgharness::throwaway().fresh_database();
    let idle = eventlog::connect(&other_db).await.unwrap();
    idle.batch_execute("SET application_name = 'batch-report'; BEGIN; SELECT pg_current_xact_id()").await.unwrap();
    let pid: i32 = idle.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let v = next_version(&f.client, 4).await;
    let mut writer = eventlog::connect(&f.url).await.unwrap();
    append(&mut writer, &[deposit(4, v, Utc::now())]).await;
    let (status, body) = f.get("/projections").await;
    assert_eq!(status, 200, "{body}");
    let h = &body["horizon"];
    assert_eq!(h["waiting"], true, "{h}");
    assert_eq!(h["holder"]["pid"], pid, "{h}");
    assert_eq!(h["holder"]["application"], "batch-report", "{h}");
    assert_eq!(h["holder"]["state"], "idle in transaction", "{h}");
    assert!(h["holder"]["database"].as_str().unwrap() != "postgres", "{h}");
    // The API's gauge: the sampler refreshes it every second; wait for a positive age.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = f.get("/metrics").await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        let age = text
            .lines()
            .find(|l| l.starts_with("reproject_log_horizon_age_seconds"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if age.is_some_and(|a| a > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no positive horizon age in /metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    idle.batch_execute("ROLLBACK").await.unwrap();
    let (_, body) = f.get("/projections").await;
    assert_eq!(body["horizon"]["waiting"], false, "{body}");
}
