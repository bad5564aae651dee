//! Test harness: a fresh database per test with a small log, and helpers to write events the
//! way concurrent writers do.

use eventlog::NewEvent;
use fold::{AnyProjection, Projection, Row};
use tokio_postgres::{Client, GenericClient};

/// A fresh database with an empty log of `partitions` partitions (indexes built) and the read
/// schema; returns its URL and a client.
pub async fn fresh_log(partitions: u32) -> (String, Client) {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.expect("connect");
    eventlog::create(&mut client, partitions, fold::IdKind::Bigint).await.expect("create log");
    eventlog::ensure_indexes(&client).await.expect("log indexes");
    readmodel::ensure_schema(&mut client).await.expect("read schema");
    (url, client)
}

/// Registers `projection` as building with its primary key, as `run_live` does.
pub async fn prepare_version(client: &mut Client, projection: &dyn AnyProjection) {
    let partitions = eventlog::partition_count(client).await.unwrap();
    readmodel::register(client, projection, readmodel::State::Building, partitions).await.unwrap();
    readmodel::add_primary_key(client, projection).await.unwrap();
}

pub fn opened(aggregate_id: i64) -> NewEvent {
    event(aggregate_id, 1, "account_opened", format!(r#"{{"owner":"c-{aggregate_id}","currency":"EUR"}}"#))
}

pub fn deposited(aggregate_id: i64, version: i32, cents: i64) -> NewEvent {
    event(aggregate_id, version, "deposited", format!(r#"{{"amount_cents":{cents},"channel":"sepa"}}"#))
}

pub fn event(aggregate_id: i64, version: i32, event_type: &str, payload: String) -> NewEvent {
    NewEvent {
        aggregate_id: aggregate_id.into(),
        version,
        event_type: event_type.into(),
        ts: chrono::Utc::now(),
        payload,
    }
}

/// Appends events in one committed transaction; returns their global_seqs.
pub async fn append(client: &mut Client, events: &[NewEvent]) -> Vec<i64> {
    let tx = client.transaction().await.unwrap();
    let mut seqs = Vec::new();
    for e in events {
        seqs.push(eventlog::append_event(&tx, e).await.unwrap());
    }
    tx.commit().await.unwrap();
    seqs
}

/// The stored row of one aggregate.
pub async fn row<C: GenericClient, P: Projection>(client: &C, projection: &P, id: i64) -> Option<Row<P::State>> {
    let id = fold::AggregateId::from(id);
    readmodel::load_rows(client, projection, std::slice::from_ref(&id)).await.unwrap().remove(&id)
}

/// Steps a tailer until it has applied everything committed when the call started.
pub async fn drain<P: Projection>(tailer: &mut projector::Tailer<P>, client: &mut Client) -> usize {
    let target = eventlog::snapshot_xmax(client).await.unwrap();
    let mut applied = 0;
    for _ in 0..100_000 {
        let out = tailer.step(client).await.expect("tail step");
        applied += out.applied;
        if tailer.reached(target) {
            return applied;
        }
    }
    panic!("tailer did not reach {target} in 100000 steps");
}

/// Steps a tailer until it has read everything below the current boundary (which a running
/// writer may hold back).
pub async fn drain_available<P: Projection>(tailer: &mut projector::Tailer<P>, client: &mut Client) -> usize {
    let mut applied = 0;
    for _ in 0..10_000 {
        let out = tailer.step(client).await.expect("tail step");
        applied += out.applied;
        if out.drained && out.read == 0 {
            return applied;
        }
    }
    panic!("tailer did not drain in 10000 steps");
}

/// Appends `aggregates` opened accounts and `deposits` deposits each, with SQL, in one go.
pub async fn bulk_events(client: &Client, aggregates: i64, deposits: i32) {
    client
        .batch_execute(&format!(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT a, 1, 'account_opened', now(), jsonb_build_object('owner', 'c-' || a, 'currency', 'EUR') \
             FROM generate_series(1, {aggregates}) a; \
             INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT a, v, 'deposited', now(), jsonb_build_object('amount_cents', v * 10 + a) \
             FROM generate_series(1, {aggregates}) a, generate_series(2, {last}) v ORDER BY v, a;",
            last = deposits + 1
        ))
        .await
        .unwrap();
}

/// Polls `done` every 20 ms until it holds, failing with `what` after `within`.
pub async fn wait_for<F, Fut>(within: std::time::Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
