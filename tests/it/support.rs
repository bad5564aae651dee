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

