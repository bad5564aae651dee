//! A rebuild into a fresh Redis from a snapshot at a cut plus the log after it equals a replay
//! from offset 0, including an event held at the cut (its predecessor committed after it).

use lab::bank::V4;
use redisstore::{Layout, RedisReplayConfig, RedisStore};

use crate::support::*;

#[tokio::test]
async fn a_rebuild_from_a_snapshot_equals_a_replay_from_offset_0() {
    let (url, client) = seeded_log(20_000, 800, 16).await;
    // Aggregate 1's next version but one, committed before the cut; the one between after it:
    // at the cut the fold holds it, and only the snapshot remembers it.
    let m = last_version(&client, 1).await;
    deposit(&client, 1, m + 2).await;
    let cut = eventlog::boundary(&client).await.unwrap();
    deposit(&client, 1, m + 1).await;
    for id in 2..=200 {
        let v = last_version(&client, id).await;
        deposit(&client, id, v + 1).await;
    }

    let snap = redisstore::snapshot::take(&url, &V4, cut).await.unwrap();
    assert_eq!(snap.held, 1, "the event held at the cut is in the snapshot");
    assert!(snap.rows > 700 && snap.bytes > 0, "{snap:?}");
    assert_eq!(redisstore::snapshot::cuts(&client, "v4").await.unwrap(), vec![cut]);

    let (full_redis, cut_redis) = (redis(), redis());
    let full = redisstore::replay(&RedisReplayConfig::new(&url, &full_redis.url(), V4)).await.unwrap();
    let from_cut = redisstore::replay(&RedisReplayConfig {
        from_snapshot: Some(cut),
        until: Some(full.boundary),
        ..RedisReplayConfig::new(&url, &cut_redis.url(), V4)
    })
    .await
    .unwrap();
    assert_eq!(from_cut.boundary, full.boundary);
    assert_eq!(from_cut.events, 200, "the rebuild read the log after the cut only");
    assert_eq!(full.events, snap.events + 200);

    let layout = Layout::of(&V4).unwrap();
    let mut a = RedisStore::open(&full_redis.url(), layout.clone(), fold::IdKind::Bigint).await.unwrap();
    let mut b = RedisStore::open(&cut_redis.url(), layout, fold::IdKind::Bigint).await.unwrap();
    let (rows_a, rows_b) = (a.load_all_rows(&V4).await.unwrap(), b.load_all_rows(&V4).await.unwrap());
    assert_eq!(rows_a.len(), rows_b.len());
    assert!(rows_a == rows_b, "the rebuild from the snapshot differs from the replay from offset 0");
    let one = rows_b.iter().find(|r| r.aggregate_id == fold::AggregateId::from(1)).unwrap();
    assert_eq!(one.aggregate_version, m + 2, "the event held at the cut was applied");
    let verdict = redisstore::verify(&client, &mut b, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
}

#[tokio::test]
async fn a_snapshot_cut_above_the_boundary_is_refused() {
    let (url, client) = seeded_log(2_000, 100, 17).await;
    let boundary = eventlog::boundary(&client).await.unwrap();
    let err = redisstore::snapshot::take(&url, &V4, boundary + 1_000).await.unwrap_err().to_string();
    assert!(err.contains("above the log's boundary"), "{err}");
}
