//! Token buckets: a rate with a one-second burst, for bytes (the relay's session and account
//! rates) or requests (AUTH per address, chat messages per participant).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds of traffic a bucket lets through at once (its burst), after a quiet spell.
const BURST: Duration = Duration::from_secs(1);

/// A token bucket in bytes (or requests).
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        let burst = rate * BURST.as_secs_f64();
        Bucket { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes `n`; how long the taker must now wait for the bucket to be out of debt.
    pub fn charge(&self, n: u64, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *s;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let left = refilled - n as f64;
        *s = (left, now);
        if left >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-left / self.rate) }
    }

    /// Takes one if there is one (a request counted against a rate).
    pub fn try_take(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *s;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if refilled < 1.0 {
            *s = (refilled, now);
            return false;
        }
        *s = (refilled - 1.0, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let b = Bucket::new(1000);
        let t0 = Instant::now();
        assert_eq!(b.charge(1000, t0), Duration::ZERO, "one second's worth at once");
        assert_eq!(b.charge(500, t0), Duration::from_millis(500), "then the debt says how long to wait");
        assert_eq!(b.charge(0, t0 + Duration::from_millis(500)), Duration::ZERO);
        // Over 10 s of steady charging, 10 s worth (plus the burst) passes.
        let mut t = t0 + Duration::from_millis(500);
        let mut sent = 0;
        while t < t0 + Duration::from_millis(10_500) {
            sent += 100;
            t += b.charge(100, t).max(Duration::from_millis(1));
        }
        assert!((10_000..=10_200).contains(&sent), "{sent}");
    }

    #[test]
    fn requests_beyond_the_rate_are_refused() {
        let b = Bucket::new(2);
        let t0 = Instant::now();
        assert!(b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
    }
}
