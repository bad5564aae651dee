//! Test harness: a seeded log in a fresh PostgreSQL database, a throwaway `redis-server`.

use redisstore::Throwaway;
use tokio_postgres::{Client, GenericClient};

/// A fresh database with a seeded bank log (transfers included: some version n+1 stored
/// before n), its URL and a client.
pub async fn seeded_log(events: u64, aggregates: u64, seed: u64) -> (String, Client) {
    let url = pgharness::throwaway().fresh_database();
    let mut config = lab::seed::SeedConfig::new(events, aggregates, seed);
    config.partitions = 8;
    config.chunk_events = 5_000;
    lab::seed::run(&url, config).await.expect("seed");
    let mut client = eventlog::connect(&url).await.expect("connect");
    readmodel::ensure_schema(&mut client).await.expect("read schema");
    (url, client)
}

/// A throwaway redis-server (password, AOF with fsync always), killed on drop.
pub fn redis() -> Throwaway {
    Throwaway::start().expect("start redis-server")
}

/// Appends, in one transaction, a deposit at version `version` of `aggregate`.
pub async fn deposit<C: GenericClient>(client: &C, aggregate: i64, version: i32) {
    client
        .execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             VALUES ($1, $2, 'deposited', now(), jsonb_build_object('amount_cents', 700 + $2, 'channel', 'sepa'))",
            &[&aggregate, &version],
        )
        .await
        .unwrap();
}

pub async fn last_version(client: &Client, aggregate: i64) -> i32 {
    client.query_one("SELECT max(version) FROM log.events WHERE aggregate_id = $1", &[&aggregate]).await.unwrap().get(0)
}
