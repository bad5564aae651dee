//! `lab large` end to end at a small scale: its four steps, its WAL ceiling, and a rerun that
//! finds every step done.

use std::process::Stdio;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_large_runs_its_four_steps_at_a_small_scale_and_a_rerun_skips_them() {
    let url = pgharness::throwaway().fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_arg = state.to_string_lossy().into_owned();
    let args = [
        "lab",
        "large",
        "--events",
        "20000",
        "--aggregates",
        "2000",
        "--ingest",
        "300",
        "--readers",
        "2",
        "--after-cutover",
        "1s",
        "--max-wal-mb",
        "1536",
        "--state",
        &state_arg,
    ];
    let run_large = || {
        let out = bin()
            .args(args)
            .env("DATABASE_URL", &url)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("spawn reproject");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "lab large failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let first = run_large();
    let report: serde_json::Value = serde_json::from_str(first.trim().lines().last().unwrap()).unwrap();
    let steps = &report["steps"];
    for step in ["seed", "v3_live", "rebuild_and_cutover", "verify"] {
        assert!(steps[step].is_object(), "step {step} not recorded: {report}");
    }
    assert_eq!(steps["verify"]["ok"], true, "{report}");
    assert_eq!(steps["verify"]["v4_diffs"], 0, "{report}");
    assert_eq!(steps["verify"]["v3_unexpected"], 0, "{report}");
    assert_eq!(steps["rebuild_and_cutover"]["reads"]["failed"], 0, "{report}");
    assert!(steps["rebuild_and_cutover"]["reads"]["requests"].as_u64().unwrap() > 0, "{report}");
    let client = eventlog::connect(&url).await.unwrap();
    assert_eq!(readmodel::version_info(&client, "v4").await.unwrap().state, readmodel::State::Active);
    // The WAL ceiling asked for is the server's (it was silently not, before).
    let wal: String = client.query_one("SHOW max_wal_size", &[]).await.unwrap().get(0);
    assert_eq!(wal, "1536MB");
    // A rerun finds every step done and does nothing again.
    let second = run_large();
    assert!(!second.contains("== step"), "a rerun redid a step: {second}");
    client.batch_execute("ALTER SYSTEM RESET max_wal_size").await.unwrap();
    client.batch_execute("SELECT pg_reload_conf()").await.unwrap();
}
