//! The topic as the projector's log: the mirror, the bulk replay, catch-up, time travel.

use std::time::Duration;

use kafkalog::murmur2::partition_of;
use kafkalog::{history, mirror, read_partition, Broker, KafkaReplayConfig, MirrorConfig};
use lab::bank::V4;
use tokio::sync::watch;

async fn seeded(events: u64, aggregates: u64, partitions: u32) -> String {
    let url = pgharness::throwaway().fresh_database();
    let mut config = lab::SeedConfig::new(events, aggregates, 42);
    config.partitions = partitions;
    config.chunk_events = events / 3 + 1;
    lab::seed::run(&url, config).await.expect("seed");
    url
}

async fn events_in_log(url: &str) -> i64 {
    let client = eventlog::connect(url).await.unwrap();
    client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_the_topic_then_catch_up_equals_the_true_state() {
    let url = seeded(20_000, 2_000, 4).await;
    let log = Broker::shared().log("replay-catch-up");
    log.create(3, false).await.unwrap();
    let (_stop_tx, stop) = watch::channel(false);
    let mirrored = mirror(&MirrorConfig::new(&url, log.clone()), stop.clone()).await.unwrap();
    assert_eq!(mirrored.events, 20_000);

    // Every record sits where the Java client's partitioner would put it (librdkafka's
    // murmur2_random chose; this crate's murmur2 agrees), and every event is there once.
    let mut seqs = std::collections::HashSet::new();
    for p in 0..3 {
        for (offset, key, value) in read_partition(&log, p).await.unwrap() {
            assert_eq!(partition_of(&key, 3), p, "key {:?}", String::from_utf8_lossy(&key));
            let event =
                kafkalog::record::decode(p, offset, fold::IdKind::Bigint, Some(&key), Some(&value)).unwrap().event;
            assert!(seqs.insert(event.global_seq), "event {} twice", event.global_seq);
        }
    }
    assert_eq!(seqs.len(), 20_000);

    let bulk_only = KafkaReplayConfig { catch_up: false, ..KafkaReplayConfig::new(&url, log.clone(), V4) };
    let bulk = kafkalog::replay(&bulk_only, stop.clone()).await.unwrap();
    assert_eq!(bulk.bulk_events, 20_000);
    assert_eq!(bulk.partitions_replayed, 3);

    // More history arrives in the event store (four writers, transfers across aggregates) and
    // the mirror, resuming from its stored positions, adds exactly the new events.
    let mut produce = lab::produce::ProduceConfig::new(3_000.0, Some(Duration::from_secs(2)), 7);
    produce.writers = 2;
    lab::produce::run(&url, produce, stop.clone()).await.unwrap();
    let total = events_in_log(&url).await;
    assert!(total > 20_000);
    let more = mirror(&MirrorConfig::new(&url, log.clone()), stop.clone()).await.unwrap();
    assert_eq!(more.events as i64, total - 20_000, "the mirror resumes where it stopped");

    // The second run finds the bulk phase done and catches up to the high watermarks.
    let caught_up = kafkalog::replay(&KafkaReplayConfig::new(&url, log.clone(), V4), stop.clone()).await.unwrap();
    assert_eq!(caught_up.bulk_events, 0, "the bulk phase is not redone");
    let catch_up = caught_up.catch_up.expect("catch-up ran");
    assert_eq!(catch_up.events_read as i64, total - 20_000);
    let client = eventlog::connect(&url).await.unwrap();
    let report = lab::verify::against_expected(&client, &V4).await.unwrap();
    assert_eq!(report.diffs, 0, "{}", report.render());
    assert!(report.left_rows > 0 && report.left_rows == report.right_rows);
    // Positions are the next offsets to read: the high watermarks.
    let stored = readmodel::offsets(&client, "v4").await.unwrap();
    let high: Vec<i64> = log.watermarks().unwrap().into_iter().map(|(_, h)| h).collect();
    assert_eq!(stored.iter().map(|p| p.tx).collect::<Vec<_>>(), high);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_on_a_topic_folds_a_bounded_scan_and_refuses_a_compacted_partition() {
    let url = seeded(3_000, 100, 2).await;
    let (_stop_tx, stop) = watch::channel(false);
    let full = Broker::shared().log("history-full");
    full.create(2, false).await.unwrap();
    mirror(&MirrorConfig::new(&url, full.clone()), stop.clone()).await.unwrap();
    // An aggregate's history from the topic is its history in the event store.
    let client = eventlog::connect(&url).await.unwrap();
    let id: i64 = client
        .query_one("SELECT aggregate_id FROM log.events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let in_store: Vec<i32> = client
        .query("SELECT version FROM log.events WHERE aggregate_id = $1 ORDER BY version", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let history = history::aggregate_history(&full, &id.into(), i64::MAX - 1).await.unwrap();
    assert_eq!(history.events.iter().map(|e| e.version).collect::<Vec<_>>(), in_store);

    // A compacted topic: once the broker's sweep has run, the same question is refused.
    let compacted = Broker::shared().log("history-compacted");
    compacted.create(2, true).await.unwrap();
    mirror(&MirrorConfig::new(&url, compacted.clone()), stop.clone()).await.unwrap();
    let keys: i64 = client.query_one("SELECT count(DISTINCT aggregate_id) FROM log.events", &[]).await.unwrap().get(0);
    wait_compacted(&compacted, keys as u64).await;
    let e = history::aggregate_history(&compacted, &id.into(), i64::MAX - 1).await.unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, kafkalog::Error::Compacted { complete_from, .. } if complete_from > 0), "{message}");
    assert!(message.contains("lowest offset from which it is complete"), "{message}");
}

/// Waits (polling the topic, up to a minute) until the broker's compaction has left one record
/// per key.
async fn wait_compacted(log: &kafkalog::KafkaLog, keys: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut records = 0u64;
        for p in 0..log.partitions().unwrap() {
            records += read_partition(log, p).await.unwrap().len() as u64;
        }
        if records == keys {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "compaction left {records} records for {keys} keys after 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_keeps_its_log_and_a_cutover_never_mixes_two() {
    let url = seeded(3_000, 300, 2).await;
    let (_stop_tx, stop) = watch::channel(false);
    // v4 from the event store: the family's first version, so active.
    projector::replay(&projector::ReplayConfig::new(&url, V4), stop.clone()).await.unwrap();
    let log = Broker::shared().log("keeps-its-log");
    log.create(2, false).await.unwrap();
    mirror(&MirrorConfig::new(&url, log.clone()), stop.clone()).await.unwrap();

    // The same version from the topic: refused, naming both logs; nothing written.
    let e = kafkalog::replay(&KafkaReplayConfig::new(&url, log.clone(), V4), stop.clone()).await.unwrap_err();
    let message = e.to_string();
    assert!(message.contains("folded from postgres") && message.contains(&log.to_string()), "{message}");

    // v3 from the topic builds (ready), but a cutover to it would compare offsets with xids.
    kafkalog::replay(&KafkaReplayConfig::new(&url, log.clone(), lab::bank::V3), stop.clone()).await.unwrap();
    let mut client = eventlog::connect(&url).await.unwrap();
    assert_eq!(readmodel::log_source(&client, "v3").await.unwrap(), log.to_string());
    assert_eq!(readmodel::version_info(&client, "v3").await.unwrap().state, readmodel::State::Ready);
    let e = readmodel::cutover(&mut client, "v3").await.unwrap_err();
    assert!(matches!(e, readmodel::Error::MixedLogs { .. }), "{e}");
    assert_eq!(readmodel::version_info(&client, "v4").await.unwrap().state, readmodel::State::Active);
    // And verifying it against a fold of the event store is refused, not a false report.
    let e = projector::verify_against_log(&mut client, &lab::bank::V3).await.unwrap_err().to_string();
    assert!(e.contains("positions are offsets"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_from_before_log_sources_reads_as_the_event_store() {
    let url = seeded(2_000, 200, 2).await;
    let (_stop_tx, stop) = watch::channel(false);
    projector::replay(&projector::ReplayConfig::new(&url, V4), stop.clone()).await.unwrap();
    projector::replay(&projector::ReplayConfig::new(&url, lab::bank::V3), stop.clone()).await.unwrap();
    let mut client = eventlog::connect(&url).await.unwrap();
    // An older build's registry: no log_source column (the API and `cutover` do not migrate).
    client.batch_execute("ALTER TABLE read.projections DROP COLUMN log_source").await.unwrap();
    assert_eq!(readmodel::log_source(&client, "v3").await.unwrap(), readmodel::EVENT_STORE);
    let switched = readmodel::cutover(&mut client, "v3").await.unwrap();
    assert!(switched.switched);
    assert_eq!(readmodel::version_info(&client, "v3").await.unwrap().state, readmodel::State::Active);
}
