//! The replay: bulk rebuild == tail, held events across the bulk boundary, isolation from the
//! live version, and the rate limit.

use std::time::Duration;

use fold::Projection;
use lab::bank::{V3, V4};
use projector::{ReplayConfig, TailOptions, Tailer};

use crate::support::*;

fn config<P: Projection>(url: &str, projection: P) -> ReplayConfig<P> {
    ReplayConfig { workers: 2, batch: 1_000, poll: Duration::from_millis(10), ..ReplayConfig::new(url, projection) }
}

fn never() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

#[tokio::test]
async fn a_replay_equals_the_tail_and_leaves_the_live_version_untouched() {
    let (url, mut client) = fresh_log(8).await;
    bulk_events(&client, 3_000, 4).await;
    prepare_version(&mut client, &V3).await;
    let mut live = Tailer::open(&client, V3, TailOptions::batch(2_000)).await.unwrap();
    drain(&mut live, &mut client).await;
    readmodel::set_state(&client, "v3", readmodel::State::Ready).await.unwrap();
    readmodel::cutover(&mut client, "v3").await.unwrap();
    let v3_before = readmodel::table_checksum(&client, &V3).await.unwrap();
    let v3_offsets = readmodel::offsets(&client, "v3").await.unwrap();

    let report = projector::replay(&config(&url, V4), never()).await.unwrap();
    assert_eq!(report.bulk_events, 15_000);
    assert_eq!(report.bulk_rows, 3_000);
    assert_eq!(report.partitions_replayed, 8);
    assert_eq!(readmodel::version_info(&client, "v4").await.unwrap().state, readmodel::State::Ready);

    // Every v4 row equals the fold of its own events.
    for id in [1_i64, 2, 777, 2_999, 3_000] {
        let events: Vec<_> = eventlog::aggregate_events(
            &client,
            &fold::AggregateId::from(id),
            chrono::DateTime::<chrono::Utc>::MAX_UTC,
            i64::MAX,
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.decode(&V4).unwrap())
        .collect();
        let expected = fold::fold_from(&V4, None, events).unwrap().row;
        assert_eq!(row(&client, &V4, id).await, expected, "aggregate {id}");
    }
    assert_eq!(readmodel::table_checksum(&client, &V3).await.unwrap(), v3_before, "v3 rows untouched");
    assert_eq!(readmodel::offsets(&client, "v3").await.unwrap(), v3_offsets, "v3 offsets untouched");
}

#[tokio::test]
async fn an_event_held_at_the_bulk_boundary_survives_into_catch_up() {
    let (url, client) = fresh_log(4).await;
    // B takes xid b and writes Z; C takes xid c > b and stays open (so the bulk boundary W = c);
    // A (xid a > c) commits version 1 of X; B then writes version 2 of X and commits.
    let mut b = eventlog::connect(&url).await.unwrap();
    let b_tx = b.transaction().await.unwrap();
    eventlog::append_event(&b_tx, &opened(30)).await.unwrap();
    let mut c = eventlog::connect(&url).await.unwrap();
    let c_tx = c.transaction().await.unwrap();
    eventlog::append_event(&c_tx, &opened(40)).await.unwrap();
    let mut a = eventlog::connect(&url).await.unwrap();
    append(&mut a, &[opened(10)]).await;
    eventlog::append_event(&b_tx, &deposited(10, 2, 321)).await.unwrap();
    b_tx.commit().await.unwrap();

    let mut bulk_only = config(&url, V4);
    bulk_only.catch_up = false;
    let report = projector::replay(&bulk_only, never()).await.unwrap();
    assert_eq!(report.held_after_bulk, 1, "version 2 of X is below W, version 1 is not");
    assert!(row(&client, &V4, 10).await.is_none());
    let held: i64 = client.query_one("SELECT count(*) FROM read.held_events", &[]).await.unwrap().get(0);
    assert_eq!(held, 1, "the held event was written with its partition");

    c_tx.commit().await.unwrap();
    projector::replay(&config(&url, V4), never()).await.unwrap();
    let x = row(&client, &V4, 10).await.unwrap();
    assert_eq!((x.aggregate_version, x.state.balance), (2, 321));
    assert!(row(&client, &V4, 40).await.is_some());
}

