//! Adopting an app's own events table, online: a writer keeps inserting through the claim, the
//! history import and the feed, and never fails; the log ends with every row exactly once,
//! each stream's versions in order.

use std::time::Duration;

use eventlog::adopt::{self, AdoptSpec, QualifiedName};
use tokio_postgres::Client;

/// An app's table keyed by uuid (`orders` streams), with its own column names.
const UUID_APP: &str = "CREATE TABLE app_events (
    event_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id UUID NOT NULL,
    stream_version INT NOT NULL,
    event_type TEXT NOT NULL,
    data JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream_id, stream_version))";

fn uuid_spec() -> AdoptSpec {
    AdoptSpec::new(
        QualifiedName::parse("app_events").unwrap(),
        ["stream_id", "stream_version", "event_type", "data", "recorded_at"],
    )
}

/// The app's writer: appends the next version of stream `s` (of `streams`) in a transaction
/// of its own, round robin, until stopped; returns how many it wrote (every insert must work).
async fn app_writer(url: String, streams: i64, mut stop: tokio::sync::watch::Receiver<bool>) -> i64 {
    let client = eventlog::connect(&url).await.unwrap();
    let mut written = 0;
    let mut s = 0;
    while !*stop.borrow() {
        client
            .execute(
                "INSERT INTO app_events (stream_id, stream_version, event_type, data) \
                 SELECT md5('stream' || $1::BIGINT::TEXT)::UUID, coalesce(max(stream_version), 0) + 1, 'item_added', \
                        jsonb_build_object('sku', 'SKU-' || $1::BIGINT::TEXT, 'n', coalesce(max(stream_version), 0) + 1) \
                 FROM app_events WHERE stream_id = md5('stream' || $1::BIGINT::TEXT)::UUID",
                &[&s],
            )
            .await
            .expect("the app's insert never fails because of the adoption");
        written += 1;
        s = (s + 1) % streams;
        if written % 50 == 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }
    written
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn adopt_to_head(url: &str, client: &mut Client, spec: &AdoptSpec) {
    adopt::claim(client, spec, 4, Duration::from_millis(500), 20).await.unwrap();
    adopt::ensure_feed_index(client, spec).await.unwrap();
    adopt::import_history(url, 700, |_| {}).await.unwrap();
}

#[tokio::test]
async fn a_uuid_table_is_adopted_while_its_writer_keeps_inserting() {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    client.batch_execute(UUID_APP).await.unwrap();
    // History: 40 streams, versions written out of stream order (interleaved), 2,000 rows.
    client
        .batch_execute(
            "INSERT INTO app_events (stream_id, stream_version, event_type, data, recorded_at) \
             SELECT md5('stream' || (g % 40)::TEXT)::UUID, g / 40 + 1, 'item_added', \
                    jsonb_build_object('sku', 'SKU-' || (g % 40)::TEXT, 'n', g / 40 + 1), \
                    '2026-01-01'::TIMESTAMPTZ + g * INTERVAL '1 second' \
             FROM generate_series(0, 1999) AS g",
        )
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(app_writer(url.clone(), 40, stop_rx));
    let spec = uuid_spec();
    adopt_to_head(&url, &mut client, &spec).await;
    let mut feeder = adopt::Feeder::open(&client, 300).await.unwrap();
    // Feed for a while beside the writer, then stop it and feed to the head.
    let (_never, never_rx) = tokio::sync::watch::channel(false);
    for _ in 0..20 {
        feeder.step(&mut client).await.unwrap();
    }
    stop_tx.send(true).unwrap();
    let written = writer.await.unwrap();
    assert!(written > 0, "the writer ran");
    adopt::follow(&mut client, &mut feeder, Duration::from_millis(5), true, never_rx).await.unwrap();
    let app_rows = count(&client, "SELECT count(*) FROM app_events").await;
    assert_eq!(app_rows, 2_000 + written);
    assert_eq!(count(&client, "SELECT count(*) FROM log.events").await, app_rows, "every row once");
    assert_eq!(eventlog::id_kind(&client).await.unwrap(), fold::IdKind::Uuid);
    // Per stream, global_seq rises with the version: no version is ahead of its predecessor.
    let inverted = count(
        &client,
        "SELECT count(*) FROM (SELECT global_seq < lag(global_seq) OVER (PARTITION BY aggregate_id ORDER BY version) \
         AS back FROM log.events) x WHERE back",
    )
    .await;
    assert_eq!(inverted, 0, "a stream's versions are in the log in version order");
    // The same events, field by field.
    let differ = count(
        &client,
        "SELECT count(*) FROM app_events a FULL JOIN log.events l \
         ON l.aggregate_id = a.stream_id AND l.version = a.stream_version \
         WHERE l.global_seq IS NULL OR a.event_id IS NULL OR l.payload <> a.data OR l.type <> a.event_type \
            OR l.ts <> a.recorded_at",
    )
    .await;
    assert_eq!(differ, 0);
    let report = adopt::check(&mut client).await.unwrap();
    assert!(report.ok && report.compared == app_rows, "{report:?}");
    // A second feeder is refused while this one holds the feed.
    let other = eventlog::connect(&url).await.unwrap();
    let refused = adopt::Feeder::open(&other, 10).await.err().expect("one feeder per database");
    assert!(refused.to_string().contains("another feeder"), "{refused}");
}

#[tokio::test]
async fn updates_and_deletes_on_the_app_table_are_reported_not_copied() {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    client.batch_execute(UUID_APP).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO app_events (stream_id, stream_version, event_type, data) \
             SELECT md5('s' || (g % 5)::TEXT)::UUID, g / 5 + 1, 'item_added', '{}' FROM generate_series(0, 49) g",
        )
        .await
        .unwrap();
    let spec = uuid_spec();
    adopt_to_head(&url, &mut client, &spec).await;
    let mut feeder = adopt::Feeder::open(&client, 100).await.unwrap();
    feeder.step(&mut client).await.unwrap();
    client
        .batch_execute(
            "UPDATE app_events SET data = '{\"edited\": true}' WHERE stream_version = 2; \
             DELETE FROM app_events WHERE stream_version = 10",
        )
        .await
        .unwrap();
    let report = adopt::check(&mut client).await.unwrap();
    assert!(!report.ok);
    assert_eq!((report.differs, report.missing_in_table, report.missing_in_log), (5, 5, 0), "{report:?}");
    assert_eq!(count(&client, "SELECT count(*) FROM log.events").await, 50, "the log keeps what was inserted");
}

