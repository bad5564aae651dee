//! Test harness: a seeded log in a fresh PostgreSQL database, a throwaway `redis-server`.

use redisstore::Throwaway;
use tokio_postgres::Client;

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
