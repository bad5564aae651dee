//! The Redis store against a real `redis-server` and a real PostgreSQL log.

mod snapshot;
mod store;
mod support;
mod tail;
