//! `projector --mode replay --store redis://...` and `redis verify`: the binary against a real
//! redis-server and PostgreSQL, including a replay SIGKILLed after some partitions were written.

use std::time::{Duration, Instant};

use fold::IdKind;
use lab::bank::V4;

use crate::support::*;

#[tokio::test]
async fn a_replay_into_redis_killed_mid_way_resumes_and_verifies_with_zero_diffs() {
    let url = seeded(200_000, 5_000, 16).await;
    let redis = redisstore::Throwaway::start().expect("redis-server");
    let store = redis.url();
    let args = ["projector", "--mode", "replay", "--projection", "v4", "--workers", "1", "--store", &store];
    let mut child = spawn(&url, &args);
    // Wait for the first partition to be written (rows and position in one script), then kill.
    let mut reader =
        redisstore::RedisStore::open(&store, redisstore::Layout::of(&V4).unwrap(), IdKind::Bigint).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let positions = reader.positions(16).await.unwrap();
        if positions.iter().any(|p| *p > eventlog::Position::START) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the replay ended before any partition was seen");
        assert!(Instant::now() < deadline, "no partition written within 120 s");
        tokio::task::yield_now().await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the replay finished before the kill: nothing was tested");
    kill_after(child, Duration::ZERO);
    let done_before = reader.positions(16).await.unwrap().iter().filter(|p| **p > eventlog::Position::START).count();
    assert!(done_before < 16, "every partition was written before the kill");

    let out = run_ok(&url, &args);
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(
        report["partitions_replayed"].as_u64().unwrap() as usize,
        16 - done_before,
        "the rerun redid a partition that was written, or skipped one that was not: {out}"
    );
    let verdict = run_ok(&url, &["redis", "verify", "--projection", "v4", "--store", &store]);
    assert!(verdict.trim_end().ends_with("diffs: 0"), "{verdict}");
}

#[test]
fn a_redis_store_refuses_the_flags_it_does_not_take() {
    let out = run(
        "postgres://nobody@127.0.0.1:1/none",
        &[
            "projector",
            "--mode",
            "replay",
            "--projection",
            "v4",
            "--rate-limit",
            "10",
            "--store",
            "redis://127.0.0.1:1/",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rate-limit") && err.contains("--store"), "{err}");
}

#[tokio::test]
async fn redis_snapshot_then_a_replay_from_it_verifies_with_zero_diffs() {
    let url = seeded(20_000, 1_000, 8).await;
    let out = run_ok(&url, &["redis", "snapshot", "--projection", "v4"]);
    let snap: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    let cut = snap["cut"].as_i64().unwrap().to_string();
    assert_eq!(snap["events"].as_u64(), Some(20_000), "{out}");
    let redis = redisstore::Throwaway::start().expect("redis-server");
    let store = redis.url();
    let out = run_ok(
        &url,
        &["projector", "--mode", "replay", "--projection", "v4", "--store", &store, "--from-snapshot", &cut],
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(report["events"].as_u64(), Some(0), "nothing after the cut to read: {out}");
    assert_eq!(report["from_snapshot"].as_i64(), snap["cut"].as_i64());
    let verdict = run_ok(&url, &["redis", "verify", "--projection", "v4", "--store", &store]);
    assert!(verdict.trim_end().ends_with("diffs: 0"), "{verdict}");
    assert!(
        verdict.contains("rows: ") && !verdict.contains("rows: 0 "),
        "no rows written from the snapshot: {verdict}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_into_redis_catches_up_under_four_writers_and_equals_the_postgres_tail() {
    let url = seeded(30_000, 3_000, 8).await;
    let redis = redisstore::Throwaway::start().expect("redis-server");
    let store = redis.url();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = {
        let url = url.clone();
        tokio::spawn(async move {
            lab::produce::run(&url, lab::ProduceConfig::new(1_500.0, None, 7), stop_rx).await.expect("producer")
        })
    };
    let args =
        ["projector", "--mode", "replay", "--projection", "v4", "--store", &store, "--catch-up", "--batch", "500"];
    // The bulk phase and three catch-ups while the writers append (transfers write two
    // aggregates in one transaction: some version n+1 comes before n in the tail's order).
    for _ in 0..4 {
        let (url, args) = (url.clone(), args.map(str::to_owned));
        tokio::task::spawn_blocking(move || run_ok(&url, &args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap();
    }
    stop_tx.send(true).unwrap();
    let produced = producer.await.unwrap();
    assert!(produced.events > 0, "the writers wrote during the catch-ups");
    let out = run_ok(&url, &args);
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(report["catch_up"]["held_at_end"].as_u64(), Some(0), "{out}");
    let verdict = run_ok(&url, &["redis", "verify", "--projection", "v4", "--store", &store]);
    assert!(verdict.trim_end().ends_with("diffs: 0"), "{verdict}");

    // The PostgreSQL tail over the same log gives the same rows.
    run_ok(&url, &["projector", "--mode", "live", "--version", "v4", "--stop-at-head"]);
    let client = eventlog::connect(&url).await.unwrap();
    let in_pg = readmodel::load_all_rows(&client, &V4).await.unwrap();
    let mut reader =
        redisstore::RedisStore::open(&store, redisstore::Layout::of(&V4).unwrap(), IdKind::Bigint).await.unwrap();
    let in_redis = reader.load_all_rows(&V4).await.unwrap();
    assert_eq!(in_redis.len(), in_pg.len());
    assert!(in_redis == in_pg, "the Redis rows differ from the PostgreSQL tail's");
}
