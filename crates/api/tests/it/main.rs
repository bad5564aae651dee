//! The HTTP API against a real PostgreSQL (one throwaway cluster, a fresh database per test)
//! and a real server on a loopback port.

mod cutover;
mod doors;
mod faults;
mod horizon;
mod reads;
mod support;
mod time_travel;
