//! Integration tests of the Kafka log: a real broker (`tansu`, started once per test process)
//! and a real PostgreSQL (the throwaway cluster).

mod compaction;
mod replay;
