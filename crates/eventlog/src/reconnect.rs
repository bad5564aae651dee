//! Riding out a database outage: which errors are the infrastructure's (a lost connection, a
//! server restarting) and worth a reconnect, and the capped, jittered backoff between attempts,
//! bounded by the longest outage a process accepts (`--max-outage`).
//!
//! A long-running process (the live projector, the producer, `obs`) wraps its session in a
//! loop: on an error that [`is_transient`] says is the infrastructure's, [`Reconnect::wait`]
//! logs the attempt with its reason, counts it and sleeps; the process then reconnects and
//! resumes from what the database holds (a projector from its stored positions, which commit
//! with the rows), and calls [`Reconnect::recovered`] once it works again. Any other error, or
//! an outage longer than the limit, ends the process with an error naming it.

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_postgres::error::SqlState;

/// Counter: reconnections after a lost or refused connection (label `process`: live, replay,
/// producer, api, obs).
pub const RECONNECTS: &str = "reproject_db_reconnects_total";

/// How long a process accepts the database being unreachable by default, before giving up.
pub const DEFAULT_MAX_OUTAGE: Duration = Duration::from_secs(300);

/// The first wait after a failure.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// SQLSTATEs that mean the server or the connection went away, not that the request was wrong:
/// admin shutdown (a terminated backend, a fast stop), crash shutdown (another backend crashed
/// and the server restarts), cannot connect now (starting up, in recovery), too many
/// connections, and the connection exceptions of class 08.
const TRANSIENT: [SqlState; 9] = [
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::CONNECTION_EXCEPTION,
    SqlState::CONNECTION_DOES_NOT_EXIST,
    SqlState::CONNECTION_FAILURE,
    SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
    SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION,
];

/// Whether `err` (or the first `tokio_postgres::Error` in its chain of sources) is a fault of
/// the infrastructure that a new connection may cure: the connection closed, refused or timed
/// out, an I/O error under it, or one of the SQLSTATEs of a server going away. An error with no
/// database error in its chain (a bad event, a bad flag) is never transient.
pub fn is_transient(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            return pg_is_transient(pg);
        }
        next = e.source();
    }
    false
}

fn pg_is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return TRANSIENT.contains(code);
    }
    // No SQLSTATE: a connect, I/O or timeout failure. Its sources say which.
    let mut next = e.source();
    while let Some(s) = next {
        if s.is::<std::io::Error>() {
            return true;
        }
        next = s.source();
    }
    let text = e.to_string();
    text.contains("error connecting") || text.contains("timeout") || text.contains("timed out")
}

