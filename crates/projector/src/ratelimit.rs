//! A token bucket on events per second, shared by every replay worker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token bucket: `acquire(n)` waits until `n` events fit under the rate. The burst is a tenth
/// of a second's worth, so the long-run rate stays within a few percent of the limit.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter at `rate` events per second.
    pub fn new(rate: f64) -> RateLimiter {
        let burst = (rate / 10.0).max(1.0);
        RateLimiter { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// The configured rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes `n` tokens, sleeping as long as the bucket needs to refill.
    pub async fn acquire(&self, n: u64) {
        let wait = {
            let mut s = self.state.lock().expect("rate limiter lock");
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
            s.0 = (s.0 + refill).min(self.burst);
            s.1 = now;
            s.0 -= n as f64;
            if s.0 >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.0 / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
