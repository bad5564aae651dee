//! Projections that are not the bank's accounts get the same guarantees: `activity_v1` (the lab's
//! second read model) and `DepositTally`, a projection written here, in the test, as a user
//! would write theirs. Both replay, tail, verify against a fold of the log (and `activity_v1`
//! against SQL computed straight from the log), and cut over within their own family while the
//! accounts family keeps its own active version.

use std::time::Duration;

use fold::{ApplyError, DecodeError, Envelope, Payload, Projection, RowCodec};
use lab::activity::{ActivityV1, EXPECTED_FROM_LOG_SQL};
use lab::bank::V4;
use projector::{LiveConfig, ReplayConfig};

use crate::support::*;

/// A user's projection: how many deposits an account has had and their total, and nothing
/// else (every other event type is read and ignored).
#[derive(Debug, Clone, Copy)]
struct DepositTally;

#[derive(Debug, Clone, PartialEq, RowCodec)]
struct Tally {
    deposits: i64,
    cents: i64,
}

impl Projection for DepositTally {
    type Event = Option<i64>;
    type State = Tally;

    fn family(&self) -> &'static str {
        "activity"
    }
    fn name(&self) -> &'static str {
        "activity_v0"
    }
    fn table(&self) -> String {
        "activity_v0".into()
    }
    fn decode(&self, event_type: &str, payload: &Payload<'_>) -> Result<Option<i64>, DecodeError> {
        #[derive(serde::Deserialize)]
        struct Amount {
            amount_cents: i64,
        }
        match event_type {
            "deposited" => {
                Ok(Some(payload.parse::<Amount>().map_err(|e| DecodeError::malformed(event_type, e))?.amount_cents))
            }
            _ => Ok(None),
        }
    }
    fn apply(&self, state: Option<Tally>, event: &Envelope<Option<i64>>) -> Result<Tally, ApplyError> {
        let mut t = state.unwrap_or(Tally { deposits: 0, cents: 0 });
        if let Some(cents) = event.body {
            t.deposits += 1;
            t.cents += cents;
        }
        Ok(t)
    }
}

fn never() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

fn replay<P: Projection>(url: &str, projection: P) -> ReplayConfig<P> {
    ReplayConfig { workers: 2, batch: 2_000, poll: Duration::from_millis(10), ..ReplayConfig::new(url, projection) }
}