/// The reason an error gives, for a log line: a database error's severity, SQLSTATE and
/// message (tokio-postgres shows only "db error"), else the error and its sources.
pub fn reason(err: &(dyn StdError + 'static)) -> String {
    let mut next = Some(err);
    let mut parts = Vec::new();
    while let Some(e) = next {
        if let Some(db) = e.downcast_ref::<tokio_postgres::error::DbError>() {
            parts.push(format!("{} {}: {}", db.severity(), db.code().code(), db.message()));
            break;
        }
        let text = e.to_string();
        if !parts.last().is_some_and(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// An outage that lasted longer than the process accepts, or an error that is not the
/// infrastructure's: the reason a reconnect loop gives up.
#[derive(Debug, thiserror::Error)]
pub enum GiveUp {
    #[error(
        "{process}: the database has been unreachable for {lasted_s:.1}s ({attempts} attempts), over --max-outage \
         {max_s}s; last error: {last}"
    )]
    Outage { process: String, lasted_s: f64, attempts: u32, max_s: u64, last: String },
}

/// The retry state of one process's database session: capped exponential backoff with jitter,
/// the outage in progress, and the limit on its length.
#[derive(Debug)]
pub struct Reconnect {
    process: &'static str,
    max_outage: Duration,
    outage: Option<Outage>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    attempts: u32,
}

impl Reconnect {
    /// The retry state of `process` (the metric's label: `live`, `producer`, `api`, `obs`, ...),
    /// giving up after an outage of `max_outage`.
    pub fn new(process: &'static str, max_outage: Duration) -> Reconnect {
        // The series exists from the start, at 0: a board shows "no reconnects", not "no data".
        metrics::counter!(RECONNECTS, "process" => process).increment(0);
        Reconnect { process, max_outage, outage: None }
    }

    /// The longest outage accepted.
    pub fn max_outage(&self) -> Duration {
        self.max_outage
    }

    /// Whether an outage is in progress (a failure seen, no recovery since).
    pub fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// After `err`: the wait before the next attempt, or why not to make one (the outage has
    /// lasted too long). Logs the attempt once, at WARN, with its reason. The caller checks
    /// [`is_transient`] first: a permanent error is not this function's to retry.
    pub fn next_delay(&mut self, err: &dyn std::fmt::Display) -> Result<Duration, GiveUp> {
        let outage = self.outage.get_or_insert(Outage { since: Instant::now(), attempts: 0 });
        outage.attempts += 1;
        let lasted = outage.since.elapsed();
        if lasted >= self.max_outage {
            return Err(GiveUp::Outage {
                process: self.process.to_owned(),
                lasted_s: lasted.as_secs_f64(),
                attempts: outage.attempts,
                max_s: self.max_outage.as_secs(),
                last: err.to_string(),
            });
        }
        let delay = backoff(outage.attempts).min(self.max_outage - lasted);
        tracing::warn!(
            process = self.process,
            attempt = outage.attempts,
            outage_s = lasted.as_secs_f64(),
            retry_in_ms = delay.as_millis() as u64,
            reason = %err,
            "database connection lost: reconnecting"
        );
        Ok(delay)
    }

    /// [`Reconnect::next_delay`], then sleeps it.
    pub async fn wait(&mut self, err: &(dyn std::fmt::Display + Sync)) -> Result<(), GiveUp> {
        let delay = self.next_delay(err)?;
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// The session works again: ends the outage (logged with its length) and counts the
    /// reconnection. A no-op when no outage is in progress.
    pub fn recovered(&mut self) {
        if let Some(outage) = self.outage.take() {
            metrics::counter!(RECONNECTS, "process" => self.process).increment(1);
            tracing::warn!(
                process = self.process,
                attempts = outage.attempts,
                outage_s = outage.since.elapsed().as_secs_f64(),
                "database connection back: resumed"
            );
        }
    }
}

/// The wait before attempt `n` (from 1): doubling from 100 ms up to 2 s, then a random point
/// in its upper half, so that many clients cut off at once do not reconnect in step.
fn backoff(n: u32) -> Duration {
    let exp = FIRST_DELAY.saturating_mul(1u32 << (n - 1).min(16)).min(MAX_DELAY);
    let half = exp / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        for n in 1..40 {
            let d = backoff(n);
            let ceiling = FIRST_DELAY.saturating_mul(1u32 << (n - 1).min(16)).min(MAX_DELAY);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {n}: {d:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
        }
        assert!(backoff(30) >= MAX_DELAY / 2);
    }

    #[test]
    fn an_error_without_a_database_error_is_permanent() {
        let io = std::io::Error::other("disk full");
        assert!(!is_transient(&io), "a bare I/O error is not a database fault");
    }

    #[test]
    fn an_outage_past_the_limit_gives_up_naming_it() {
        let mut r = Reconnect::new("test", Duration::ZERO);
        let e = r.next_delay(&"connection closed").unwrap_err().to_string();
        assert!(e.contains("test") && e.contains("--max-outage") && e.contains("connection closed"), "{e}");
    }

    #[test]
    fn a_recovery_ends_the_outage() {
        let mut r = Reconnect::new("test", Duration::from_secs(60));
        assert!(r.next_delay(&"refused").is_ok());
        assert!(r.in_outage());
        r.recovered();
        assert!(!r.in_outage());
    }
}
