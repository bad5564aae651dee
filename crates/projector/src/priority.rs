//! The replay's CPU priority: how a rebuild yields the cores to live serving.
//!
//! Two levers, both applied to every thread of the replay process and to the PostgreSQL backend
//! of each of its connections (the backends do most of a replay's work: the `COPY` out of the
//! log and the writes of the new table):
//!
//! - **nice** (0..=19) lowers the replay's weight: when both want a core, live serving gets
//!   nearly all of it. But a live read that wakes while the replay holds the core can still
//!   wait out part of the replay's slice.
//! - **`SCHED_IDLE`** puts the replay in the idle class: it runs only on a core nothing else
//!   wants, and a waking live read preempts it at once.
//! - **cores** (`--cpus`) keep the replay on some of the cores, so that live serving, kept on
//!   the others (`bench isolation --cpu-split`), never wakes on a core the replay is using.
//!   On the VMs measured this is the lever that works: the scheduler counts a core that runs
//!   only `SCHED_IDLE` work as idle and wakes live work onto it, and a wake-up onto a busy
//!   virtual CPU is slow (`scripts/cpu-interference.sh`).
//!
//! Either needs the right to change the target's priority: this process's own threads always,
//! a backend when the server runs as this user (the embedded cluster) or as root. A failure is
//! logged once and the replay goes on at the priority it has.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::Client;
use tracing::info;

/// How the replay competes for the CPU with live serving: its priority and the cores it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuPriority {
    /// Niceness 0..=19; 0 leaves it as it is.
    pub nice: i32,
    /// Run in the `SCHED_IDLE` class.
    pub idle: bool,
    /// The cores it may run on, one bit per core (bit 0: core 0); 0 leaves them as they are.
    pub cpus: u64,
}

impl CpuPriority {
    /// The priority the replay was started with, unchanged.
    pub const NORMAL: CpuPriority = CpuPriority { nice: 0, idle: false, cpus: 0 };

    /// Whether this changes nothing.
    pub fn is_normal(self) -> bool {
        self == CpuPriority::NORMAL
    }

