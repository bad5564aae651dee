//! Bad flags fail before any work, with a message that names the flag.

use crate::support::run;

/// A URL that cannot be connected to: a flag error must come before any connection attempt.
const NOWHERE: &str = "postgresql://nobody@127.0.0.1:1/none";

fn fails_naming(args: &[&str], needle: &str) {
    let out = run(NOWHERE, args);
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{args:?}: stderr does not name {needle:?}:\n{stderr}");
    assert!(!stderr.contains("connect"), "{args:?} tried to connect before validating:\n{stderr}");
}

#[test]
fn bad_flags_are_refused_before_any_work() {
    fails_naming(&["projector", "--mode", "live", "--version", "v9"], "--projection v9");
    fails_naming(&["projector", "--mode", "live", "--projection", "v9"], "known: v3, v4, activity_v1");
    fails_naming(&["projector", "--mode", "live", "--version", "v4", "--batch", "0"], "--batch");
    fails_naming(&["projector", "--mode", "sideways", "--version", "v4"], "--mode");
    fails_naming(&["projector", "--mode", "replay", "--version", "v4", "--rate-limit=-3"], "--rate-limit");
    fails_naming(&["projector", "--mode", "replay", "--version", "v4", "--workers", "0"], "--workers");
    fails_naming(&["projector", "--mode", "live", "--version", "v4", "--catch-up"], "--catch-up");
    fails_naming(&["projector", "--mode", "live", "--version", "v4", "--poll", "fast"], "--poll");
    fails_naming(&["repair", "--version", "v4", "--aggregate", ""], "--aggregate");
    fails_naming(&["repair", "--version", "v9", "--aggregate", "1"], "--projection v9");
    fails_naming(&["snapshot", "--version", "v4", "--every", "0"], "--every");
    fails_naming(&["snapshot", "--version", "v7"], "--projection v7");
    fails_naming(&["bench", "time-travel", "--snapshot-every=-5"], "--snapshot-every");
    fails_naming(&["bench", "isolation", "--block", "1500ms"], "--block");
    fails_naming(&["bench", "isolation", "--rounds", "0"], "--rounds");
    fails_naming(&["projector", "--mode", "replay", "--version", "v4", "--cpus", "64"], "--cpus");
    fails_naming(&["projector", "--mode", "replay", "--version", "v4", "--cpus", "one"], "--cpus");
    fails_naming(&["projector", "--mode", "live", "--version", "v4", "--sched-idle"], "--sched-idle");
    fails_naming(&["bench", "isolation", "--curve", "150%"], "--curve");
    fails_naming(&["bench", "isolation", "--curve", "fast"], "--curve");
    fails_naming(&["bench", "replay", "--workers", "0"], "--workers");
    fails_naming(&["bench", "replay", "--aggregates", "0"], "--aggregates");
    fails_naming(&["bench", "produce", "--events", "10", "--aggregates", "11"], "--aggregates");
    fails_naming(&["bench", "batch-sweep", "--batches", "100,0"], "--batches");
    fails_naming(&["bench", "cutover", "--concurrency", "0"], "--concurrency");
    fails_naming(&["bench", "cutover", "--ingest=-5"], "--ingest");
    fails_naming(&["bench", "converge", "--ingest", "0"], "--ingest");
    fails_naming(&["bench", "converge", "--replay-rate-limit", "0"], "--replay-rate-limit");
    fails_naming(&["seed", "--zipf", "0"], "--zipf");
    fails_naming(&["seed", "--zipf", "NaN"], "--zipf");
    fails_naming(&["seed", "--events", "1000000000000000000"], "--events 1000000000000000000 is too large");
    fails_naming(&["api", "--listen", "0.0.0.0:8080"], "--admin-token-file");
    fails_naming(&["api", "--admin-token-file", "/nonexistent/token"], "--admin-token-file");
    fails_naming(&["api", "--request-timeout", "0s"], "--request-timeout");
    fails_naming(&["projector", "--mode", "live", "--version", "v4", "--max-outage", "soon"], "--max-outage");
    fails_naming(&["produce", "--max-outage", "soon"], "--max-outage");
    let out = crate::support::bin()
        .args(["api"])
        .env("DATABASE_URL", NOWHERE)
        .env("REPROJECT_ADMIN_TOKEN", "short")
        .output()
        .expect("spawn reproject");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("REPROJECT_ADMIN_TOKEN") && stderr.contains("at least 16"),
        "{stderr}"
    );
}

#[tokio::test]
async fn repair_of_an_unknown_aggregate_says_so() {
    let url = crate::support::seeded(300, 30, 2).await;
    crate::support::run_ok(&url, &["projector", "--mode", "live", "--version", "v4", "--stop-at-head"]);
    let out = run(&url, &["repair", "--version", "v4", "--aggregate", "987654"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unknown aggregate 987654"), "{stderr}");
    assert!(!stderr.contains("4294967295"), "{stderr}");
    // An id is parsed as the log's type: a uuid in a bigint log is refused, naming it.
    let out = run(&url, &["repair", "--version", "v4", "--aggregate", "5a6fd385-7a2b-4c1e-9d3f-0123456789ab"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--aggregate") && stderr.contains("not a bigint"), "{stderr}");
    // Cutover and rollback need only a name: the registry answers for any version.
    let out = run(&url, &["cutover", "--projection", "v5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("v5 is not registered"), "{stderr}");
}