/// Rows of `read.activity_v1` that the SQL straight from the log does not have, plus the
/// reverse: 0 when the table is exactly that SQL's result.
async fn differs_from_sql(client: &tokio_postgres::Client) -> i64 {
    let sql = format!(
        "WITH e AS ({EXPECTED_FROM_LOG_SQL}), t AS (SELECT * FROM read.activity_v1) \
         SELECT (SELECT count(*) FROM (SELECT * FROM t EXCEPT SELECT * FROM e) a) \
              + (SELECT count(*) FROM (SELECT * FROM e EXCEPT SELECT * FROM t) b)"
    );
    client.query_one(&sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_projection_that_is_not_the_banks_replays_tails_verifies_and_cuts_over() {
    let url = pgharness::throwaway().fresh_database();
    let mut seed = lab::SeedConfig::new(12_000, 600, 7);
    seed.partitions = 4;
    seed.chunk_events = 4_000;
    lab::seed::run(&url, seed).await.expect("seed");
    let mut client = eventlog::connect(&url).await.unwrap();

    // The accounts family first: v4 is the first of its family, so it becomes active.
    projector::replay(&replay(&url, V4), never()).await.unwrap();
    // A user's projection: the first of the `activity` family, so it becomes its active one.
    let tally = projector::replay(&replay(&url, DepositTally), never()).await.unwrap();
    assert_eq!(tally.bulk_events, 12_000);
    let active = |infos: &[readmodel::ProjectionInfo], family: &str| {
        infos.iter().find(|p| p.family == family && p.state == readmodel::State::Active).map(|p| p.version.clone())
    };
    let infos = readmodel::list(&client).await.unwrap();
    assert_eq!(active(&infos, "accounts").as_deref(), Some("v4"));
    assert_eq!(active(&infos, "activity").as_deref(), Some("activity_v0"));

    // The lab's activity projection, built beside it; then more events, tailed.
    let aggregates: i64 =
        client.query_one("SELECT count(DISTINCT aggregate_id) FROM log.events", &[]).await.unwrap().get(0);
    let report = projector::replay(&replay(&url, ActivityV1), never()).await.unwrap();
    assert_eq!((report.bulk_events, report.bulk_rows), (12_000, aggregates as u64));
    assert_eq!(readmodel::version_info(&client, "activity_v1").await.unwrap().state, readmodel::State::Ready);
    let fees = [
        r#"{"amount_cents":11}"#,
        r#"{"fee":{"amount_cents":22}}"#,
        r#"{"schema":3,"fee":{"amount_cents":33,"tax_cents":0}}"#,
    ];
    for (i, fee) in fees.iter().enumerate() {
        let id = 9_000 + i as i64;
        append(
            &mut client,
            &[opened(id), deposited(id, 2, 500), event(id, 3, "fee_charged", (*fee).to_owned()), deposited(id, 4, 70)],
        )
        .await;
    }
    projector::run_live(&LiveConfig { stop_at_head: true, ..LiveConfig::new(&url, ActivityV1) }, never())
        .await
        .unwrap();
    projector::run_live(&LiveConfig { stop_at_head: true, ..LiveConfig::new(&url, DepositTally) }, never())
        .await
        .unwrap();

    // Verified against a fold of the log, and against SQL computed straight from the log.
    let v1 = projector::verify_against_log(&mut client, &ActivityV1).await.unwrap();
    assert!(v1.ok && v1.diffs == 0 && v1.stored_rows == aggregates as u64 + 3, "{}", v1.render());
    assert_eq!(v1.events_folded, 12_012);
    assert_eq!(differs_from_sql(&client).await, 0, "activity_v1 equals the SQL fold of the log");
    let fee_cents: Vec<i64> = client
        .query("SELECT fee_cents FROM read.activity_v1 WHERE aggregate_id >= 9000 ORDER BY aggregate_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(fee_cents, [11, 22, 33], "every schema version of a fee is read through the upcasters");
    let v0 = projector::verify_against_log(&mut client, &DepositTally).await.unwrap();
    assert!(v0.ok && v0.stored_rows == aggregates as u64 + 3, "{}", v0.render());
    let tally_9000 = row(&client, &DepositTally, 9_000).await.unwrap();
    assert_eq!((tally_9000.state, tally_9000.aggregate_version), (Tally { deposits: 2, cents: 570 }, 4));

    // The check can fail: one corrupted row is one diff, named.
    client.execute("UPDATE read.activity_v1 SET fees = fees + 1 WHERE aggregate_id = 9001", &[]).await.unwrap();
    let bad = projector::verify_against_log(&mut client, &ActivityV1).await.unwrap();
    assert!(!bad.ok && bad.diffs == 1 && bad.sample[0].aggregate_id == 9001.into(), "{}", bad.render());
    assert_eq!(differs_from_sql(&client).await, 2, "the SQL check sees it too (one row each way)");
    client.execute("UPDATE read.activity_v1 SET fees = fees - 1 WHERE aggregate_id = 9001", &[]).await.unwrap();

    // Cutover within the family: activity_v0 → activity_v1, once v1 has caught up with v0 (v0
    // was tailed last: its positions are ahead, and the cutover refuses until v1's are not);
    // accounts keeps v4.
    let early = readmodel::cutover(&mut client, "activity_v1").await.unwrap_err();
    assert!(matches!(early, readmodel::Error::Lagging { .. }), "{early}");
    projector::run_live(&LiveConfig { stop_at_head: true, ..LiveConfig::new(&url, ActivityV1) }, never())
        .await
        .unwrap();
    let c = readmodel::cutover(&mut client, "activity_v1").await.unwrap();
    assert!(c.switched && c.previous.as_deref() == Some("activity_v0"), "{c:?}");
    let infos = readmodel::list(&client).await.unwrap();
    assert_eq!(active(&infos, "activity").as_deref(), Some("activity_v1"));
    assert_eq!(active(&infos, "accounts").as_deref(), Some("v4"), "another family's cutover leaves accounts alone");
    let served: Option<serde_json::Value> =
        client.query_one("SELECT row_json FROM read.current_row('activity', '9002')", &[]).await.unwrap().get(0);
    assert_eq!(served.unwrap()["fee_cents"], 33);
}