#[tokio::test]
async fn a_text_table_counting_from_zero_is_adopted_with_its_own_names() {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA shop; \
             CREATE TABLE shop.\"Events\" (\"Stream\" VARCHAR(64) NOT NULL, pos BIGINT NOT NULL, kind TEXT NOT NULL, \
                body JSON NOT NULL, at TIMESTAMP NOT NULL DEFAULT now(), PRIMARY KEY (\"Stream\", pos)); \
             INSERT INTO shop.\"Events\" SELECT 'order-' || (g % 7), g / 7, 'placed', '{\"a\": 1}' \
             FROM generate_series(0, 69) g",
        )
        .await
        .unwrap();
    let spec =
        AdoptSpec::new(QualifiedName::parse("shop.\"Events\"").unwrap(), ["Stream", "pos", "kind", "body", "at"]);
    // Counting from 0 with --first-version 1: refused, naming the flag, nothing half-written.
    adopt::claim(&mut client, &spec, 2, Duration::from_millis(500), 5).await.unwrap();
    let e = adopt::import_history(&url, 1000, |_| {}).await.unwrap_err().to_string();
    assert!(e.contains("--first-version 0"), "{e}");
    assert_eq!(count(&client, "SELECT count(*) FROM log.events").await, 0);
    assert!(adopt::claim(
        &mut client,
        &AdoptSpec { first_version: 0, ..spec.clone() },
        2,
        Duration::from_millis(500),
        5
    )
    .await
    .unwrap_err()
    .to_string()
    .contains("adopted from"));
    client.batch_execute("UPDATE log.adoption SET spec = jsonb_set(spec, '{first_version}', '0')").await.unwrap();
    let spec = AdoptSpec { first_version: 0, ..spec };
    adopt::ensure_feed_index(&client, &spec).await.unwrap();
    let report = adopt::import_history(&url, 16, |_| {}).await.unwrap();
    assert_eq!(report.rows, 70);
    client.execute("INSERT INTO shop.\"Events\" VALUES ('order-99', 0, 'placed', '{}', now())", &[]).await.unwrap();
    let mut feeder = adopt::Feeder::open(&client, 10).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    adopt::follow(&mut client, &mut feeder, Duration::from_millis(5), true, rx).await.unwrap();
    assert_eq!(eventlog::id_kind(&client).await.unwrap(), fold::IdKind::Text);
    let row = client
        .query_one("SELECT version, aggregate_id FROM log.events WHERE aggregate_id = 'order-99'", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, String>(1)), (1, "order-99".to_owned()), "0 counts as 1");
    assert!(adopt::check(&mut client).await.unwrap().ok);
}

#[tokio::test]
async fn a_table_that_cannot_be_adopted_is_refused_naming_the_problem() {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    client.batch_execute(UUID_APP).await.unwrap();
    let spec = uuid_spec();
    let e = |spec: AdoptSpec| {
        let url = url.clone();
        async move {
            let client = eventlog::connect(&url).await.unwrap();
            adopt::inspect(&client, &spec).await.unwrap_err().to_string()
        }
    };
    let missing = e(AdoptSpec { table: QualifiedName::parse("nope").unwrap(), ..spec.clone() }).await;
    assert!(missing.contains("public.nope does not exist"), "{missing}");
    let column = e(AdoptSpec { data_column: "payload".into(), ..spec.clone() }).await;
    assert!(column.contains("--data payload") && column.contains("it has: event_id"), "{column}");
    let ty = e(AdoptSpec { ts_column: "event_type".into(), ..spec.clone() }).await;
    assert!(ty.contains("--ts event_type is of type text"), "{ty}");
    assert!(adopt::inspect(&client, &spec).await.unwrap().unique_stream_version);
    // Nothing of the app's table changed.
    let columns =
        count(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'app_events'").await;
    assert_eq!(columns, 6);
    let _ = &mut client;
}
