//! The replay spread over processes: two `projector --mode replay` processes build one version
//! together, each claiming partitions with a session lock; one killed with SIGKILL while it
//! folds a partition loses only that partition, which the other takes once the dead session's
//! lock is gone; the build ends exact.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lab::bank::V4;

use crate::support::*;

/// The partitions whose bulk lock a session of application `name` holds right now.
pub async fn held_by(client: &tokio_postgres::Client, name: &str) -> Vec<i64> {
    client
        .query(
            "SELECT l.objid::BIGINT FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND a.application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// SIGKILLs `child` (a replay process whose connections are named `name`) while it holds a
/// partition's bulk lock, after it has moved from one partition to another (so it has folded at
/// least one): the kill lands inside a partition's fold, not between them. Returns the partition
/// it held, and reaps the child.
pub async fn kill_inside_second_partition(client: &tokio_postgres::Client, name: &str, child: &mut Child) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = None;
    let in_flight = loop {
        assert!(Instant::now() < deadline, "{name} never moved from one partition to the next");
        match (first, held_by(client, name).await.first().copied()) {
            (None, Some(p)) => first = Some(p),
            (Some(p0), Some(p)) if p != p0 => break p,
            _ => {}
        }
        tokio::task::yield_now().await;
    };
    // SAFETY: kill(2) on a child we own; it is reaped right after.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    in_flight
}

pub fn with_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replay_processes_share_the_bulk_and_one_killed_loses_only_its_partition() {
    let url = seeded(64_000, 4_000, 16).await;
    let client = eventlog::connect(&url).await.unwrap();
    let args = [
        "projector",
        "--mode",
        "replay",
        "--projection",
        "v4",
        "--workers",
        "1",
        "--rate-limit",
        "16000",
        "--catch-up",
        "--stop-at-head",
        "--progress",
        "false",
    ];
    let mut a = bin()
        .args(args)
        .env("DATABASE_URL", with_name(&url, "replay_a"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replay a");
    let b = bin()
        .args(args)
        .env("DATABASE_URL", with_name(&url, "replay_b"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replay b");
    let in_flight = kill_inside_second_partition(&client, "replay_a", &mut a).await;

    let out = tokio::task::spawn_blocking(move || b.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay b failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(report["finished_elsewhere"], false, "b outlived a: it passes the barrier and catches up: {report}");
    assert!(report["catch_up"].is_object(), "{report}");
    let replayed_by_b = report["partitions_replayed"].as_u64().unwrap();
    assert!(replayed_by_b < 16, "a folded some partitions before it was killed: {report}");
    assert!(replayed_by_b >= 2, "b folded its share and a's partition in flight ({in_flight}): {report}");
    let state = readmodel::version_info(&client, "v4").await.unwrap().state;
    assert_eq!(state, readmodel::State::Active, "the first version of its family, built: activated");
    let check = verify_expected(&url, &V4).await;
    assert_eq!(check.diffs, 0, "{}", check.render());
    assert!(held_by(&client, "replay_a").await.is_empty());
}
