//! Experiment 7 at test scale: one history in the event store and in two compacted topics.

use std::time::Duration;

use kafkalog::compaction::LogRow;
use kafkalog::Broker;
use lab::bank::V4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_loses_the_deltas_current_state_keeps_the_states_and_refuses_time_travel() {
    let url = pgharness::throwaway().fresh_database();
    let mut seed = lab::SeedConfig::new(6_000, 400, 42);
    seed.partitions = 2;
    lab::seed::run(&url, seed).await.unwrap();
    // (a) the event store: v4 replayed from it is the true state.
    let (_keep, stop) = tokio::sync::watch::channel(false);
    projector::replay(&projector::ReplayConfig::new(&url, V4), stop).await.unwrap();
    let client = eventlog::connect(&url).await.unwrap();
    let verified = lab::verify::against_expected(&client, &V4).await.unwrap();
    let store = LogRow {
        log: "event store".into(),
        diffs: verified.diffs,
        time_travel: true,
        time_travel_error: None,
        records_before: 6_000,
        records_after: 6_000,
        bytes_before: 0,
        bytes_after: 0,
    };
    let cluster = Broker::shared().log("exp7");
    let r = kafkalog::compaction::run(&url, &cluster, 2, V4, store, Duration::from_secs(90)).await.unwrap();
    assert_eq!(r.event_store_diffs, 0);
    assert_eq!(r.aggregates, 400);
    // (b) deltas: one record per key left, most aggregates' current state lost.
    let deltas = &r.rows[1];
    assert_eq!(deltas.records_before, 6_000);
    assert_eq!(deltas.records_after, 400);
    let single_event: i64 = client
        .query_one("SELECT count(*) FROM (SELECT 1 FROM log.events GROUP BY aggregate_id HAVING count(*) = 1) s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        r.delta_diffs_after_compaction,
        400 - single_event as u64,
        "every aggregate with more than one event is wrong (its last event alone is held by the guard)"
    );
    assert!(r.delta_diffs_after_compaction > 0);
    assert!(!deltas.time_travel);
    let refusal = deltas.time_travel_error.as_deref().unwrap();
    assert!(refusal.contains("lowest offset from which it is complete"), "{refusal}");
    // (c) state-carrying events: the latest record per key is the current state.
    assert_eq!(r.state_diffs_after_compaction, 0);
    assert_eq!(r.rows[2].records_after, 400);
    assert!(!r.rows[2].time_travel);
    assert!(r.time_travel_refused);
    assert!(deltas.bytes_after < deltas.bytes_before && r.rows[2].bytes_after < r.rows[2].bytes_before);
}
