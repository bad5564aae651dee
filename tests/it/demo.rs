//! The README's first command, at small scale: the whole story ends with every check passing.

use crate::support::*;

#[test]
fn the_demo_tells_the_whole_story_at_small_scale() {
    let url = pgharness::throwaway().fresh_database();
    let out = run_ok(&url, &["demo", "--events", "30000", "--aggregates", "3000", "--ingest", "300", "--load", "6s"]);
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
