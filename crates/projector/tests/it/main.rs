//! Integration tests of the projectors against a real throwaway PostgreSQL.

mod activity;
mod faults;
mod repair;
mod replay;
mod skip;
mod snapshot;
mod stall;
mod support;
mod tail;