    /// `normal`, or what is lowered: `idle, nice 19, cores 1`.
    pub fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.idle {
            parts.push("idle".to_owned());
        }
        if self.nice != 0 {
            parts.push(format!("nice {}", self.nice));
        }
        if self.cpus != 0 {
            parts.push(format!("cores {}", format_cpus(self.cpus)));
        }
        if parts.is_empty() {
            "normal".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Applies this priority to thread (or process) `tid`; 0 is the calling thread.
    fn apply(self, tid: libc::pid_t) -> std::io::Result<()> {
        if self.cpus != 0 {
            set_affinity(tid, self.cpus)?;
        }
        if self.nice != 0 {
            // SAFETY: setpriority takes plain integers and touches no memory of ours.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, self.nice) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if self.idle {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid sched_param that outlives the call, which only reads it.
            if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Applies this priority to every thread of this process. On Linux both the nice value and
    /// the scheduling class belong to each thread (threads inherit them when created), so every
    /// thread already running, such as the async runtime's workers, is changed, not only the
    /// calling one.
    pub fn apply_to_this_process(self) {
        if self.is_normal() {
            return;
        }
        for tid in std::iter::once(0).chain(threads_of(std::process::id())) {
            if let Err(error) = self.apply(tid) {
                // A thread that exited between listing and changing is not a failure.
                if error.raw_os_error() != Some(libc::ESRCH) {
                    self.warn_once("the replay process", &error);
                }
            }
        }
        info!(priority = %self.describe(), "replay process priority lowered");
    }

    /// Applies this priority to the PostgreSQL backend serving `client`.
    pub async fn apply_to_backend(self, client: &Client) {
        if self.is_normal() {
            return;
        }
        let pid: i32 = match client.query_one("SELECT pg_backend_pid()", &[]).await {
            Ok(row) => row.get(0),
            Err(e) => return self.warn_once("a PostgreSQL backend", &std::io::Error::other(e)),
        };
        match self.apply(pid) {
            Ok(()) => {
                tracing::debug!(backend_pid = pid, priority = %self.describe(), "postgres backend priority lowered")
            }
            Err(error) => self.warn_once("a PostgreSQL backend", &error),
        }
    }

    fn warn_once(self, what: &str, error: &std::io::Error) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(priority = %self.describe(), error = %error, "could not lower the priority of {what}; the replay runs at its current priority there");
        }
    }
}

/// Set once the first failure has been logged (one WARN per process).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Keeps thread (or process) `tid` (0: the calling thread) on the cores of `cpus` (a bit per core).
pub fn set_affinity(tid: libc::pid_t, cpus: u64) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it for cores < 64.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for core in (0..64).filter(|c| cpus & (1 << c) != 0) {
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed, read only during the call.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The threads of process `pid` (from `/proc/{pid}/task`); none if it has exited.
pub fn threads_of(pid: u32) -> Vec<libc::pid_t> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The cores online on this machine (at most 64), whatever this process is pinned to (unlike
/// `available_parallelism`, which counts only the cores this thread may use).
pub fn online_cores() -> usize {
    // SAFETY: sysconf takes and returns plain integers.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n.max(1) as usize).min(64)
}

/// Parses a core list such as `1`, `0,2` or `2-3` into a bit per core; every core must exist.
pub fn parse_cpus(list: &str) -> Result<u64, String> {
    let cores = online_cores();
    let mut mask = 0u64;
    for part in list.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let parse = |s: &str| s.parse::<usize>().map_err(|_| format!("{list:?}: {s:?} is not a core number"));
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi || hi >= cores {
            return Err(format!("{list:?}: cores run from 0 to {} on this machine", cores - 1));
        }
        for core in lo..=hi {
            mask |= 1 << core;
        }
    }
    Ok(mask)
}

/// `0-1,3` for the bits 0, 1 and 3.
pub fn format_cpus(mask: u64) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for core in (0..64).filter(|c| mask & (1 << c) != 0) {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == core => *hi = core,
            _ => ranges.push((core, core)),
        }
    }
    ranges
        .iter()
        .map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_and_nice(tid: libc::pid_t) -> (i32, i32) {
        // SAFETY: plain integer calls.
        unsafe { (libc::sched_getscheduler(tid), libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t)) }
    }

    #[test]
    fn a_thread_started_after_lowering_inherits_the_idle_class_and_the_nice_value() {
        // In a thread of its own, so the test harness's other threads keep their priority.
        std::thread::spawn(|| {
            CpuPriority { nice: 19, idle: true, cpus: 0 }
                .apply(0)
                .expect("lowering one's own priority is always allowed");
            assert_eq!(policy_and_nice(0), (libc::SCHED_IDLE, 19));
            let child = std::thread::spawn(|| policy_and_nice(0)).join().unwrap();
            assert_eq!(child, (libc::SCHED_IDLE, 19));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_description_names_each_lever() {
        assert_eq!(CpuPriority::NORMAL.describe(), "normal");
        assert_eq!(CpuPriority { nice: 19, idle: false, cpus: 0 }.describe(), "nice 19");
        assert_eq!(CpuPriority { nice: 0, idle: true, cpus: 0 }.describe(), "idle");
        assert_eq!(CpuPriority { nice: 19, idle: true, cpus: 0b10 }.describe(), "idle, nice 19, cores 1");
    }

    #[test]
    fn core_lists_parse_into_bits_and_back_and_a_core_past_the_machine_is_refused() {
        let last = online_cores() - 1;
        assert_eq!(parse_cpus("0"), Ok(1));
        assert_eq!(
            parse_cpus(&format!("0-{last}")).map(format_cpus),
            Ok(if last == 0 { "0".into() } else { format!("0-{last}") })
        );
        assert_eq!(format_cpus(0b1011), "0-1,3");
        let error = parse_cpus(&(last + 1).to_string()).unwrap_err();
        assert!(error.contains(&format!("0 to {last}")), "{error}");
        assert!(parse_cpus("one").unwrap_err().contains("not a core number"));
        assert!(parse_cpus("1-0").is_err());
    }

    #[test]
    fn a_thread_pinned_to_one_core_runs_only_there_and_still_sees_every_core() {
        std::thread::spawn(|| {
            let before = online_cores();
            set_affinity(0, 1).expect("one's own affinity can always be narrowed");
            assert_eq!(online_cores(), before, "the cores online do not depend on where this thread may run");
            // SAFETY: sched_getcpu takes nothing.
            for _ in 0..1000 {
                assert_eq!(unsafe { libc::sched_getcpu() }, 0);
                std::thread::yield_now();
            }
        })
        .join()
        .unwrap();
    }
}
