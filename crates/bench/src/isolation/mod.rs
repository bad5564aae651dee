//! `bench isolation` (experiment 3): live read latency with no replay, during a full-speed
//! replay, during a replay under a fixed rate limit, and during an adaptive one (AIMD on the live
//! p99); what isolation costs in replay events/s.
//!
//! A sub-millisecond p99 drifts between two identical no-replay phases run a minute apart by
//! more than the 10% an adaptive replay is allowed (measured: 0.71 to 1.51 ms for the same load
//! in one run). So the adaptive replay is measured against its own pauses: one replay runs
//! through the phase, stopped (`SIGSTOP`) and resumed (`SIGCONT`) in alternating blocks of a few
//! seconds, and the figure is the p99 of every request of the blocks it ran over the p99 of
//! every request of the blocks it was paused in. Both sides come from the same minutes, so a
//! drift of the machine falls on both. The first second of each block (the switch) counts on
//! neither side.
//!
//! A paused replay still holds its memory and its open COPY transactions. Whether that alone
//! costs the live reads anything is the presence check, the last phase: blocks in which a
//! replay process was started and then stopped, interleaved with blocks in which none exists.
//!
//! The live API and the load driver run in this process; each replay runs as a separate process
//! (`reproject projector --mode replay`, this same binary), as in production, so it competes for
//! the CPU as a process and can be throttled, deprioritized, pinned, paused and stopped on its
//! own. The protected phases (fixed limit, adaptive, presence check, rate curve) run it at
//! [`IsolationConfig::protected_priority`] (by default nice 19; `SCHED_IDLE` and its own cores
//! on request), its PostgreSQL backends too; full speed stays the unprotected worst case at
//! normal priority, on every core. With [`IsolationConfig::live_cpus`] the live path is kept
//! on the other cores ([`LivePinned`](crate::cpu_split::LivePinned)).

mod blocks;
mod child;
mod config;
mod output;
mod phases;
mod report;
mod run;

pub use config::IsolationConfig;
pub use report::{IsolationBench, IsolationPhase};
pub use run::isolation_bench;
