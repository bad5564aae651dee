//! Snapshots: each equals the fold of its aggregate's versions 1..k, with the exact largest
//! sequence number and timestamp among them, whatever order the log stores the events in.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use fold::Row;
use lab::bank::{Account, V4};
use projector::{build_snapshots, SnapshotConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::support::*;

const EVERY: i32 = 5;

/// Snapshots as stored: (aggregate, version) -> (max_seq, max_ts, state).
async fn stored(client: &tokio_postgres::Client) -> BTreeMap<(i64, i32), (i64, DateTime<Utc>, Row<Account>)> {
    let rows = client
        .query(
            "SELECT aggregate_id, version, max_seq, max_ts, state::TEXT FROM read.aggregate_snapshots \
             WHERE fold = 'v4'",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let json: serde_json::Value = serde_json::from_str(r.get::<_, &str>(4)).unwrap();
            let state = fold::row_from_json(&V4, &json, fold::IdKind::Bigint).unwrap();
            ((r.get::<_, &str>(0).parse().unwrap(), r.get(1)), (r.get(2), r.get(3), state))
        })
        .collect()
}

#[tokio::test]
async fn snapshots_equal_the_fold_of_their_prefix_in_any_storage_order() {
    let (url, mut client) = fresh_log(4).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let start = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    // Six aggregates of 1 + 12..40 events, appended in a shuffled order in several transactions,
    // with timestamps that do not rise with the version: sequence numbers and timestamps then
    // say nothing about versions, and the maxima must be tracked per applied prefix.
    let mut events = Vec::new();
    for id in 1..=6 {
        events.push(opened(id));
        for v in 2..=rng.gen_range(13..=41) {
            events.push(deposited(id, v, rng.gen_range(1..10_000)));
        }
    }
    for e in events.iter_mut() {
        e.ts = start + Duration::minutes(rng.gen_range(0..100_000));
    }
    events.shuffle(&mut rng);
    for chunk in events.chunks(37) {
        append(&mut client, chunk).await;
    }

    let config = SnapshotConfig { every: EVERY, ..SnapshotConfig::new(&url, V4) };
    let first = build_snapshots(&config).await.unwrap();
    assert_eq!(first.events_read, events.len() as u64);
    let snapshots = stored(&client).await;

    let mut expected = BTreeMap::new();
    for id in 1..=6 {
        let log = eventlog::aggregate_events(&client, &fold::AggregateId::from(id), DateTime::<Utc>::MAX_UTC, i64::MAX)
            .await
            .unwrap();
        for k in (EVERY..=log.len() as i32).step_by(EVERY as usize) {
            let prefix = &log[..k as usize];
            let state = fold::fold_from(&V4, None, prefix.iter().map(|e| e.decode(&V4).unwrap())).unwrap().row.unwrap();
            let max_seq = prefix.iter().map(|e| e.global_seq).max().unwrap();
            let max_ts = prefix.iter().map(|e| e.ts).max().unwrap();
            expected.insert((id, k), (max_seq, max_ts, state));
        }
    }
    assert_eq!(snapshots.len(), expected.len(), "one snapshot per multiple of {EVERY}");
    for (key, want) in &expected {
        assert_eq!(snapshots.get(key), Some(want), "snapshot {key:?}");
    }
    assert_eq!((first.snapshots, first.inserted), (expected.len() as u64, expected.len() as u64));

    // A rerun finds every snapshot present and changes nothing.
    let again = build_snapshots(&config).await.unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(stored(&client).await, snapshots);
}

#[tokio::test]
async fn a_bad_event_stops_the_snapshot_run_naming_it() {
    let (url, mut client) = fresh_log(2).await;
    append(&mut client, &[opened(7), deposited(7, 2, 100)]).await;
    let seqs = append(&mut client, &[event(7, 3, "withdrew", r#"{"amount":"all"}"#.into())]).await;
    let e = build_snapshots(&SnapshotConfig { every: 1, ..SnapshotConfig::new(&url, V4) }).await.unwrap_err();
    let message = e.to_string();
    for part in [format!("global_seq {}", seqs[0]), "aggregate 7".into(), "malformed withdrew".into()] {
        assert!(message.contains(&part), "{message:?} names {part}");
    }
    let e = build_snapshots(&SnapshotConfig { every: 0, ..SnapshotConfig::new(&url, V4) }).await.unwrap_err();
    assert!(e.to_string().contains("--every"), "{e}");
}
