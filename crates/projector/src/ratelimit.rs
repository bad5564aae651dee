//! A token bucket on events per second, shared by every replay worker, whose rate can be changed
//! while it is in use (the adaptive controller drives it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest single sleep of a waiter: a rate change (say, from the paused rate to a real one)
/// takes effect within this long, however deep the waiter's debt was at the old rate.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// The lowest rate a limiter runs at; `set_rate(0.0)` means "as good as paused".
pub const MIN_RATE: f64 = 0.1;

/// Token bucket: `acquire(n)` waits until `n` events fit under the rate. The burst is a tenth
/// of a second's worth, so the long-run rate stays within a few percent of the limit.
///
/// Accounting is cumulative: `taken` counts every token handed out, `refilled` every token the
/// rate has produced (capped at `taken + burst`, so idle time does not bank more than a burst).
/// A caller takes its tokens up front and waits until `refilled` reaches its ticket, re-reading
/// the rate at least every `MAX_SLEEP`: a debt run up at a tiny rate is paid at the new rate as
/// soon as the rate rises.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    taken: f64,
    refilled: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let produced = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.refilled = (self.refilled + produced).min(self.taken + self.burst);
        self.at = now;
    }
}

fn burst_of(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_finite() {
        rate.max(MIN_RATE)
    } else {
        MIN_RATE
    }
}

impl RateLimiter {
    /// A limiter at `rate` events per second.
    pub fn new(rate: f64) -> RateLimiter {
        let rate = clamp_rate(rate);
        let burst = burst_of(rate);
        RateLimiter { state: Mutex::new(Bucket { rate, burst, taken: 0.0, refilled: burst, at: Instant::now() }) }
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.state.lock().expect("rate limiter lock").rate
    }

    /// Changes the rate from now on (at least `MIN_RATE`); tokens produced so far at the old
    /// rate are kept, and waiters pick up the new rate within 100 ms.
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.state.lock().expect("rate limiter lock");
        s.refill(Instant::now());
        s.rate = clamp_rate(rate);
        s.burst = burst_of(s.rate);
        s.refilled = s.refilled.min(s.taken + s.burst);
    }

    /// Tokens handed out so far (events let through, or waiting to be).
    pub fn acquired(&self) -> u64 {
        self.state.lock().expect("rate limiter lock").taken as u64
    }

    /// Takes `n` tokens, sleeping as long as the bucket needs to refill.
    pub async fn acquire(&self, n: u64) {
        let ticket = {
            let mut s = self.state.lock().expect("rate limiter lock");
            s.refill(Instant::now());
            s.taken += n as f64;
            s.taken
        };
        loop {
            let wait = {
                let mut s = self.state.lock().expect("rate limiter lock");
                s.refill(Instant::now());
                // A thousandth of a token: float rounding of the cumulative sums, not a debt.
                let debt = ticket - s.refilled;
                if debt <= 1e-3 {
                    return;
                }
                Duration::from_secs_f64(debt / s.rate)
            };
            tokio::time::sleep(wait.min(MAX_SLEEP)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_can_be_read_back_after_a_change() {
        let l = RateLimiter::new(5_000.0);
        assert_eq!(l.rate(), 5_000.0);
        l.set_rate(20_000.0);
        assert_eq!(l.rate(), 20_000.0);
        l.set_rate(0.0);
        assert_eq!(l.rate(), MIN_RATE);
    }

    #[tokio::test]
    async fn a_debt_taken_at_a_tiny_rate_is_paid_at_the_new_rate() {
        let l = std::sync::Arc::new(RateLimiter::new(1.0));
        let started = Instant::now();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(1_000).await })
        };
        // On the current-thread runtime the waiter takes its ticket (1000 s of debt at 1/s)
        // before this task resumes; either way it must not wait for the old rate.
        tokio::task::yield_now().await;
        l.set_rate(1_000_000.0);
        waiter.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
        assert_eq!(l.acquired(), 1_000);
    }
}
