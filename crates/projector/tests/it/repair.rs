//! Single-aggregate repair: one row re-folded from its stream, every other row untouched.

use lab::bank::V4;
use projector::{TailOptions, Tailer};

use crate::support::*;

async fn checksum_except(client: &tokio_postgres::Client, id: i64) -> (i64, String) {
    let row = client
        .query_one(
            "SELECT count(*), md5(string_agg(md5(a::TEXT), '' ORDER BY a.aggregate_id)) \
             FROM read.accounts_v4 a WHERE a.aggregate_id <> $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn repair_refolds_one_aggregate_and_leaves_every_other_row_byte_for_byte() {
    let (_url, mut client) = fresh_log(4).await;
    prepare_version(&mut client, &V4).await;
    bulk_events(&client, 500, 4).await;
    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(1_000)).await.unwrap();
    drain(&mut tailer, &mut client).await;
    let good = row(&client, &V4, 42).await.unwrap();

    client.execute("UPDATE read.accounts_v4 SET balance = balance + 999 WHERE aggregate_id = 42", &[]).await.unwrap();
    let others_before = checksum_except(&client, 42).await;

    let report = projector::repair(&mut client, &V4, &42.into()).await.unwrap();
    assert!(report.changed, "the corrupted row differs from its re-fold");
    assert_eq!(report.events_folded, 5);
    assert_eq!(report.before.as_ref().unwrap()["balance"].as_i64(), Some(good.state.balance + 999));
    assert_eq!(row(&client, &V4, 42).await.unwrap(), good, "the row equals its fold again");
    assert_eq!(checksum_except(&client, 42).await, others_before, "no other row changed");

    let again = projector::repair(&mut client, &V4, &42.into()).await.unwrap();
    assert!(!again.changed, "repairing a correct row writes nothing");
    let unknown = projector::repair(&mut client, &V4, &999_999.into()).await.unwrap_err();
    assert!(unknown.to_string().contains("999999"), "{unknown}");
}

#[tokio::test]
async fn repairing_an_aggregate_whose_history_is_bad_names_the_event_and_writes_nothing() {
    let (_url, mut client) = fresh_log(4).await;
    prepare_version(&mut client, &V4).await;
    append(&mut client, &[opened(7)]).await;
    let bad_seq = append(&mut client, &[event(7, 2, "deposited", r#"{"cents":"ten"}"#.into())]).await[0];

    let err = projector::repair(&mut client, &V4, &7.into()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("aggregate 7") && msg.contains(&format!("global_seq {bad_seq}")), "{msg}");
    assert!(msg.contains("malformed deposited") && !msg.contains("4294967295"), "{msg}");
    assert!(row(&client, &V4, 7).await.is_none(), "a failed repair writes no row");
}
