//! Harness: run the binary against a fresh database, kill it, seed small logs.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The `reproject` binary built for these tests.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reproject"));
    cmd.env("REPROJECT_LOG", "warn");
    cmd
}

/// Runs the binary to completion against `url`.
pub fn run(url: &str, args: &[&str]) -> Output {
    bin().args(args).env("DATABASE_URL", url).stdin(Stdio::null()).output().expect("spawn reproject")
}

/// Runs the binary and asserts success, returning stdout.
pub fn run_ok(url: &str, args: &[&str]) -> String {
    let out = run(url, args);
    assert!(
        out.status.success(),
        "reproject {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Starts the binary in the background.
pub fn spawn(url: &str, args: &[&str]) -> Child {
    bin()
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reproject")
}

/// SIGKILLs a child after `after` (the kill point; not a synchronisation) and reaps it.
pub fn kill_after(mut child: Child, after: Duration) {
    std::thread::sleep(after);
    // SAFETY: kill(2) on a pid we own; the child is reaped right after.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// A fresh database with a seeded log.
pub async fn seeded(events: u64, aggregates: u64, partitions: u32) -> String {
    let url = pgharness::throwaway().fresh_database();
    let mut config = lab::SeedConfig::new(events, aggregates, 42);
    config.partitions = partitions;
    config.chunk_events = events / 3 + 1;
    lab::seed::run(&url, config).await.expect("seed");
    url
}

/// Verifies a version against the generator's true state.
pub async fn verify_expected(url: &str, projection: &dyn fold::AnyProjection) -> lab::VerifyReport {
    let client = eventlog::connect(url).await.expect("connect");
    lab::verify::against_expected(&client, projection).await.expect("verify")
}
