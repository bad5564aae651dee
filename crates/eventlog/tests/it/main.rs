//! The event log against a real PostgreSQL: append-only, partitioned, gap-safe boundary.

use eventlog::{NewEvent, Position};

async fn fresh() -> tokio_postgres::Client {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    eventlog::create(&mut client, 4).await.unwrap();
    eventlog::ensure_indexes(&client).await.unwrap();
    client
}

fn opened(id: i64) -> NewEvent {
    NewEvent {
        aggregate_id: id,
        version: 1,
        event_type: "account_opened".into(),
        ts: chrono::Utc::now(),
        payload: r#"{"owner":"o","currency":"EUR"}"#.into(),
    }
}

#[tokio::test]
async fn the_log_refuses_updates_deletes_and_truncates() {
    let client = fresh().await;
    eventlog::append_event(&client, &opened(1)).await.unwrap();
    for sql in ["UPDATE log.events SET version = 2", "DELETE FROM log.events", "TRUNCATE log.events"] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert!(err.as_db_error().unwrap().message().contains("append-only"), "{sql}: {err}");
    }
    let n: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_duplicate_version_is_refused_and_creation_is_not_repeated() {
    let mut client = fresh().await;
    eventlog::append_event(&client, &opened(7)).await.unwrap();
    let dup = eventlog::append_event(&client, &opened(7)).await.expect_err("same (aggregate, version)");
    assert_eq!(dup.code(), Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION));
    assert!(matches!(eventlog::create(&mut client, 4).await, Err(eventlog::Error::AlreadyExists(4))));
    assert!(matches!(
        eventlog::create(&mut client, 0).await,
        Err(eventlog::Error::BadPartitionCount(0)) | Err(eventlog::Error::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn the_boundary_stays_below_a_running_writer() {
    let client = fresh().await;
    let url = pgharness::throwaway().fresh_database();
    let _ = url;
    let mut writer = eventlog::connect(
        &pgharness::throwaway()
            .url(&client.query_one("SELECT current_database()", &[]).await.unwrap().get::<_, String>(0)),
    )
    .await
    .unwrap();
    let tx = writer.transaction().await.unwrap();
    eventlog::append_event(&tx, &opened(3)).await.unwrap();
    let xid: i64 = tx.query_one("SELECT pg_current_xact_id()::TEXT::BIGINT", &[]).await.unwrap().get(0);
    eventlog::append_event(&client, &opened(4)).await.unwrap();
    let boundary = eventlog::boundary(&client).await.unwrap();
    assert!(boundary <= xid, "the oldest running writer holds the boundary: {boundary} > {xid}");
    let reader = eventlog::LogReader::prepare(&client).await.unwrap();
    let mut seen = 0;
    for p in 0..reader.partitions() {
        seen += reader.read_after(&client, p, Position::START, boundary, 100).await.unwrap().len();
    }
    assert_eq!(seen, 0, "the later, committed event waits behind the running writer");
    tx.commit().await.unwrap();
    let boundary = eventlog::boundary(&client).await.unwrap();
    let mut seen = 0;
    for p in 0..reader.partitions() {
        seen += reader.read_after(&client, p, Position::START, boundary, 100).await.unwrap().len();
    }
    assert_eq!(seen, 2);
}
