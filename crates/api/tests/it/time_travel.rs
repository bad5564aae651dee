//! Time travel equals a fold of the log prefix, for any aggregate and any cut.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use lab::bank::{V3, V4};
use rand::{Rng, SeedableRng};

use crate::support::*;

#[tokio::test]
async fn as_of_equals_the_fold_of_the_log_prefix_at_random_cuts() {
    let f = fixture(25, false).await;
    let (served, empty, from_snapshot) = check_random_cuts(&f, 11).await;
    assert!(served > 100 && empty > 0, "the cuts cover both outcomes: {served} served, {empty} empty");
    assert_eq!(from_snapshot, 0, "no snapshots were stored");
}

#[tokio::test]
async fn as_of_from_snapshots_equals_the_fold_of_the_log_prefix_at_random_cuts() {
    let f = fixture(25, false).await;
    async fn snapshot<P: fold::Projection>(url: &str, p: P) {
        let config = projector::SnapshotConfig { every: 3, ..projector::SnapshotConfig::new(url, p) };
        let report = projector::build_snapshots(&config).await.unwrap();
        assert!(report.inserted > 25, "{report:?}");
    }
    snapshot(&f.url, V3).await;
    snapshot(&f.url, V4).await;
    let (served, empty, from_snapshot) = check_random_cuts(&f, 12).await;
    assert!(served > 100 && empty > 0, "the cuts cover both outcomes: {served} served, {empty} empty");
    // Cuts late in a history start from a snapshot; early ones (before version 3) cannot.
    assert!(from_snapshot > served / 2, "{from_snapshot} of {served} answers started from a snapshot");
}

/// 150 random (aggregate, fold, cut) as-of requests, each compared with the fold of the log
/// prefix the cut selects; returns (served, empty, served from a snapshot).
async fn check_random_cuts(f: &Fixture, seed: u64) -> (usize, usize, usize) {
    let log = log_events(&f.client, f.n).await;
    let max_seq: i64 = f.client.query_one("SELECT max(global_seq) FROM log.events", &[]).await.unwrap().get(0);
    let first_ts = log.values().flat_map(|es| es.iter().map(|e| e.ts)).min().unwrap();
    let last_ts = log.values().flat_map(|es| es.iter().map(|e| e.ts)).max().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut served, mut empty, mut from_snapshot) = (0, 0, 0);
    for round in 0..150 {
        let id = rng.gen_range(1..=f.n);
        let events = &log[&id];
        let v3 = rng.gen_bool(0.5);
        let (query, prefix): (String, Vec<_>) = match rng.gen_range(0..3) {
            0 => {
                let cut = rng.gen_range(0..=max_seq + 1);
                (format!("offset={cut}"), events.iter().filter(|e| e.global_seq <= cut).collect())
            }
            1 => {
                // Exactly an event's instant: the bound is inclusive.
                let cut = events[rng.gen_range(0..events.len())].ts;
                let ts = cut.to_rfc3339_opts(SecondsFormat::Micros, true);
                (format!("ts={ts}"), events.iter().filter(|e| e.ts <= cut).collect())
            }
            _ => {
                let span = (last_ts - first_ts).num_seconds();
                let cut: DateTime<Utc> =
                    first_ts - Duration::days(5) + Duration::seconds(rng.gen_range(0..span + 864_000));
                // A zone other than UTC, with the '+' escaped as a client must.
                let ts = cut.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap()).to_rfc3339();
                (format!("ts={}", ts.replace('+', "%2B")), events.iter().filter(|e| e.ts <= cut).collect())
            }
        };
        let path = format!("/aggregate/{id}/as-of?{query}&version={}", if v3 { "v3" } else { "v4" });
        let (status, body) = f.get(&path).await;
        /// The fold of `prefix` by `p`, checked against the answer when there is one.
        fn expect<P: fold::Projection>(
            p: P,
            prefix: &[&eventlog::RawEvent],
            status: u16,
            body: &serde_json::Value,
            who: &str,
        ) -> Option<i64> {
            let row = fold::fold_from(&p, None, prefix.iter().map(|e| e.decode(&p).unwrap())).unwrap().row;
            if let Some(row) = &row {
                assert_eq!(status, 200, "{who}: {body}");
                assert_row(body, &p, row, who);
            }
            row.map(|r| r.applied_seq)
        }
        let who = format!("round {round}, {path}");
        let expected =
            if v3 { expect(V3, &prefix, status, &body, &who) } else { expect(V4, &prefix, status, &body, &who) };
        match expected {
            None => {
                assert_eq!(status, 404, "round {round}, {path}: {body}");
                empty += 1;
            }
            Some(applied_seq) => {
                assert_eq!(body["stopped_at_seq"], applied_seq, "{path}: {body}");
                assert_eq!(body["events_folded"], prefix.len(), "{path}: {body}");
                served += 1;
                if let Some(k) = body["snapshot_version"].as_i64() {
                    assert!(k <= prefix.len() as i64, "{path}: a snapshot past the cut: {body}");
                    from_snapshot += 1;
                }
            }
        }
    }
    (served, empty, from_snapshot)
}

#[tokio::test]
async fn as_of_the_head_equals_the_current_row_and_defaults_to_the_active_fold() {
    let f = fixture(8, true).await;
    for id in 1..=f.n {
        let (_, current) = f.get(&format!("/aggregate/{id}")).await;
        let (status, head) = f.get(&format!("/aggregate/{id}/as-of?offset={}", i64::MAX)).await;
        assert_eq!(status, 200, "{head}");
        assert_eq!(head["projection_version"], "v3", "the active version's fold by default");
        for (k, v) in current.as_object().unwrap() {
            assert_eq!(&head[k], v, "aggregate {id}, field {k}");
        }
    }
}

/// Snapshots stored before the projection trait (the bank's account struct as JSON, with
/// `version` rather than `aggregate_version`) are skipped, not an error: the answer is the fold
/// of the log as without them.
#[tokio::test]
async fn a_snapshot_in_the_pre_trait_format_is_skipped() {
    let f = fixture(4, false).await;
    let (_, before) = f.get("/aggregate/2/as-of?offset=1000000&version=v4").await;
    f.client
        .execute(
            "INSERT INTO read.aggregate_snapshots (fold, aggregate_id, version, max_seq, max_ts, state) \
             VALUES ('v4', 2, 1, 0, '2000-01-01Z', \
                     '{\"aggregate_id\": 2, \"owner\": \"x\", \"currency\": \"EUR\", \"status\": \"open\", \
                       \"balance\": 999999, \"version\": 1, \"applied_seq\": 1}')",
            &[],
        )
        .await
        .unwrap();
    let (status, after) = f.get("/aggregate/2/as-of?offset=1000000&version=v4").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["balance"], before["balance"], "{after}");
    assert_eq!(after["snapshot_version"], serde_json::Value::Null, "{after}");
}
