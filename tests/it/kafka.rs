//! The binary against a Kafka topic (a real broker, `tansu`, one per test process): the live
//! projector reading the topic, killed with SIGKILL at random points while writers append to
//! the event store and the mirror follows it into the topic.

use std::time::Duration;

use lab::bank::V4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_live_projector_killed_at_random_points_resumes_from_its_stored_offsets() {
    let seed: u64 = std::env::var("REPROJECT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("kafka crash test: seed {seed} (rerun with REPROJECT_TEST_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let url = seeded(30_000, 3_000, 8).await;
    let topic = kafkalog::Broker::shared().log("live-crash");
    topic.create(4, false).await.unwrap();
    let address = topic.to_string();

    // Writers append to the event store; the mirror follows it into the topic.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = {
        let (url, stop) = (url.clone(), stop_rx.clone());
        tokio::spawn(async move {
            lab::produce::run(&url, lab::ProduceConfig::new(1_500.0, None, 7), stop).await.expect("producer")
        })
    };
    let mirror = {
        let config = kafkalog::MirrorConfig { follow: true, ..kafkalog::MirrorConfig::new(&url, topic.clone()) };
        tokio::spawn(async move { kafkalog::mirror(&config, stop_rx).await.expect("mirror") })
    };
    let live = ["projector", "--mode", "live", "--version", "v4", "--batch", "500", "--topic", &address];
    for _ in 0..5 {
        let child = spawn(&url, &live);
        let at = Duration::from_millis(rng.gen_range(300..2_000));
        tokio::task::spawn_blocking(move || kill_after(child, at)).await.unwrap();
    }
    stop_tx.send(true).unwrap();
    assert!(producer.await.unwrap().events > 0, "the producer wrote while the projector crashed");
    mirror.await.unwrap();
    let (_keep, never) = tokio::sync::watch::channel(false);
    kafkalog::mirror(&kafkalog::MirrorConfig::new(&url, topic.clone()), never).await.unwrap();

    run_ok(&url, &["projector", "--mode", "live", "--version", "v4", "--stop-at-head", "--topic", &address]);
    let report = verify_expected(&url, &V4).await;
    assert_eq!(report.diffs, 0, "seed {seed}: {}", report.render());

    // Exactly once: the stored offsets are the high watermarks, and every record of the topic
    // was applied once (the mirror did not crash, so the topic holds each event once).
    let client = eventlog::connect(&url).await.unwrap();
    let rows = client
        .query(
            "SELECT position_tx, events_applied FROM read.projection_offsets WHERE version = 'v4' ORDER BY partition",
            &[],
        )
        .await
        .unwrap();
    let high: Vec<i64> = topic.watermarks().unwrap().into_iter().map(|(_, h)| h).collect();
    let stored: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, high, "seed {seed}");
    let applied: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    let in_log: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0);
    assert_eq!(applied, in_log, "seed {seed}: every event applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replay_processes_on_a_topic_share_it_and_one_killed_loses_only_its_partition() {
    use crate::workers::{kill_inside_second_partition, with_name};
    use std::process::Stdio;

    let url = seeded(64_000, 4_000, 8).await;
    let client = eventlog::connect(&url).await.unwrap();
    let topic = kafkalog::Broker::shared().log("two-replays");
    topic.create(8, false).await.unwrap();
    let (_keep, never) = tokio::sync::watch::channel(false);
    kafkalog::mirror(&kafkalog::MirrorConfig::new(&url, topic.clone()), never).await.unwrap();
    let address = topic.to_string();
    let args = [
        "projector",
        "--mode",
        "replay",
        "--projection",
        "v4",
        "--workers",
        "1",
        "--catch-up",
        "--stop-at-head",
        "--progress",
        "false",
        "--topic",
        &address,
    ];
    let spawn_named = |name: &str, piped: bool| {
        let out = || if piped { Stdio::piped() } else { Stdio::null() };
        bin()
            .args(args)
            .env("DATABASE_URL", with_name(&url, name))
            .stdin(Stdio::null())
            .stdout(out())
            .stderr(out())
            .spawn()
            .expect("spawn replay")
    };
    let mut a = spawn_named("kreplay_a", false);
    let b = spawn_named("kreplay_b", true);
    let in_flight = kill_inside_second_partition(&client, "kreplay_a", &mut a).await;

    let out = tokio::task::spawn_blocking(move || b.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay b failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(report["finished_elsewhere"], false, "b outlived a: it passes the barrier: {report}");
    assert!(report["catch_up"].is_object(), "{report}");
    let replayed_by_b = report["partitions_replayed"].as_u64().unwrap();
    assert!(replayed_by_b < 8, "a wrote some partitions before it was killed: {report}");
    assert!(replayed_by_b >= 2, "b folded its share and a's partition in flight ({in_flight}): {report}");
    let check = verify_expected(&url, &V4).await;
    assert_eq!(check.diffs, 0, "{}", check.render());
    let stored: Vec<i64> = readmodel::offsets(&client, "v4").await.unwrap().iter().map(|p| p.tx).collect();
    let high: Vec<i64> = topic.watermarks().unwrap().into_iter().map(|(_, h)| h).collect();
    assert_eq!(stored, high);
}
