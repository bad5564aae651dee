//! `reproject projections` names the transaction that holds the horizon back.

use crate::support::*;

#[tokio::test]
async fn projections_names_an_idle_transaction_of_another_database_that_holds_the_horizon() {
    let url = seeded(2_000, 50, 4).await;
    run_ok(&url, &["projector", "--mode", "live", "--version", "v4", "--stop-at-head", "--progress", "false"]);
    let quiet = run_ok(&url, &["projections"]);
    assert!(quiet.contains("horizon xid=") && !quiet.contains("waiting on"), "{quiet}");

    let other = eventlog::connect(&pgharness::throwaway().fresh_database()).await.unwrap();
    other.batch_execute("SET application_name = 'adhoc'; BEGIN; SELECT pg_current_xact_id()").await.unwrap();
    let pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let client = eventlog::connect(&url).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO log.events (aggregate_id, version, type, ts, payload) \
             SELECT 9, max(version) + 1, 'deposited', now(), '{\"amount_cents\": 5}' FROM log.events WHERE aggregate_id = 9",
        )
        .await
        .unwrap();
    let held = run_ok(&url, &["projections"]);
    assert!(held.contains(&format!("waiting on pid {pid}")), "{held}");
    assert!(held.contains("application \"adhoc\"") && held.contains("idle in transaction"), "{held}");
    other.batch_execute("ROLLBACK").await.unwrap();
}
