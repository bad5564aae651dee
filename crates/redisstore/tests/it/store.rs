//! Replay into Redis and verify; the version guard and the fencing token inside the script;
//! a Redis restart.

use fold::Projection;
use lab::bank::V4;
use redisstore::{Layout, RedisReplayConfig, RedisStore, Written};

use crate::support::*;

async fn open_store(redis: &redisstore::Throwaway) -> RedisStore {
    RedisStore::open(&redis.url(), Layout::of(&V4).unwrap(), fold::IdKind::Bigint).await.unwrap()
}

#[tokio::test]
async fn a_replay_into_redis_verifies_with_zero_diffs_and_equals_the_postgres_replay() {
    let (url, client) = seeded_log(30_000, 1_000, 11).await;
    let redis = redis();
    let report = redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    assert_eq!(report.events, 30_000, "every event below the boundary was read once");
    assert_eq!(report.partitions_replayed, 8);
    assert!(report.rows_written > 900, "rows written: {}", report.rows_written);
    assert_eq!(report.rows_skipped, 0);

    let mut store = open_store(&redis).await;
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
    assert_eq!(verdict.events_folded, 30_000);
    assert_eq!(verdict.stored_rows, report.rows_written);

    // The same log replayed into PostgreSQL gives the same rows, value for value.
    let mut config = projector::ReplayConfig::new(&url, V4);
    config.workers = 2;
    let (tx, stop) = tokio::sync::watch::channel(false);
    projector::replay(&config, stop).await.unwrap();
    drop(tx);
    let in_pg = readmodel::load_all_rows(&client, &V4).await.unwrap();
    let in_redis = store.load_all_rows(&V4).await.unwrap();
    assert_eq!(in_redis.len(), in_pg.len());
    assert!(in_redis == in_pg, "the Redis rows differ from the PostgreSQL replay's");

    // A second run finds every partition at the boundary and writes nothing.
    let again = redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    assert_eq!(again.partitions_replayed, 0);
    assert_eq!(again.boundary, report.boundary, "a rerun folds below the same boundary");
}

#[tokio::test]
async fn verify_names_a_damaged_row() {
    let (url, client) = seeded_log(10_000, 500, 12).await;
    let redis = redis();
    redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    let mut store = open_store(&redis).await;
    let victim = store.load_all_rows(&V4).await.unwrap()[17].aggregate_id.clone();
    store.set_field(&victim, "balance", "-1").await.unwrap();
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 1, "{}", verdict.render());
    assert_eq!(verdict.sample[0].aggregate_id, victim);
    assert!(!verdict.ok);
}

#[tokio::test]
async fn an_older_version_never_overwrites_a_newer_one() {
    let (url, client) = seeded_log(10_000, 300, 13).await;
    let redis = redis();
    redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    let mut store = open_store(&redis).await;
    let rows = store.load_all_rows(&V4).await.unwrap();
    let newest = rows.iter().max_by_key(|r| r.aggregate_version).unwrap().clone();
    assert!(newest.aggregate_version > 2);
    // The same aggregate folded only up to an earlier version.
    let events: Vec<_> =
        eventlog::aggregate_events(&client, &newest.aggregate_id, chrono::DateTime::<chrono::Utc>::MAX_UTC, i64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|r| r.decode(&V4).unwrap())
            .filter(|e| e.meta.aggregate_version < newest.aggregate_version)
            .collect();
    let older = fold::fold_from(&V4, None, events).unwrap().row.unwrap();
    assert!(older.aggregate_version < newest.aggregate_version);
    assert_ne!(older.state, newest.state);
    let token = i64::MAX / 2;
    let out = store.write_batch(&V4, 0, token, None, std::slice::from_ref(&older)).await.unwrap();
    assert_eq!(out, Written::Applied { written: 0, skipped: 1 });
    assert_eq!(store.row(&V4, &newest.aggregate_id).await.unwrap(), Some(newest.clone()), "the row moved back");
    // An equal version is a no-op too; a newer one is written.
    let out = store.write_batch(&V4, 0, token, None, std::slice::from_ref(&newest)).await.unwrap();
    assert_eq!(out, Written::Applied { written: 0, skipped: 1 });
    let mut newer = newest.clone();
    newer.aggregate_version += 1;
    newer.applied_seq += 1;
    let out = store.write_batch(&V4, 0, token, None, std::slice::from_ref(&newer)).await.unwrap();
    assert_eq!(out, Written::Applied { written: 1, skipped: 0 });
    assert_eq!(store.row(&V4, &newest.aggregate_id).await.unwrap(), Some(newer));
}

