//! Which `global_seq` offsets are final: no transaction that commits later can still add an
//! event at or below them (ARCHITECTURE.md, "Final cuts").
//!
//! A background sampler takes, every [`SAMPLE_EVERY`], a pair `(L, y)`: first `L`, the largest
//! `global_seq` handed out so far, then, in a later statement, `y`, a fresh transaction id.
//! Every transaction holding a `global_seq <= L` took it before `L` was read and took its xid
//! before that (the log's default takes the xid first), so its xid is below `y`, which was
//! assigned after. Once the tail boundary (the oldest running xid) is past `y`, all those
//! transactions have ended: every event with `global_seq <= L` that will ever exist is
//! committed and visible. The largest such `L` is [`Finality::final_through`].
//!
//! Taking `y` assigns a transaction id (one per sample, nothing is written): the API's only
//! use of the write side of PostgreSQL besides `POST /cutover`.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio_postgres::Client;

use crate::AppState;

const FINALITY_SUPPORT: &str = include_str!("sql/finality_support.sql");
const SEQUENCE_TAKEN: &str = include_str!("sql/sequence_taken.sql");

/// How often the sampler takes a `(L, y)` pair: an offset becomes final at most this long
/// after its writer and every transaction older than it have ended.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// How often the sampler refreshes the horizon-age gauge.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Samples kept while the boundary stands still (a long stall): past this, new samples are
/// dropped, which only delays finality, never makes it wrong.
const MAX_PENDING: usize = 4096;

/// `(L, y)`: every transaction holding a `global_seq <= seq` has an xid below `xid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    seq: i64,
    xid: i64,
}

#[derive(Debug)]
struct Ladder {
    /// Why no offset can be final, if so (a log created before the xid-first default, a
    /// cached sequence, no log yet).
    unsupported: Option<String>,
    /// Every event with `global_seq <=` this is final (`None`: nothing proven yet).
    final_through: Option<i64>,
    /// Samples not yet passed by the boundary, oldest first (their `seq` and `xid` rise).
    pending: VecDeque<Sample>,
}

/// The finality watermark of `global_seq` offsets, shared by the requests.
#[derive(Debug)]
pub struct Finality {
    ladder: Mutex<Ladder>,
}

impl Default for Finality {
    fn default() -> Self {
        Finality {
            ladder: Mutex::new(Ladder {
                unsupported: Some("the finality sampler has not run yet".into()),
                final_through: None,
                pending: VecDeque::new(),
            }),
        }
    }
}

impl Finality {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ladder> {
        self.ladder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest offset proven final given the boundary `horizon` read by the caller before
    /// it reads the events: `Err(reason)` when none can be.
    pub fn final_through(&self, horizon: i64) -> Result<Option<i64>, String> {
        let mut ladder = self.lock();
        if let Some(reason) = &ladder.unsupported {
            return Err(reason.clone());
        }
        ladder.advance(horizon);
        Ok(ladder.final_through)
    }

    fn record(&self, sample: Sample, horizon: i64) {
        let mut ladder = self.lock();
        ladder.unsupported = None;
        if ladder.pending.len() < MAX_PENDING {
            ladder.pending.push_back(sample);
        }
        ladder.advance(horizon);
    }

    fn unsupported(&self, reason: String) {
        let mut ladder = self.lock();
        ladder.unsupported = Some(reason);
        ladder.pending.clear();
    }
}

impl Ladder {
    /// Every sample whose xid is below the boundary has been passed: all transactions that
    /// could hold its offsets have ended.
    fn advance(&mut self, horizon: i64) {
        while let Some(s) = self.pending.front().copied() {
            if s.xid >= horizon {
                break;
            }
            self.pending.pop_front();
            self.final_through = Some(self.final_through.map_or(s.seq, |f| f.max(s.seq)));
        }
    }
}

/// Whether this log's offsets can be proven final; the reason when not.
async fn check_support(client: &Client) -> Result<(), String> {
    let row = match client.query_opt(FINALITY_SUPPORT, &[]).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err("the log has no global_seq sequence".into()),
        Err(e) => return Err(format!("the log is not readable: {e}")),
    };
    let cache: i64 = row.get(0);
    let default: String = row.get(1);
    if cache != 1 {
        return Err(format!("log.events_global_seq_seq caches {cache} values per session; offsets need CACHE 1"));
    }
    match (default.find("pg_current_xact_id()"), default.find("nextval(")) {
        (Some(xid), Some(seq)) if xid < seq => Ok(()),
        _ => Err(format!(
            "global_seq's default ({default}) does not take the transaction's xid before its sequence value; \
             see ARCHITECTURE.md, \"Final cuts\""
        )),
    }
}

/// One `(L, y)` sample and the boundary after it.
async fn sample(client: &Client) -> eventlog::Result<(Sample, i64)> {
    let seq: i64 = client.query_one(SEQUENCE_TAKEN, &[]).await?.get(0);
    // A statement of its own, after the one above returned: its xid is assigned after `seq`
    // was read. Autocommit: the transaction ends at once and never holds the boundary.
    let xid: i64 = client.query_one("SELECT pg_current_xact_id()::TEXT::BIGINT", &[]).await?.get(0);
    let horizon = eventlog::boundary(client).await?;
    Ok((Sample { seq, xid }, horizon))
}

/// The sampler: runs until the service's state is dropped. Also refreshes the
/// `reproject_log_horizon_age_seconds` gauge.
pub(crate) async fn run(state: Weak<AppState>, url: String) {
    let mut client: Option<Client> = None;
    let mut last_status = std::time::Instant::now() - STATUS_EVERY;
    let mut supported = false;
    loop {
        let Some(shared) = state.upgrade() else { return };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = eventlog::connect_as(&url, "reproject api finality").await.ok();
            supported = false;
        }
        if let Some(c) = &client {
            if !supported {
                match check_support(c).await {
                    Ok(()) => supported = true,
                    Err(reason) => shared.finality.unsupported(reason),
                }
            }
            if supported {
                match sample(c).await {
                    Ok((s, horizon)) => shared.finality.record(s, horizon),
                    Err(e) => {
                        tracing::debug!(error = %e, "finality sample failed");
                        supported = false;
                    }
                }
            }
            if last_status.elapsed() >= STATUS_EVERY {
                last_status = std::time::Instant::now();
                if let Ok(status) = eventlog::horizon_status(c).await {
                    metrics::gauge!(eventlog::HORIZON_AGE_SECONDS).set(status.age_seconds);
                }
            }
        }
        drop(shared);
        tokio::time::sleep(if supported { SAMPLE_EVERY } else { SAMPLE_EVERY * 10 }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_final_only_once_the_boundary_passes_its_sample() {
        let f = Finality::default();
        assert!(f.final_through(10).is_err(), "nothing sampled yet");
        f.record(Sample { seq: 100, xid: 50 }, 40);
        assert_eq!(f.final_through(45), Ok(None), "the boundary is below the sample's xid");
        f.record(Sample { seq: 120, xid: 60 }, 45);
        assert_eq!(f.final_through(51), Ok(Some(100)));
        assert_eq!(f.final_through(50), Ok(Some(100)), "never moves back");
        assert_eq!(f.final_through(61), Ok(Some(120)));
        f.unsupported("gone".into());
        assert!(f.final_through(100).is_err());
    }
}
