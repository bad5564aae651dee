//! `bench isolation --cpu-split`: the cores split between the live path and the protected
//! replays, and the live path kept on its half for the bench's run: this process and every
//! process of the PostgreSQL server, found through `/proc`.
//!
//! The replay's own lever (`--cpus`, applied by [`projector::CpuPriority`] to the replay and its
//! backends) is in the projector; what only this bench needs (walking a process tree, pinning
//! whole processes) is here.

use anyhow::{Context, Result};
use projector::priority::{format_cpus, online_cores, set_affinity, threads_of};

/// The cores of `range`, one bit each (cores past 63 are left out).
fn cores(range: std::ops::Range<usize>) -> u64 {
    range.filter(|&core| core < 64).fold(0, |mask, core| mask | 1 << core)
}

/// Every online core, one bit each.
pub(crate) fn every_core() -> u64 {
    cores(0..online_cores())
}

/// The split of this machine's cores: `(live, replay)`, the live path on the first half (the
/// larger one when the count is odd), the replays on the rest; fails on a single core.
pub fn split_cores() -> Result<(u64, u64), String> {
    let cores_online = online_cores();
    if cores_online < 2 {
        return Err(format!("--cpu-split needs at least 2 cores; this machine has {cores_online}"));
    }
    let live = cores_online.div_ceil(2);
    Ok((cores(0..live), cores(live..cores_online)))
}

/// Keeps every thread of process `pid` on the cores of `cpus`; a thread that exits meanwhile is
/// skipped. Threads started later inherit the set of the thread that starts them.
/// A process that has exited (its threads all gone) is not a failure.
fn set_process_affinity(pid: u32, cpus: u64) -> std::io::Result<()> {
    for tid in threads_of(pid) {
        match set_affinity(tid, cpus) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_of(*child) == Some(pid))
        .collect()
}

/// The parent of process `pid`, if it still exists.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so parse after the last `)`.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The live path kept on some cores for the bench's run: this process (the API, the load) and
/// the PostgreSQL server (its postmaster, so every backend forked later, and every process it
/// has forked). Dropped: all of them back on every core, so the embedded cluster is not left
/// pinned.
pub(crate) struct LivePinned {
    postmaster: u32,
}

impl LivePinned {
    pub(crate) async fn pin(client: &tokio_postgres::Client, cpus: u64) -> Result<LivePinned> {
        let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        let postmaster = parent_of(backend as u32)
            .context("--cpu-split: the PostgreSQL server is not a local process (use the embedded cluster)")?;
        let pinned = LivePinned { postmaster };
        pinned
            .set(cpus)
            .context("--cpu-split: pinning the live path (the server must run as this user, or as root)")?;
        tracing::info!(cores = %format_cpus(cpus), postmaster, "live path pinned: this process and the PostgreSQL server");
        Ok(pinned)
    }

    fn set(&self, cpus: u64) -> std::io::Result<()> {
        set_process_affinity(std::process::id(), cpus)?;
        set_process_affinity(self.postmaster, cpus)?;
        children_of(self.postmaster).into_iter().try_for_each(|child| set_process_affinity(child, cpus))
    }
}

impl Drop for LivePinned {
    fn drop(&mut self) {
        if let Err(e) = self.set(every_core()) {
            tracing::warn!(error = %e, "could not put the live path back on every core");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = parent_of(me).expect("this process exists");
        assert!(children_of(parent).contains(&me));
    }

    #[test]
    fn the_split_gives_the_live_path_the_larger_half_and_the_replays_the_rest() {
        assert_eq!(cores(0..3), 0b111);
        assert_eq!(cores(62..70), 0b11 << 62, "cores past 63 are left out");
        assert_eq!(every_core().count_ones() as usize, online_cores());
        match split_cores() {
            Ok((live, replay)) => {
                assert_eq!(live & replay, 0);
                assert_eq!(live | replay, every_core());
                assert!(live.count_ones() >= replay.count_ones() && replay != 0);
                assert_eq!(live & 1, 1, "the live path has core 0");
            }
            Err(e) => assert!(online_cores() < 2 && e.contains("--cpu-split"), "{e}"),
        }
    }

    #[test]
    fn a_whole_process_is_pinned_and_put_back() {
        // A child process of its own, so this test binary keeps its cores.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        set_process_affinity(pid, 1).expect("a child of this user can be pinned");
        let allowed = |pid: u32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_owned()
        };
        assert_eq!(allowed(pid), "0");
        set_process_affinity(pid, every_core()).unwrap();
        assert_eq!(allowed(pid), format_cpus(every_core()));
        child.kill().unwrap();
        child.wait().unwrap();
        set_process_affinity(pid, every_core()).expect("an exited process is not a failure");
    }
}
