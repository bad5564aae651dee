//! Catch-up into Redis: events held across the bulk boundary and across two tail runs are
//! stored with the positions that pass them, and applied once their predecessor comes.

use fold::AggregateId;
use lab::bank::V4;
use redisstore::{Layout, RedisReplayConfig, RedisStore, RedisTailConfig};

use crate::support::*;

fn tail_config(url: &str, redis: &str, until: Option<i64>) -> RedisTailConfig<V4> {
    RedisTailConfig { database_url: url.into(), redis_url: redis.into(), projection: V4, batch: 500, until }
}

async fn held_total(store: &mut RedisStore) -> usize {
    let mut n = 0;
    for p in 0..8 {
        n += store.held(p).await.unwrap().len();
    }
    n
}

#[tokio::test]
async fn an_event_held_at_the_bulk_boundary_is_stored_and_applied_by_the_catch_up() {
    let (url, client) = seeded_log(10_000, 300, 21).await;
    let redis = redis();
    let mut store = RedisStore::open(&redis.url(), Layout::of(&V4).unwrap(), fold::IdKind::Bigint).await.unwrap();
    let m = last_version(&client, 1).await;
    // Version m+2 commits first; m+1's transaction is still open when the bulk boundary is
    // fixed, so m+2 is below it and m+1 above it.
    deposit(&client, 1, m + 2).await;
    let mut writer = eventlog::connect(&url).await.unwrap();
    let open = writer.transaction().await.unwrap();
    deposit(&open, 1, m + 1).await;
    let bulk = redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    assert_eq!(bulk.held_at_end, 1, "{bulk:?}");
    assert_eq!(held_total(&mut store).await, 1, "the held event is stored with its partition");
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
    open.commit().await.unwrap();
    for id in 2..=50 {
        let v = last_version(&client, id).await;
        deposit(&client, id, v + 1).await;
    }

    let tail = redisstore::catch_up(&tail_config(&url, &redis.url(), None)).await.unwrap();
    assert_eq!(tail.events_applied, 2 + 49, "{tail:?}");
    assert_eq!(tail.held_at_end, 0);
    assert_eq!(held_total(&mut store).await, 0, "the applied event is removed from the held ones");
    let one = store.row(&V4, &AggregateId::from(1)).await.unwrap().unwrap();
    assert_eq!(one.aggregate_version, m + 2);
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
    // Nothing is applied twice: a second catch-up finds nothing to do.
    let again = redisstore::catch_up(&tail_config(&url, &redis.url(), None)).await.unwrap();
    assert_eq!(again.events_applied, 0, "{again:?}");
}

#[tokio::test]
async fn an_event_held_by_one_tail_run_survives_until_the_next_applies_it() {
    let (url, client) = seeded_log(10_000, 300, 22).await;
    let redis = redis();
    let mut store = RedisStore::open(&redis.url(), Layout::of(&V4).unwrap(), fold::IdKind::Bigint).await.unwrap();
    redisstore::replay(&RedisReplayConfig::new(&url, &redis.url(), V4)).await.unwrap();
    let m = last_version(&client, 1).await;
    let v2 = last_version(&client, 2).await;
    // T1 takes the smaller xid (writing aggregate 2 first), T2 commits version m+1 of
    // aggregate 1, then T1 writes m+2: in (tx_id, seq) order m+2 comes before m+1.
    let mut t1_client = eventlog::connect(&url).await.unwrap();
    let t1 = t1_client.transaction().await.unwrap();
    deposit(&t1, 2, v2 + 1).await;
    let t2_xid: i64 = {
        let mut c = eventlog::connect(&url).await.unwrap();
        let t2 = c.transaction().await.unwrap();
        deposit(&t2, 1, m + 1).await;
        let xid: i64 = t2.query_one("SELECT pg_current_xact_id()::TEXT::BIGINT", &[]).await.unwrap().get(0);
        t2.commit().await.unwrap();
        xid
    };
    deposit(&t1, 1, m + 2).await;
    t1.commit().await.unwrap();

    // The first run stops below T2: it reads T1's events only, holds m+2 and stores it.
    let first = redisstore::catch_up(&tail_config(&url, &redis.url(), Some(t2_xid))).await.unwrap();
    assert_eq!(first.events_applied, 1, "aggregate 2's deposit: {first:?}");
    assert_eq!(first.held_at_end, 1);
    assert_eq!(held_total(&mut store).await, 1);
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
    assert_eq!(store.row(&V4, &AggregateId::from(1)).await.unwrap().unwrap().aggregate_version, m);

    // A new run (a restart) loads the held event and applies it after m+1.
    let second = redisstore::catch_up(&tail_config(&url, &redis.url(), None)).await.unwrap();
    assert_eq!(second.events_applied, 2, "{second:?}");
    assert_eq!(held_total(&mut store).await, 0);
    assert_eq!(store.row(&V4, &AggregateId::from(1)).await.unwrap().unwrap().aggregate_version, m + 2);
    let verdict = redisstore::verify(&client, &mut store, &V4).await.unwrap();
    assert_eq!(verdict.diffs, 0, "{}", verdict.render());
}