#[tokio::test]
async fn a_rate_limited_replay_stays_within_ten_percent_of_the_limit() {
    let (url, client) = fresh_log(4).await;
    bulk_events(&client, 3_000, 4).await;
    let mut limited = config(&url, V4);
    limited.rate_limit = Some(5_000.0);
    limited.catch_up = false;
    let report = projector::replay(&limited, never()).await.unwrap();
    let rate = report.bulk_events as f64 / report.bulk_seconds;
    assert!((4_500.0..=5_500.0).contains(&rate), "replayed at {rate:.0} events/s against a 5000 limit");
}

/// A stand-in for the live API: answers `GET /metrics` with a latency histogram of the live
/// route that gains 100 reads under 0.5 ms per scrape, every other request with `200 {}`.
async fn fake_live_api() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scrapes = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = if seen.starts_with(b"GET /metrics ") {
                    let reads = 100 * scrapes.fetch_add(1, Ordering::SeqCst);
                    ["0.0005", "0.001", "+Inf"]
                        .iter()
                        .map(|le| {
                            format!(
                                "reproject_api_request_duration_seconds_bucket{{route=\"/aggregate/{{id}}\",\
                                 status=\"200\",le=\"{le}\"}} {reads}\n"
                            )
                        })
                        .collect::<String>()
                } else {
                    "{}".to_owned()
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// An adaptive replay of 5,000 events beside the fake live API, its p99 read from `source`.
async fn adaptive_replay(source: projector::LatencySource) -> (tokio_postgres::Client, projector::ReplayReport) {
    let (url, client) = fresh_log(4).await;
    bulk_events(&client, 1_000, 4).await;
    let mut adaptive = config(&url, V4);
    adaptive.adaptive = Some(projector::AdaptiveConfig {
        api_url: fake_live_api().await,
        max_live_p99_increase: 0.10,
        probe_aggregates: 100,
        source,
    });
    let report = projector::replay(&adaptive, never()).await.unwrap();
    assert_eq!(report.bulk_events, 5_000);
    (client, report)
}

#[tokio::test]
async fn an_adaptive_replay_reads_the_live_p99_from_the_apis_metrics() {
    let (_, report) = adaptive_replay(projector::LatencySource::Metrics).await;
    let a = report.adaptive.expect("an adaptive replay reports its controller");
    // Every read in the fake histogram is under 0.5 ms, spread over that bucket as
    // histogram_quantile would: the baseline p99 is just under its bound.
    assert!(a.baseline_p99_ms > 0.45 && a.baseline_p99_ms <= 0.5, "{a:?}");
    assert!((a.threshold_ms - a.baseline_p99_ms * 1.1).abs() < 1e-6, "{a:?}");
}

#[tokio::test]
async fn an_adaptive_replay_measures_a_baseline_and_builds_the_same_version() {
    let (client, report) = adaptive_replay(projector::LatencySource::Probe).await;
    // Nothing else was active, so the caught-up version was activated.
    assert_eq!(readmodel::version_info(&client, "v4").await.unwrap().state, readmodel::State::Active);
    let a = report.adaptive.expect("an adaptive replay reports its controller");
    assert!(a.baseline_p99_ms > 0.0 && a.threshold_ms > a.baseline_p99_ms, "{a:?}");
    assert!(a.final_rate_events_per_s >= projector::adaptive::FLOOR, "{a:?}");
    assert_eq!(a.ceiling_events_per_s, projector::adaptive::DEFAULT_CEILING);
    for id in [1_i64, 500, 1_000] {
        assert!(row(&client, &V4, id).await.is_some(), "aggregate {id}");
    }
}

#[tokio::test]
async fn an_adaptive_replay_without_a_live_api_fails_before_any_work() {
    let (url, client) = fresh_log(4).await;
    bulk_events(&client, 100, 1).await;
    // A port that was free a moment ago: nothing answers there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut adaptive = config(&url, V4);
    adaptive.adaptive = Some(projector::AdaptiveConfig {
        api_url: dead,
        max_live_p99_increase: 0.10,
        probe_aggregates: 10,
        source: projector::LatencySource::Metrics,
    });
    let err = projector::replay(&adaptive, never()).await.unwrap_err();
    assert!(matches!(err, projector::Error::Probe(_)), "{err}");
    assert!(readmodel::version_info(&client, "v4").await.is_err(), "nothing registered");
}

/// The `Cpus_allowed_list` of process `pid` (`0-1`, `1`), and its scheduling policy and nice value.
fn scheduling_of(pid: i32) -> (String, i32, i32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_owned();
    // SAFETY: plain integer calls.
    let (policy, nice) =
        unsafe { (libc::sched_getscheduler(pid), libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t)) };
    (cpus, policy, nice)
}

