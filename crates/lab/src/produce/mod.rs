//! The live producer: concurrent writers that keep appending to the seeded log at a steady
//! rate, with optimistic concurrency, and keep `lab.expected_accounts` true in the same
//! transaction as every append.
//!
//! **Batches.** A writer commits a batch of commands per transaction, in a handful of round
//! trips whatever the batch's size: one `SELECT ... = ANY` of the expected state of the
//! aggregates the batch touches (pipelined with the new aggregate ids it needs), one of the
//! log's sequence values, then, pipelined, one `INSERT ... SELECT FROM unnest` of the events,
//! one `UPDATE ... FROM unnest` of the expected rows (guarded by the version each was read at)
//! and one `INSERT ... FROM unnest` of the aggregates it opened. At a paced rate the batch
//! shrinks so that a writer still commits about 100 times a second; a writer behind its
//! schedule (round trips slowed by a busy server or a busy CPU) catches up with bigger
//! batches, up to the configured most, not with more transactions: the rate then holds as
//! long as the server keeps up with the events, not with the commits.
//!
//! **Ranges.** Writer `w` of `W` owns the aggregates with `(id - 1) % W == w` and draws them
//! with its own Zipf ranks (its rank k is its k-th id): popularity stays Zipf within each
//! range, and two writers never race on the same aggregate except through the cross-range
//! transfers below. Reads take no lock: the optimistic checks (the guarded update's row
//! count, the log's unique `(aggregate_id, version)`) are what keeps the state true, and a
//! batch that loses a race rolls back whole and is drawn again (a conflict and a retry).
//!
//! **Transfers.** A transfer writes two aggregates in one transaction. Most stay inside the
//! writer's range; a share (`cross_range_ratio`) sends to another writer's aggregate. Those
//! are written last, inside a savepoint, after the batch's own events (so the transaction's
//! id is already taken) and a short pause: the receiver is read only then, so another
//! writer may have committed the receiver's previous version meanwhile with a newer
//! transaction id, and in `(tx_id, global_seq)` order the receiver's version n+1 comes before
//! its version n. Projectors must hold it until version n arrives. The cross-range part reads
//! its rows `FOR UPDATE SKIP LOCKED`: a receiver that another writer's open transaction holds
//! (under Zipf, the owner's hot aggregates mostly are) is not waited for; that transfer is
//! dropped and counted as a conflict. A cross-range part that still loses a race (the owner's
//! uncommitted event of the same version, met within a short `lock_timeout`, which also rules
//! out waiting in a deadlock) rolls back to its savepoint and is tried again, up to three
//! times; the batch's own events are kept.
//!
//! Counters `reproject_produce_events_total`, `reproject_produce_conflicts_total` and
//! `reproject_produce_retries_total` go to the `metrics` recorder, if one is installed, and
//! the run's report keeps them per second.

mod config;
mod cross;
mod report;
mod sampler;
mod sql;
mod writer;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::info;

use crate::{Error, Result};
use sampler::{sample_seconds, Counters};
use writer::Writer;

pub use config::ProduceConfig;
pub use report::{ProduceReport, ProduceSecond};
pub use sampler::{CONFLICTS_TOTAL, EVENTS_TOTAL, RETRIES_TOTAL};

/// Appends to the log at `url` until `duration` passes or `stop` turns true.
pub async fn run(url: &str, cfg: ProduceConfig, stop: watch::Receiver<bool>) -> Result<ProduceReport> {
    cfg.validate()?;
    let client = eventlog::connect_as(url, "reproject producer").await?;
    let seeded: bool = client.query_one("SELECT to_regclass('lab.expected_accounts') IS NOT NULL", &[]).await?.get(0);
    if !seeded || !eventlog::exists(&client).await? {
        return Err(Error::NotSeeded);
    }
    // Optimistic concurrency relies on the log's unique (aggregate_id, version).
    eventlog::ensure_indexes(&client).await?;
    let max_id: i64 =
        client.query_one("SELECT coalesce(max(aggregate_id), 0) FROM lab.expected_accounts", &[]).await?.get(0);
    let max_id = Arc::new(AtomicI64::new(max_id));
    drop(client);

    info!(rate = cfg.rate, writers = cfg.writers, batch = cfg.batch_size(), "producer starting");
    let counters = Arc::new(Counters::default());
    let mut writers = Vec::with_capacity(cfg.writers as usize);
    for w in 0..cfg.writers {
        writers.push(Writer::connect(url, &cfg, w, max_id.clone(), counters.clone()).await?);
    }
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in writers {
        tasks.spawn(writer.run(cfg.clone(), deadline, stop.clone()));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample_seconds(counters.clone(), started, done_rx));
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::Config(format!("writer task failed: {e}")));
            }
        }
    }
    done_tx.send(true).ok();
    let per_second = sampler.await.unwrap_or_default();
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut report = counters.report();
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_s = report.events as f64 / report.seconds.max(1e-9);
    report.conflicts_per_s = report.conflicts as f64 / report.seconds.max(1e-9);
    report.per_second = per_second;
    info!(
        events = report.events,
        conflicts = report.conflicts,
        retries = report.retries,
        events_per_s = report.events_per_s,
        "producer stopped"
    );
    Ok(report)
}
