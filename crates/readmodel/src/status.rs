//! What an operator must see of each version besides its positions: events held behind a
//! version gap, dead letters and quarantined aggregates, and, for a version still building,
//! how far its replay has got and when it should be done (from the replay's measured rate).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::Result;

const COUNTS: &str = include_str!("sql/status_counts.sql");
const PROGRESS_UPSERT: &str = include_str!("sql/build_progress_upsert.sql");
const PROGRESS_SELECT: &str = include_str!("sql/build_progress_select.sql");
const PARTITION_SIZES: &str = include_str!("sql/log_partition_sizes.sql");

/// A version's events that are not (yet) in its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Events read past their position, waiting for an earlier version of their aggregate.
    pub held_events: i64,
    /// Events that could not be folded (kept in `read.dead_letters`).
    pub dead_letters: i64,
    /// Aggregates whose row is not served because an event of theirs was dead-lettered.
    pub quarantined_aggregates: i64,
}

/// [`Counts`] of every registered version.
pub async fn counts<C: GenericClient>(client: &C) -> Result<HashMap<String, Counts>> {
    let rows = client.query(COUNTS, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                Counts { held_events: r.get(1), dead_letters: r.get(2), quarantined_aggregates: r.get(3) },
            )
        })
        .collect())
}

/// Which part of a rebuild is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildPhase {
    /// Folding whole log partitions below the bulk boundary.
    Bulk,
    /// Tailing the log from the bulk boundary until the lag is 0.
    CatchUp,
}

impl BuildPhase {
    fn as_str(self) -> &'static str {
        match self {
            BuildPhase::Bulk => "bulk",
            BuildPhase::CatchUp => "catch_up",
        }
    }
}

/// A replay's progress as it last recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildProgress {
    pub version: String,
    pub phase: BuildPhase,
    /// Events the bulk phase has read.
    pub events_done: i64,
    /// Events below the bulk boundary (estimated from the statistics at its start).
    pub events_total: i64,
    /// The bulk phase's measured rate (events read per second since it started).
    pub events_per_s: f64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A version's expected completion, derived from its [`BuildProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BuildEstimate {
    /// Share of the work done, 0..=1.
    pub progress_ratio: f64,
    /// Seconds to go at the measured rate, counted from now (`None`: no rate measured yet).
    pub eta_seconds: Option<f64>,
    /// When the version should be ready.
    pub expected_ready_at: Option<DateTime<Utc>>,
}

impl BuildProgress {
    /// The share done and the time to go at the measured rate. In the bulk phase that is the
    /// rest of the bulk events; in catch-up it is `lag_events` (events after the version's
    /// positions) at the bulk phase's rate. The time since the replay recorded its progress
    /// counts as time spent.
    pub fn estimate(&self, lag_events: i64, now: DateTime<Utc>) -> BuildEstimate {
        let (done, total) = match self.phase {
            BuildPhase::Bulk => (self.events_done.max(0), self.events_total.max(self.events_done).max(0)),
            BuildPhase::CatchUp => {
                let done = self.events_total.max(self.events_done).max(0);
                (done, done + lag_events.max(0))
            }
        };
        let remaining = (total - done) as f64;
        let progress_ratio = if total == 0 { 1.0 } else { (done as f64 / total as f64).clamp(0.0, 1.0) };
        let eta_seconds = (self.events_per_s > 0.0).then(|| {
            let since = (now - self.updated_at).num_milliseconds().max(0) as f64 / 1e3;
            (remaining / self.events_per_s - since).max(0.0)
        });
        let expected_ready_at = eta_seconds.map(|s| now + chrono::Duration::milliseconds((s * 1e3).min(1e15) as i64));
        BuildEstimate { progress_ratio, eta_seconds, expected_ready_at }
    }
}

/// Records a replay's progress (overwrites the version's previous record).
pub async fn record_build_progress<C: GenericClient>(client: &C, p: &BuildProgress) -> Result<()> {
    client
        .execute(
            PROGRESS_UPSERT,
            &[&p.version, &p.phase.as_str(), &p.events_done, &p.events_total, &p.events_per_s, &p.started_at],
        )
        .await?;
    Ok(())
}

/// The recorded progress of every version that has had a replay, by version.
pub async fn build_progress<C: GenericClient>(client: &C) -> Result<HashMap<String, BuildProgress>> {
    let rows = client.query(PROGRESS_SELECT, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let version: String = r.get(0);
            let phase = if r.get::<_, &str>(1) == "bulk" { BuildPhase::Bulk } else { BuildPhase::CatchUp };
            let p = BuildProgress {
                version: version.clone(),
                phase,
                events_done: r.get(2),
                events_total: r.get(3),
                events_per_s: r.get(4),
                started_at: r.get(5),
                updated_at: r.get(6),
            };
            (version, p)
        })
        .collect())
}

/// Each log partition's row count as the statistics know it (no scan), by partition number:
/// the yardstick of a replay's progress. 0 for a partition the statistics have not seen.
pub async fn log_partition_sizes<C: GenericClient>(client: &C, partitions: u32) -> Result<Vec<u64>> {
    let rows = client.query(PARTITION_SIZES, &[]).await?;
    let by_name: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok((0..partitions)
        .map(|p| by_name.get(&eventlog::partition_table(p)).copied().unwrap_or(0).max(0) as u64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(phase: BuildPhase, done: i64, total: i64, rate: f64, now: DateTime<Utc>) -> BuildProgress {
        BuildProgress {
            version: "v4".into(),
            phase,
            events_done: done,
            events_total: total,
            events_per_s: rate,
            started_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_bulk_phase_is_done_when_its_rest_is_read_at_the_measured_rate() {
        let now = Utc::now();
        let e = progress(BuildPhase::Bulk, 250, 1_000, 50.0, now).estimate(0, now);
        assert_eq!(e.progress_ratio, 0.25);
        assert_eq!(e.eta_seconds, Some(15.0));
        assert_eq!(e.expected_ready_at, Some(now + chrono::Duration::seconds(15)));
    }

    #[test]
    fn time_since_the_record_counts_as_spent_and_the_eta_never_goes_negative() {
        let now = Utc::now();
        let p = progress(BuildPhase::Bulk, 250, 1_000, 50.0, now - chrono::Duration::seconds(5));
        assert_eq!(p.estimate(0, now).eta_seconds, Some(10.0));
        assert_eq!(p.estimate(0, now + chrono::Duration::seconds(60)).eta_seconds, Some(0.0));
    }

    #[test]
    fn catch_up_waits_for_the_lag_and_no_rate_means_no_eta() {
        let now = Utc::now();
        let e = progress(BuildPhase::CatchUp, 1_000, 1_000, 100.0, now).estimate(1_000, now);
        assert_eq!(e.progress_ratio, 0.5);
        assert_eq!(e.eta_seconds, Some(10.0));
        let e = progress(BuildPhase::Bulk, 0, 1_000, 0.0, now).estimate(0, now);
        assert_eq!((e.progress_ratio, e.eta_seconds, e.expected_ready_at), (0.0, None, None));
        let e = progress(BuildPhase::Bulk, 0, 0, 0.0, now).estimate(0, now);
        assert_eq!(e.progress_ratio, 1.0);
    }
}
