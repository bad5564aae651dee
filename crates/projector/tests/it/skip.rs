//! An app adds an event type before its projection knows it: nothing stops. The events are
//! skipped (the guard counts their versions), on every path: bulk replay, tail, verify, time
//! travel's fold, repair; a stream whose first events are all of unknown types gets a mark,
//! not a row, and its first known event becomes its row at the right version.

use fold::Projection;
use lab::bank::V4;
use projector::{LiveConfig, ReplayConfig, TailOptions, Tailer};

use crate::support::*;

/// `note_added` is a type the bank's projections do not know.
fn note(aggregate_id: i64, version: i32) -> eventlog::NewEvent {
    event(aggregate_id, version, "note_added", r#"{"text":"called the customer"}"#.into())
}

async fn skipped_count(client: &tokio_postgres::Client, version: &str) -> i64 {
    client
        .query_one("SELECT count(*) FROM read.untracked_aggregates WHERE version = $1", &[&version])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn unknown_types_are_skipped_by_replay_and_tail_and_verify_exact() {
    let (url, mut client) = fresh_log(4).await;
    bulk_events(&client, 50, 3).await;
    // History: notes in the middle of streams 1..=10 (version 5), and stream 500 made of notes
    // only (versions 1 and 2).
    let mut history: Vec<_> = (1..=10).map(|id| note(id, 5)).collect();
    history.extend([note(500, 1), note(500, 2)]);
    append(&mut client, &history).await;
    let replay = ReplayConfig { workers: 2, ..ReplayConfig::new(&url, V4) };
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let report = projector::replay(&replay, stop.clone()).await.expect("the replay skips unknown types");
    assert_eq!(report.bulk_events, 50 * 4 + 12);
    assert_eq!(row(&client, &V4, 3).await.unwrap().aggregate_version, 5, "the note's version counts");
    assert!(row(&client, &V4, 500).await.is_none(), "a stream of notes only has no row");
    assert_eq!(skipped_count(&client, "v4").await, 1, "it has a mark instead");
    // Live: more notes, then known events after them, on a stream with a row and on the
    // stream of notes (its first known event comes after two skipped versions).
    let mut tail = vec![note(3, 6), deposited(3, 7, 100), note(600, 1)];
    tail.push(event(500, 3, "account_opened", r#"{"owner":"late","currency":"EUR"}"#.into()));
    tail.push(deposited(500, 4, 25));
    append(&mut client, &tail).await;
    let live = LiveConfig { stop_at_head: true, ..LiveConfig::new(&url, V4) };
    projector::run_live(&live, stop.clone()).await.expect("the tail skips unknown types");
    let three = row(&client, &V4, 3).await.unwrap();
    assert_eq!(three.aggregate_version, 7, "known, skipped, known: nothing waits");
    let late = row(&client, &V4, 500).await.expect("the stream of notes got its row");
    assert_eq!((late.aggregate_version, late.state.balance, late.state.owner.as_str()), (4, 25, "late"));
    assert_eq!(skipped_count(&client, "v4").await, 1, "500's mark is gone, 600 has one");
    let held: i64 = client.query_one("SELECT count(*) FROM read.held_events", &[]).await.unwrap().get(0);
    assert_eq!(held, 0, "nothing is held behind a skipped version");
    let verified = projector::verify_against_log(&mut client, &V4).await.unwrap();
    assert!(verified.ok, "{}", verified.render());
    // Time travel folds with the same guard: the note's version counts there too.
    let events = eventlog::aggregate_events(&client, &3.into(), chrono::DateTime::<chrono::Utc>::MAX_UTC, i64::MAX)
        .await
        .unwrap();
    let decoded: Vec<_> = events.iter().map(|e| e.decode(&V4).unwrap()).collect();
    let folded = fold::fold_from(&V4, None, decoded).unwrap();
    assert_eq!(folded.row, Some(three));
}

#[tokio::test]
async fn a_note_stream_read_in_two_batches_resumes_from_its_mark() {
    let (url, mut client) = fresh_log(1).await;
    prepare_version(&mut client, &V4).await;
    append(&mut client, &[note(9, 1)]).await;
    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(100)).await.unwrap();
    drain(&mut tailer, &mut client).await;
    assert!(row(&client, &V4, 9).await.is_none());
    assert_eq!(skipped_count(&client, V4.name()).await, 1);
    // A fresh tailer (a restart) reads the mark: version 2 is next, not held.
    append(&mut client, &[note(9, 2), event(9, 3, "account_opened", r#"{"owner":"o","currency":"EUR"}"#.into())]).await;
    let mut tailer = Tailer::open(&client, V4, TailOptions::batch(1)).await.unwrap();
    drain(&mut tailer, &mut client).await;
    assert_eq!(tailer.held_count(), 0);
    assert_eq!(row(&client, &V4, 9).await.unwrap().aggregate_version, 3);
    assert_eq!(skipped_count(&client, V4.name()).await, 0);
    let _ = url;
}

/// A projection that refuses unknown types stops (or quarantines) as before.
#[derive(Debug, Clone, Copy)]
struct StrictV4;

impl Projection for StrictV4 {
    type Event = <V4 as Projection>::Event;
    type State = <V4 as Projection>::State;
    fn family(&self) -> &'static str {
        "strict"
    }
    fn name(&self) -> &'static str {
        "strict_v4"
    }
    fn upcasters(&self) -> &[fold::Upcaster] {
        V4.upcasters()
    }
    fn decode(&self, t: &str, p: &fold::Payload<'_>) -> Result<Self::Event, fold::DecodeError> {
        V4.decode(t, p)
    }
    fn strict_types(&self) -> bool {
        true
    }
    fn apply(&self, s: Option<Self::State>, e: &fold::Envelope<Self::Event>) -> Result<Self::State, fold::ApplyError> {
        V4.apply(s, e)
    }
}

#[tokio::test]
async fn a_strict_projection_stops_on_an_unknown_type_naming_it() {
    let (url, mut client) = fresh_log(2).await;
    bulk_events(&client, 5, 1).await;
    append(&mut client, &[note(2, 3)]).await;
    let live = LiveConfig { stop_at_head: true, ..LiveConfig::new(&url, StrictV4) };
    let e = projector::run_live(&live, tokio::sync::watch::channel(false).1).await.unwrap_err().to_string();
    assert!(e.contains("unknown event type \"note_added\"") && e.contains("aggregate 2 version 3"), "{e}");
}
