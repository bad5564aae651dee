//! `reproject verify --against W --at X`: two versions frozen at one position compare equal but
//! for the known fee-bug set; a version that is not at X is refused; a tampered row is caught.

use crate::support::*;

fn verify_at(url: &str, at: &str) -> std::process::Output {
    run(url, &["verify", "--version", "v4", "--against", "v3", "--at", at])
}

fn freeze(url: &str, version: &str, at: &str) {
    run_ok(url, &["projector", "--mode", "live", "--version", version, "--until", at]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_at_compares_two_versions_frozen_at_one_position() {
    let url = seeded(20_000, 2_000, 4).await;
    let x1 = run_ok(&url, &["position"]).trim().to_owned();
    freeze(&url, "v3", &x1);
    freeze(&url, "v4", &x1);
    let out = run_ok(&url, &["verify", "--version", "v4", "--against", "v3", "--at", &x1]);
    assert!(out.contains("unexpected: 0") && out.contains("verdict: OK"), "{out}");
    assert!(out.contains("known to differ"), "the seeded log has fee-bug aggregates: {out}");

    // The log moves on and only v3 follows it to X2: neither position has both versions.
    let mut client = eventlog::connect(&url).await.unwrap();
    let next: i32 =
        client.query_one("SELECT max(version) + 1 FROM log.events WHERE aggregate_id = 1", &[]).await.unwrap().get(0);
    let tx = client.transaction().await.unwrap();
    for k in 0..50 {
        let event = eventlog::NewEvent {
            aggregate_id: 1.into(),
            version: next + k,
            event_type: "deposited".into(),
            ts: chrono::Utc::now(),
            payload: r#"{"amount_cents":100}"#.into(),
        };
        eventlog::append_event(&tx, &event).await.unwrap();
    }
    tx.commit().await.unwrap();
    let x2 = run_ok(&url, &["position"]).trim().to_owned();
    assert_ne!(x1, x2);
    freeze(&url, "v3", &x2);
    for (at, lagging) in [(&x1, "v3"), (&x2, "v4")] {
        let out = verify_at(&url, at);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--at {at} with {lagging} elsewhere must fail");
        assert!(stderr.contains(&format!("{lagging} is not frozen at {at}")), "{stderr}");
    }
    freeze(&url, "v4", &x2);
    let out = verify_at(&url, &x2);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // A row changed behind the projectors' back, on an account the fee bug does not touch.
    let changed = client
        .execute(
            "UPDATE read.accounts_v4 SET balance = balance + 1 WHERE aggregate_id = \
             (SELECT min(aggregate_id) FROM lab.expected_accounts WHERE NOT v3_bug)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let out = verify_at(&url, &x2);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("unexpected: 1") && stdout.contains("verdict: MISMATCH"), "{stdout}");
}
