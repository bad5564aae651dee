//! Seeding: the loaded log, its expected state, refusal of mismatched reruns, resumption.

use lab::{Error, SeedConfig};

use crate::support::{assert_same, expected, expected_checksum, fresh, hand_fold, log_checksum, seeded, small};

#[tokio::test]
async fn seeds_a_dense_log_and_its_true_final_state() {
    let (url, client) = fresh().await;
    let report = lab::seed::run(&url, small(11)).await.expect("seed");
    assert!(report.complete && report.written_events == 20_000 && report.chunks == 4, "{report:?}");
    assert!(report.transfers > 0 && report.v3_bug_aggregates > 0, "{report:?}");

    let counts = client
        .query_one(
            "SELECT count(*), count(DISTINCT aggregate_id), min(global_seq), max(global_seq), \
             count(DISTINCT global_seq), count(DISTINCT tx_id) FROM log.events",
            &[],
        )
        .await
        .unwrap();
    let counts: (i64, i64, i64, i64, i64, i64) =
        (counts.get(0), counts.get(1), counts.get(2), counts.get(3), counts.get(4), counts.get(5));
    assert_eq!(counts, (20_000, 2_000, 1, 20_000, 20_000, 8), "events, aggregates, seqs, one tx per chunk and loader");
    let parts: Vec<(i32, i64, i64)> = client
        .query("SELECT chunk, count(*), sum(events)::BIGINT FROM lab.seed_progress GROUP BY chunk ORDER BY chunk", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(parts, (0..4).map(|c| (c, 4, 5_000)).collect::<Vec<_>>(), "every partition of every chunk, recorded");
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM lab.seed_progress AS p WHERE p.events <> (SELECT count(*) FROM log.events AS e \
             WHERE e.tx_id = p.tx_id AND e.tableoid = format('log.events_p%s', lpad(p.partition::TEXT, 3, '0'))::regclass \
             AND e.global_seq BETWEEN p.chunk * 5000 + 1 AND (p.chunk + 1) * 5000)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "each chunk part's rows carry its own transaction's id");
    let out_of_order: i64 = client
        .query_one(
            "SELECT count(*) FROM lab.seed_progress AS a JOIN lab.seed_progress AS b \
             ON a.chunk < b.chunk AND a.tx_id >= b.tx_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(out_of_order, 0, "parallel loaders take transaction ids in chunk order");

    let not_dense: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT aggregate_id, min(version) AS lo, max(version) AS hi, count(*) AS n \
             FROM log.events GROUP BY aggregate_id) AS a WHERE lo <> 1 OR hi <> n",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(not_dense, 0, "versions are dense from 1 per aggregate");

    let expected = expected(&client).await;
    assert_same(&expected, &hand_fold(&client).await);

    let bug: Vec<i64> = expected.iter().filter(|(_, r)| r.v3_bug).map(|(id, _)| *id).collect();
    let nested: Vec<i64> = client
        .query(
            "SELECT DISTINCT aggregate_id FROM log.events WHERE type = 'fee_charged' AND payload ? 'fee' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!bug.is_empty());
    assert_eq!(bug, nested, "v3_bug is exactly the aggregates with a nested fee");
    assert_eq!(bug.len() as u64, report.v3_bug_aggregates);

    let next: (i64, i64) = {
        let r = client
            .query_one("SELECT nextval('log.events_global_seq_seq'), nextval('lab.aggregate_ids')", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(next, (20_001, 2_001), "sequences continue after the seeded log");
    let dup = client
        .execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) VALUES (1, 1, 'frozen', now(), '{}')",
            &[],
        )
        .await;
    assert!(dup.is_err(), "the unique (aggregate_id, version) index is built");
    let per_partition: Vec<i64> = client
        .query(
            "SELECT count(i.indexrelid) FROM pg_inherits AS h LEFT JOIN pg_index AS i ON i.indrelid = h.inhrelid \
             WHERE h.inhparent = 'log.events'::regclass GROUP BY h.inhrelid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(per_partition, vec![2; 4], "each partition has exactly the two attached indexes");
    let parent: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_inherits AS h JOIN pg_class AS c ON c.oid = h.inhrelid \
             WHERE h.inhparent IN ('log.events_aggregate_version_key'::regclass, 'log.events_position_key'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parent, 8, "the partitions' indexes are attached to the parent's");
}

#[tokio::test]
async fn refuses_reruns_unless_reset() {
    let (url, _client) = seeded(small(3)).await;
    let again = lab::seed::run(&url, small(3)).await.unwrap_err();
    assert!(matches!(again, Error::AlreadySeeded(_)), "{again}");
    let other = lab::seed::run(&url, small(4)).await.unwrap_err();
    assert!(matches!(other, Error::ParamsMismatch { .. }), "{other}");
    assert!(other.to_string().contains("seed=3") && other.to_string().contains("seed=4"), "{other}");
    let reset = lab::seed::run(&url, SeedConfig { reset: true, ..small(4) }).await.expect("reset seed");
    assert!(reset.complete && reset.written_events == 20_000);

    let (url, mut client) = fresh().await;
    eventlog::create(&mut client, 2, fold::IdKind::Bigint).await.unwrap();
    let foreign = lab::seed::run(&url, small(3)).await.unwrap_err();
    assert!(matches!(foreign, Error::ForeignLog), "{foreign}");
}

#[tokio::test]
async fn an_interrupted_seed_resumes_to_the_same_log() {
    let (url, client) = fresh().await;
    // Three loader transactions: chunk 0 in full, one loader's share of chunk 1.
    let first = lab::seed::run(&url, SeedConfig { stop_after_chunks: Some(3), ..small(21) }).await.unwrap();
    assert!(!first.complete && first.written_events > 5_000 && first.written_events < 10_000, "{first:?}");
    let loaded: i64 = client.query_one("SELECT count(*) FROM log.events", &[]).await.unwrap().get(0);
    assert_eq!(loaded as u64, first.written_events);
    let exists: bool =
        client.query_one("SELECT to_regclass('lab.expected_accounts') IS NOT NULL", &[]).await.unwrap().get(0);
    assert!(!exists, "no expected state before the log is complete");

    let second = lab::seed::run(&url, small(21)).await.unwrap();
    assert!(second.complete && second.skipped_chunks == 1, "{second:?}");
    assert_eq!(first.written_events + second.written_events, 20_000, "{second:?}");

    let (_, clean) = seeded(small(21)).await;
    assert_eq!(log_checksum(&client).await, log_checksum(&clean).await, "resumed log == uninterrupted log");
    assert_eq!(expected_checksum(&client).await, expected_checksum(&clean).await);
    assert_same(&expected(&client).await, &hand_fold(&client).await);
}

/// A bulk replay reads each partition in storage order and holds an event until the ones
/// before it in its aggregate's stream are read. The seeder writes each partition from one
/// loader, chunk after chunk, so a seeded log makes the replay hold almost nothing. (Loaders
/// sharing a partition interleave their pages: PostgreSQL extends a table for the inserters
/// waiting on it by pages that the others fill later, an early event lands after later ones,
/// and every later event of its aggregate is held until it is read: half the events here, a
/// third at 10M, millions at once at 100M.)
#[tokio::test]
async fn a_seeded_partition_is_stored_nearly_in_version_order() {
    let cfg = SeedConfig { partitions: 4, chunk_events: 10_000, loaders: 4, ..SeedConfig::new(400_000, 20_000, 5) };
    let (_url, client) = seeded(cfg).await;
    for p in 0..4 {
        let table = eventlog::partition_table(p);
        let (events, held): (i64, i64) = {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), count(*) FILTER (WHERE last_before > ctid) FROM (SELECT ctid, max(ctid) OVER \
                         (PARTITION BY aggregate_id ORDER BY version ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) \
                         AS last_before FROM log.{table}) AS s"
                    ),
                    &[],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        };
        // Measured: 0.3% (later rows filling the free space the COPY left at the end of
        // earlier pages, each held alone); 53% with the loaders sharing partitions.
        assert!(held * 100 <= events, "partition {p}: {held} of {events} events stored before an earlier version");
    }
}
