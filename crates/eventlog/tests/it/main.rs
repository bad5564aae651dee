//! The event log against a real PostgreSQL: append-only, partitioned, gap-safe boundary.

mod adopt;

use eventlog::{NewEvent, Position};

async fn fresh() -> tokio_postgres::Client {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    eventlog::create(&mut client, 4, fold::IdKind::Bigint).await.unwrap();
    eventlog::ensure_indexes(&client).await.unwrap();
    client
}

fn opened(id: i64) -> NewEvent {
    NewEvent {
        aggregate_id: id.into(),
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
    assert!(matches!(
        eventlog::create(&mut client, 4, fold::IdKind::Bigint).await,
        Err(eventlog::Error::AlreadyExists(4))
    ));
    assert!(matches!(
        eventlog::create(&mut client, 0, fold::IdKind::Bigint).await,
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

/// `partition_of` is PostgreSQL's routing: for every modulus tried, the partition it names is
/// the one whose bound the server says the key satisfies, and rows land in the table it names.
#[tokio::test]
async fn partition_of_routes_as_postgresql_does() {
    let client = fresh().await;
    let mut ids: Vec<i64> = (-300..300).collect();
    ids.extend([i64::MIN, i64::MIN + 1, i64::MAX, 1 << 32, (1 << 32) - 1, -(1 << 32), 10_000_000, 987_654_321_012]);
    ids.extend((0..200).map(|i: i64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)));
    for modulus in [1u32, 2, 3, 4, 7, 16, 64, 1024] {
        let remainders: Vec<i32> = ids.iter().map(|&id| eventlog::partition_of(id, modulus) as i32).collect();
        let wrong: i64 = client
            .query_one(
                "SELECT count(*) FROM unnest($1::BIGINT[], $2::INT[]) AS k(id, r) \
                 WHERE NOT satisfies_hash_partition('log.events'::regclass, $3, r, id)",
                &[&ids, &remainders, &(modulus as i32)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(wrong, 0, "modulus {modulus}");
    }
    let firsts: Vec<NewEvent> = (1..=64).map(opened).collect();
    for e in &firsts {
        eventlog::append_event(&client, e).await.unwrap();
    }
    for row in client.query("SELECT aggregate_id, tableoid::regclass::TEXT FROM log.events", &[]).await.unwrap() {
        let id: i64 = row.get(0);
        let table: String = row.get(1);
        assert_eq!(table, format!("log.{}", eventlog::partition_table(eventlog::partition_of(id, 4))), "id {id}");
    }
}

/// A partition's bulk read starts at its first page even when another scan of the table
/// stopped halfway: with PostgreSQL's synchronized scans (on by default, for tables over a
/// quarter of shared_buffers) it would start where that scan was and read the later half of
/// the log first, and a replay would hold every later version it read before its predecessors.
#[tokio::test]
async fn a_partition_is_read_from_its_first_page_whatever_scanned_it_before() {
    let url = pgharness::throwaway().fresh_database();
    let mut client = eventlog::connect(&url).await.unwrap();
    eventlog::create(&mut client, 1, fold::IdKind::Bigint).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT g, 1, 'padded', now(), jsonb_build_object('pad', repeat(md5(g::TEXT), 45)) \
             FROM generate_series(1, 50000) AS g",
        )
        .await
        .unwrap();
    let (pages, quarter_of_buffers): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT pg_relation_size('log.events_p000') / 8192, \
                 (SELECT setting::BIGINT / 4 FROM pg_settings WHERE name = 'shared_buffers')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(pages > quarter_of_buffers, "{pages} pages: too small for synchronized scans ({quarter_of_buffers})");
    // Another session's scan, stopped halfway.
    let other = eventlog::connect(&url).await.unwrap();
    other
        .batch_execute(
            "BEGIN; DECLARE half CURSOR FOR SELECT global_seq FROM log.events_p000; \
             FETCH 25000 FROM half; CLOSE half; COMMIT",
        )
        .await
        .unwrap();
    let below = eventlog::boundary(&client).await.unwrap();
    let events = eventlog::copy_partition(&client, 0, Position::START, below).await.unwrap();
    futures::pin_mut!(events);
    let first = futures::StreamExt::next(&mut events).await.unwrap().unwrap();
    let lowest: i64 = other.query_one("SELECT min(global_seq) FROM log.events", &[]).await.unwrap().get(0);
    assert_eq!(first.global_seq, lowest, "the read started mid-table");
}
