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
//!
//! Either needs the right to change the target's priority: this process's own threads always,
//! a backend when the server runs as this user (the embedded cluster) or as root. A failure is
//! logged once and the replay goes on at the priority it has.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::Client;
use tracing::info;

/// How the replay competes for the CPU with live serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuPriority {
    /// Niceness 0..=19; 0 leaves it as it is.
    pub nice: i32,
    /// Run in the `SCHED_IDLE` class.
    pub idle: bool,
}

impl CpuPriority {
    /// The priority the replay was started with, unchanged.
    pub const NORMAL: CpuPriority = CpuPriority { nice: 0, idle: false };

    /// Whether this changes nothing.
    pub fn is_normal(self) -> bool {
        self == CpuPriority::NORMAL
    }

    /// `normal`, `nice 19`, `idle`, or `idle, nice 19`.
    pub fn describe(self) -> String {
        match (self.idle, self.nice) {
            (false, 0) => "normal".to_owned(),
            (false, n) => format!("nice {n}"),
            (true, 0) => "idle".to_owned(),
            (true, n) => format!("idle, nice {n}"),
        }
    }

    /// Applies this priority to thread (or process) `tid`; 0 is the calling thread.
    fn apply(self, tid: libc::pid_t) -> std::io::Result<()> {
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
        let tids: Vec<libc::pid_t> = std::fs::read_dir("/proc/self/task")
            .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        for tid in std::iter::once(0).chain(tids) {
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
            CpuPriority { nice: 19, idle: true }.apply(0).expect("lowering one's own priority is always allowed");
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
        assert_eq!(CpuPriority { nice: 19, idle: false }.describe(), "nice 19");
        assert_eq!(CpuPriority { nice: 0, idle: true }.describe(), "idle");
        assert_eq!(CpuPriority { nice: 19, idle: true }.describe(), "idle, nice 19");
    }
}
