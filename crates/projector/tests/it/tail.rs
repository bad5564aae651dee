//! The tail path: gap-safe reading, the version guard, held events, bad input, overlap.

use lab::bank::V4;
use projector::{TailOptions, Tailer};

use crate::support::*;

#[tokio::test]
async fn a_transaction_that_commits_late_is_still_applied_once_in_order() {
    let (url, mut client) = fresh_log(4).await;
    prepare_version(&mut client, &V4).await;
    append(&mut client, &[opened(1)]).await;

    // Writer A takes its xid and global_seq first and stays open.
    let mut a = eventlog::connect(&url).await.unwrap();
    let a_tx = a.transaction().await.unwrap();
    let late_seq = eventlog::append_event(&a_tx, &deposited(1, 2, 700)).await.unwrap();
    // Writer B writes later sequence values and commits first.
    let mut b = eventlog::connect(&url).await.unwrap();
    let b_seqs = append(&mut b, &[opened(2), deposited(2, 2, 5)]).await;
    assert!(b_seqs[0] > late_seq, "B's sequence values come after A's");

    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(100)).await.unwrap();
    drain_available(&mut tailer, &mut client).await;
    assert_eq!(row(&client, &V4, 1).await.unwrap().aggregate_version, 1, "A has not committed: only version 1");
    assert!(row(&client, &V4, 2).await.is_none(), "B sits above the boundary while A runs: not read yet");

    a_tx.commit().await.unwrap();
    drain(&mut tailer, &mut client).await;
    let one = row(&client, &V4, 1).await.unwrap();
    assert_eq!((one.aggregate_version, one.state.balance, one.applied_seq), (2, 700, late_seq));
    let two = row(&client, &V4, 2).await.unwrap();
    assert_eq!((two.aggregate_version, two.state.balance), (2, 5));
    let info = readmodel::version_info(&client, "v4").await.unwrap();
    assert_eq!(info.events_applied, 4, "every event applied exactly once");
}

#[tokio::test]
async fn a_version_read_before_its_predecessor_is_held_across_a_crash() {
    let (url, mut client) = fresh_log(4).await;
    prepare_version(&mut client, &V4).await;
    // B takes the smaller xid, A the larger; A commits version 1 of aggregate 10, then B writes
    // version 2 and commits: in (tx_id, seq) order version 2 comes first.
    let mut b = eventlog::connect(&url).await.unwrap();
    let b_tx = b.transaction().await.unwrap();
    eventlog::append_event(&b_tx, &opened(20)).await.unwrap();
    let mut a = eventlog::connect(&url).await.unwrap();
    append(&mut a, &[opened(10)]).await;
    eventlog::append_event(&b_tx, &deposited(10, 2, 900)).await.unwrap();
    b_tx.commit().await.unwrap();

    // Batch size 1: step until version 2 has been read and held, then "crash" (drop the tailer).
    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(1)).await.unwrap();
    let mut steps = 0;
    while tailer.held_count() == 0 {
        tailer.step(&mut client).await.unwrap();
        steps += 1;
        assert!(steps < 100, "version 2 of aggregate 10 was never held");
    }
    assert!(row(&client, &V4, 10).await.is_none(), "version 1 not applied yet");
    drop(tailer);

    let mut restarted = Tailer::open(&client, V4, TailOptions::batch(1)).await.unwrap();
    assert_eq!(restarted.held_count(), 1, "the held event was persisted with its batch");
    drain(&mut restarted, &mut client).await;
    let ten = row(&client, &V4, 10).await.unwrap();
    assert_eq!((ten.aggregate_version, ten.state.balance), (2, 900));
    assert_eq!(restarted.held_count(), 0);
    let held_rows: i64 = client.query_one("SELECT count(*) FROM read.held_events", &[]).await.unwrap().get(0);
    assert_eq!(held_rows, 0, "released events leave the held table");
}

#[tokio::test]
async fn a_bad_event_stops_the_batch_naming_it_and_commits_nothing() {
    let (_url, mut client) = fresh_log(4).await;
    prepare_version(&mut client, &V4).await;
    append(&mut client, &[opened(1), deposited(1, 2, 10)]).await;
    // A payload its decoder cannot read (an unknown type would be skipped: see skip.rs).
    let bad_seq = append(&mut client, &[event(2, 1, "deposited", r#"{"cents":"ten"}"#.into())]).await[0];

    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(100)).await.unwrap();
    let err = tailer.step(&mut client).await.expect_err("a malformed event must stop the projector");
    let msg = err.to_string();
    assert!(msg.contains(&format!("global_seq {bad_seq}")), "{msg}");
    assert!(msg.contains("aggregate 2") && msg.contains("partition") && msg.contains("malformed deposited"), "{msg}");
    assert!(row(&client, &V4, 1).await.is_none(), "nothing of the failed batch is committed");
    let offsets = readmodel::offsets(&client, "v4").await.unwrap();
    assert!(offsets.iter().all(|p| *p == eventlog::Position::START), "positions did not move: {offsets:?}");

    // With quarantine: the bad event is dead-lettered, its aggregate quarantined, later events
    // of it held, and everything else applied.
    append(&mut client, &[deposited(2, 2, 99)]).await;
    let mut quarantining =
        Tailer::open(&client, V4, TailOptions { quarantine: true, ..TailOptions::batch(100) }).await.unwrap();
    drain(&mut quarantining, &mut client).await;
    assert_eq!(row(&client, &V4, 1).await.unwrap().state.balance, 10);
    assert!(row(&client, &V4, 2).await.is_none());
    let dead: i64 =
        client.query_one("SELECT global_seq FROM read.dead_letters WHERE version = 'v4'", &[]).await.unwrap().get(0);
    assert_eq!(dead, bad_seq);
    let quarantined: String = client
        .query_one("SELECT aggregate_id FROM read.quarantined_aggregates WHERE version = 'v4'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(quarantined, "2");
    assert_eq!(quarantining.held_count(), 1, "version 2 of the quarantined aggregate waits");
}

#[tokio::test]
async fn replaying_an_overlap_of_ten_thousand_events_changes_nothing() {
    let (_url, mut client) = fresh_log(4).await;
    prepare_version(&mut client, &V4).await;
    bulk_events(&client, 2_000, 5).await;
    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(1_000)).await.unwrap();
    assert_eq!(drain(&mut tailer, &mut client).await, 12_000);
    let before = readmodel::table_checksum(&client, &V4).await.unwrap();
    let info_before = readmodel::version_info(&client, "v4").await.unwrap();

    let mut overlap =
        Tailer::open(&client, V4, TailOptions { from_offset: Some(0), ..TailOptions::batch(1_000) }).await.unwrap();
    assert_eq!(drain(&mut overlap, &mut client).await, 0, "12k re-read events are all no-ops");
    assert_eq!(readmodel::table_checksum(&client, &V4).await.unwrap(), before);
    let info_after = readmodel::version_info(&client, "v4").await.unwrap();
    for (after, before) in info_after.positions.iter().zip(&info_before.positions) {
        assert!(after >= before, "positions never move backwards: {after} < {before}");
    }
    assert_eq!(info_after.events_applied, 12_000);
}
