//! Adopting an application's own events table: the log fed from the table where the events
//! already are, online, with the app's writers unchanged and its own stream ids.
//!
//! The app's table stays the source of truth for its writers; `log.events` becomes a copy of
//! it in reproject's layout (hash-partitioned, gap-safe positions), fed in the background:
//!
//! 1. **Claim** ([`claim`], [`ensure_feed_index`]): one short transaction adds a nullable column to the app's table
//!    (`reproject_tx_id` by default) whose default is the inserting transaction's id, for new
//!    rows only (no rewrite: existing rows keep NULL). From that commit on, NULL rows are the
//!    history, a fixed set, and every new row carries its writer's xid. The column is indexed
//!    `CONCURRENTLY` (writers are not blocked) for the feed.
//! 2. **History** ([`import_history`]): the NULL rows are copied into `log.events` in chunks, each
//!    chunk and its progress in one transaction (resumable), ordered so that every stream's
//!    versions are copied in version order (a version never gets a smaller `global_seq` than
//!    its predecessor: time travel by offset stays a per-stream prefix).
//! 3. **Feed** ([`Feeder`], [`follow`]): the new rows are read below the horizon in `(tx, id, version)`
//!    order, the gap-safe cursor of the native log (ARCHITECTURE.md, invariant 1), and appended
//!    to `log.events` with the cursor in one transaction: nothing skipped, nothing twice.
//!
//! What changes for the app: its inserts evaluate one more column default and maintain one
//! more index; no trigger runs in its transactions, so nothing of ours can fail its writes.
//! UPDATE and DELETE on the app's table are not copied (the log keeps what was inserted):
//! they are counted from PostgreSQL's statistics and reported by the feed, and [`check`] names
//! the rows that differ.

mod check;
mod feed;
mod history;
mod setup;
mod spec;

pub use check::{check, CheckReport, RowDiff};
pub use feed::{feed_step, follow, FeedStep, Feeder, FEED_LOCK};
pub use history::{import_history, HistoryReport};
pub use setup::{adoption, claim, ensure_feed_index, inspect, Adoption, Phase, SourceTable};
pub use spec::{AdoptSpec, QualifiedName};

/// Metric names of the feed.
pub mod metric {
    /// Counter: events copied from the app's table into the log (label `phase` = history|feed).
    pub const EVENTS_COPIED: &str = "reproject_adopt_events_copied_total";
    /// Gauge: rows of the app's table updated or deleted since it was adopted (PostgreSQL's
    /// statistics; reset by a crash of the server), which the log does not reflect.
    pub const SOURCE_CHANGES: &str = "reproject_adopt_source_changed_rows";
    /// Gauge: seconds since the feed last had everything below the horizon copied.
    pub const LAG_SECONDS: &str = "reproject_adopt_lag_seconds";
}
