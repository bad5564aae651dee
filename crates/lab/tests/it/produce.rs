//! The producer: concurrent appends keep the expected state equal to a fold of the log.

use std::time::Duration;

use lab::ProduceConfig;

use crate::support::{assert_same, expected, hand_fold, seeded, small};

#[tokio::test]
async fn concurrent_writers_keep_the_expected_state_true() {
    let (url, client) = seeded(small(5)).await;
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let cfg = ProduceConfig {
        writers: 4,
        transfer_ratio: 0.2,
        new_aggregate_ratio: 0.05,
        ..ProduceConfig::new(1_500.0, Some(Duration::from_secs(2)), 9)
    };
    let report = lab::produce::run(&url, cfg, stop).await.expect("produce");
    assert!(report.events > 300 && report.transfers > 0 && report.new_aggregates > 0, "{report:?}");
    assert!(report.events_per_s < 2_000.0, "paced near the rate: {report:?}");

    let total: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0);
    assert_eq!(total as u64, 20_000 + report.events);
    let live_ts: i64 = client
        .query_one("SELECT count(*) FROM log.events WHERE global_seq > 20000 AND ts > now() - interval '1 hour'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live_ts as u64, report.events, "live events are stamped now");
    let pairs: i64 = client
        .query_one(
            "SELECT count(*) FROM log.events AS s JOIN log.events AS r ON r.tx_id = s.tx_id \
             AND r.type = 'transfer_received' AND r.payload->>'transfer_id' = s.payload->>'transfer_id' \
             WHERE s.type = 'transfer_sent' AND s.global_seq > 20000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pairs as u64, report.transfers, "each transfer writes both sides in one transaction");
    assert_same(&expected(&client).await, &hand_fold(&client).await);
    let inverted = lab::verify::inverted_versions(&client).await.unwrap();
    println!("{} ({inverted} versions precede their predecessor in (tx_id, global_seq) order)", report.render());
    // Each run makes a couple of dozen; none would mean the transfer path no longer takes its
    // transaction id before reading the receiver.
    assert!(inverted > 0, "transfers put some version n+1 before version n in (tx_id, global_seq) order");
}

#[tokio::test]
async fn stops_on_the_signal() {
    let (url, _client) = seeded(small(6)).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(async move {
        lab::produce::run(&url, ProduceConfig { writers: 2, ..ProduceConfig::new(200.0, None, 1) }, stop).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), producer).await.expect("stops").unwrap().unwrap();
    assert!(report.events > 0, "{report:?}");
}
