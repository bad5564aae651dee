//! End-to-end tests of the `reproject` binary against a real throwaway PostgreSQL: flags,
//! crashes (SIGKILL) under concurrent writers, and the demo's story at small scale.

mod crash;
mod demo;
mod flags;
mod horizon;
#[cfg(feature = "kafka")]
mod kafka;
mod large;
mod obs;
mod redis;
mod serve;
mod support;
mod verify;
mod workers;