#[tokio::test]
async fn a_lowered_priority_reaches_the_postgresql_backend_of_the_connection() {
    // The throwaway cluster runs as this user, so its backends may be rescheduled.
    let (url, client) = fresh_log(2).await;
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let last_core = projector::priority::online_cores() - 1;
    let priority = projector::CpuPriority { nice: 19, idle: true, cpus: 1 << last_core };
    assert_ne!(scheduling_of(pid), (last_core.to_string(), libc::SCHED_IDLE, 19), "not so already");
    priority.apply_to_backend(&client).await;
    assert_eq!(scheduling_of(pid), (last_core.to_string(), libc::SCHED_IDLE, 19));
    // Another connection's backend is left as it was.
    let other = eventlog::connect(&url).await.unwrap();
    let other_pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_eq!(scheduling_of(other_pid).1, libc::SCHED_OTHER);
}

/// A log stored out of version order (each of 12 aggregates' version 1 stored after all its
/// later versions, as behind one late-stored predecessor): unbounded, the bulk fold holds
/// nearly all of their events at once; with a held limit it holds at most the limit, through
/// the spill table alone or through gap lookups (which find the version 1s in the log and
/// spill nothing), and writes exactly the same rows.
#[tokio::test]
async fn a_replay_past_its_held_limit_spills_and_writes_the_same_rows() {
    let (url, mut client) = fresh_log(4).await;
    bulk_events(&client, 500, 3).await;
    client
        .batch_execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT a, v, CASE WHEN v = 1 THEN 'account_opened' ELSE 'deposited' END, now(), \
                    CASE WHEN v = 1 THEN jsonb_build_object('owner', 'o', 'currency', 'EUR') \
                         ELSE jsonb_build_object('amount_cents', v * 7 + a) END \
             FROM generate_series(1001, 1012) a, generate_series(1, 400) v ORDER BY v = 1, v, a",
        )
        .await
        .unwrap();
    let bulk =
        |limit, gap_lookups| ReplayConfig { catch_up: false, held_limit: limit, gap_lookups, ..config(&url, V4) };

    let unbounded = projector::replay(&bulk(None, true), never()).await.unwrap();
    assert!(unbounded.bulk_held_peak >= 1_000, "the log holds {} at once unbounded", unbounded.bulk_held_peak);
    assert_eq!(unbounded.bulk_spilled + unbounded.bulk_fetched, 0);
    let expected = readmodel::table_checksum(&client, &V4).await.unwrap();

    // The spill alone: the aggregates holding the most are folded from the spill table.
    readmodel::drop_version(&mut client, &V4).await.unwrap();
    let spilled = projector::replay(&bulk(Some(50), false), never()).await.unwrap();
    assert!(spilled.bulk_held_peak <= 50, "held {} at once with a limit of 50", spilled.bulk_held_peak);
    assert!(spilled.bulk_deferred_aggregates > 0 && spilled.bulk_spilled > 0, "{spilled:?}");
    assert_eq!(spilled.bulk_events, unbounded.bulk_events);
    assert_eq!(spilled.bulk_rows, 512);
    assert_eq!(readmodel::table_checksum(&client, &V4).await.unwrap(), expected, "rows differ (spill)");

    // Gap lookups first (the default): version 1 of each aggregate is read from the log when
    // the limit is reached, everything behind it applies, nothing is spilled.
    readmodel::drop_version(&mut client, &V4).await.unwrap();
    let looked_up = projector::replay(&bulk(Some(50), true), never()).await.unwrap();
    assert!(looked_up.bulk_held_peak <= 50, "held {} at once with lookups", looked_up.bulk_held_peak);
    assert!(looked_up.bulk_fetched > 0, "{looked_up:?}");
    assert_eq!(looked_up.bulk_spilled, 0, "gaps the log fills need no spill: {looked_up:?}");
    assert_eq!(readmodel::table_checksum(&client, &V4).await.unwrap(), expected, "rows differ (gap lookups)");
    let hot = row(&client, &V4, 1003).await.unwrap();
    assert_eq!(hot.aggregate_version, 400);
    assert_eq!(hot.state.balance, (2..=400).map(|v| v * 7 + 1003).sum::<i64>());
    let check = projector::verify_against_log(&mut client, &V4).await.unwrap();
    assert_eq!(check.diffs, 0, "{}", check.render());
}