#[tokio::test]
async fn a_batch_with_a_lower_fencing_token_is_refused_and_changes_nothing() {
    let (url, mut client) = seeded_log(10_000, 300, 14).await;
    let redis = redis();
    let mut store = open_store(&redis).await;
    redisstore::replay::ensure_tokens(&mut client).await.unwrap();
    // A worker claims partition 3 and folds it, then stalls (a "zombie"): its session ends,
    // which releases its claim, and a successor claims the partition.
    let zombie_session = eventlog::connect(&url).await.unwrap();
    let zombie =
        redisstore::replay::claim(&zombie_session, &mut store, V4.name(), 3).await.unwrap().expect("partition 3 free");
    let boundary = eventlog::boundary(&client).await.unwrap();
    let (_, batch) = redisstore::replay::fold_partition(&client, &url, &V4, 3, boundary, None, None).await.unwrap();
    let second = eventlog::connect(&url).await.unwrap();
    assert!(
        redisstore::replay::claim(&second, &mut store, V4.name(), 3).await.unwrap().is_none(),
        "the zombie still holds the claim"
    );
    drop(zombie_session);
    // The lock goes when the server has ended the zombie's session: poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let successor = loop {
        if let Some(c) = redisstore::replay::claim(&second, &mut store, V4.name(), 3).await.unwrap() {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "the zombie's claim was never released");
        tokio::task::yield_now().await;
    };
    assert!(successor.token > zombie.token);
    // The successor writes a part of the partition's rows at a first position.
    let first = eventlog::Position { tx: 1, seq: 1 };
    let some = &batch.rows[..batch.rows.len() / 2];
    let out = store.write_batch(&V4, 3, successor.token, Some(first), some).await.unwrap();
    assert_eq!(out, Written::Applied { written: some.len() as u64, skipped: 0 });
    let keys_before = store.row_keys().await.unwrap().len();
    let positions_before = store.positions(8).await.unwrap();

    // The zombie resumes and writes its whole batch with its old token: refused, nothing moved.
    let out = store.write_batch(&V4, 3, zombie.token, Some(batch.position), &batch.rows).await.unwrap();
    assert_eq!(out, Written::Fenced { stored: successor.token });
    assert_eq!(store.row_keys().await.unwrap().len(), keys_before, "a fenced batch wrote rows");
    assert_eq!(store.positions(8).await.unwrap(), positions_before, "a fenced batch moved the position");
    // Raising the fence with the old token is refused too.
    assert!(matches!(store.raise_fence(3, zombie.token).await, Err(redisstore::Error::Fenced { partition: 3, .. })));
    // The successor's token still writes.
    let out = store.write_batch(&V4, 3, successor.token, Some(batch.position), &batch.rows).await.unwrap();
    assert!(matches!(out, Written::Applied { .. }));
    assert_eq!(store.positions(8).await.unwrap()[3], batch.position);
}

#[tokio::test]
async fn rows_and_positions_survive_a_redis_restart() {
    let (url, client) = seeded_log(20_000, 800, 15).await;
    let mut redis = redis();
    let report = redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    let mut store = open_store(&redis).await;
    let rows = store.load_all_rows(&V4).await.unwrap();
    let positions = store.positions(8).await.unwrap();
    drop(store);

    redis.restart().unwrap();
    let mut store = open_store(&redis).await;
    assert_eq!(store.positions(8).await.unwrap(), positions, "positions lost in the restart");
    assert!(positions.iter().all(|p| *p == eventlog::Position::boundary(report.boundary)));
    assert!(store.load_all_rows(&V4).await.unwrap() == rows, "rows lost or changed in the restart");
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
}

#[tokio::test]
async fn the_server_refuses_a_client_without_the_password() {
    let redis = redis();
    assert!(redisstore::server::ping(&redis.url()).is_ok());
    assert!(redisstore::server::ping(&redis.url_without_password()).is_err(), "no password, yet PING answered");
}
