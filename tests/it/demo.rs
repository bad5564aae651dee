//! The README's first command, at small scale: the whole story ends with every check passing.

use crate::support::*;

#[test]
fn the_demo_tells_the_whole_story_at_small_scale() {
    let url = pgharness::throwaway().fresh_database();
    // Its Prometheus (when installed) on a port and in a directory of this test, stopped after.
    let obs = tempfile::tempdir().expect("tempdir");
    let obs_dir = obs.path().to_str().expect("utf-8 path").to_owned();
    let _stop = StopObs(obs_dir.clone());
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = run_ok(
        &url,
        &["demo", "--events", "30000", "--aggregates", "3000", "--ingest", "300", "--load", "6s"]
            .into_iter()
            .chain(["--prometheus-listen", &listen, "--obs-dir", &obs_dir])
            .collect::<Vec<_>>(),
    );
    let prometheus = out.lines().find(|l| l.starts_with("prometheus:")).expect("the demo says whether Prometheus runs");
    assert!(prometheus.contains(&format!("http://{listen}")) || prometheus.contains("not installed"), "{prometheus}");
    for line in
        ["v4 vs truth: 0 diffs -> OK", ", 0 not explained by the v3 fee bug", "equals the fold of the log prefix: OK"]
    {
        assert!(out.contains(line), "the demo's output lacks {line:?}:\n{out}");
    }
    let reads = out.lines().find(|l| l.contains("during replay and cutover")).expect("the summary's reads line");
    assert!(reads.contains(", 0 failed"), "{reads}");
    let v3 = out.lines().find(|l| l.starts_with("v3 vs truth:")).expect("a v3 line");
    assert!(
        v3.ends_with("-> OK") && !v3.starts_with("v3 vs truth: 0 diffs"),
        "v3 differs exactly on its bug set: {v3}"
    );
}

/// Stops the demo's Prometheus, pass or fail.
struct StopObs(String);

impl Drop for StopObs {
    fn drop(&mut self) {
        let _ = bin().args(["obs", "stop", "--dir", &self.0]).output();
    }
}