/// A log whose every tenth version (past 200) of 4 busy aggregates is stored 150 versions
/// ahead of its place, as PostgreSQL stores later rows in the free space of earlier pages:
/// each such event holds nothing behind it, but ~15 per aggregate wait at once. With a limit
/// of 10 the fold
/// evicts them and reads each back by index when its aggregate's stream reaches it: within the
/// limit, nothing through the spill, the same rows as unbounded, 0 diffs against the log.
#[tokio::test]
async fn a_replay_evicts_later_versions_stored_ahead_and_reads_them_back() {
    let (url, mut client) = fresh_log(4).await;
    bulk_events(&client, 300, 3).await;
    client
        .batch_execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT a, v, CASE WHEN v = 1 THEN 'account_opened' ELSE 'deposited' END, now(), \
                    CASE WHEN v = 1 THEN jsonb_build_object('owner', 'o', 'currency', 'EUR') \
                         ELSE jsonb_build_object('amount_cents', v * 3 + a) END \
             FROM generate_series(2001, 2004) a, generate_series(1, 2000) v \
             ORDER BY CASE WHEN v % 10 = 5 AND v > 200 THEN v - 150 ELSE v END, v, a",
        )
        .await
        .unwrap();
    let bulk = |limit| ReplayConfig { catch_up: false, held_limit: limit, ..config(&url, V4) };

    let unbounded = projector::replay(&bulk(None), never()).await.unwrap();
    assert!(unbounded.bulk_held_peak >= 25, "the log holds {} at once unbounded", unbounded.bulk_held_peak);
    let expected = readmodel::table_checksum(&client, &V4).await.unwrap();

    readmodel::drop_version(&mut client, &V4).await.unwrap();
    let bounded = projector::replay(&bulk(Some(10)), never()).await.unwrap();
    assert!(bounded.bulk_held_peak <= 10, "held {} at once with a limit of 10", bounded.bulk_held_peak);
    assert!(bounded.bulk_evicted > 0, "{bounded:?}");
    assert_eq!(bounded.bulk_refetched, bounded.bulk_evicted, "every evicted event read back once: {bounded:?}");
    assert_eq!((bounded.bulk_spilled, bounded.bulk_deferred_aggregates), (0, 0), "{bounded:?}");
    assert_eq!(bounded.bulk_events, unbounded.bulk_events);
    assert_eq!(readmodel::table_checksum(&client, &V4).await.unwrap(), expected, "rows differ (evictions)");
    let busy = row(&client, &V4, 2002).await.unwrap();
    assert_eq!(busy.aggregate_version, 2000);
    assert_eq!(busy.state.balance, (2..=2000).map(|v| v * 3 + 2002).sum::<i64>());
    let check = projector::verify_against_log(&mut client, &V4).await.unwrap();
    assert_eq!(check.diffs, 0, "{}", check.render());
}
