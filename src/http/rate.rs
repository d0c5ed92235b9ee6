//! Rate limiting of the public API, per token: a token bucket that refills at
//! `per_second` and holds at most `burst` requests. Beyond it a call answers 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// How many requests one token may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second; 0 turns limiting off.
    pub per_second: u32,
    /// Requests a token may make at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 100,
            burst: 200,
        }
    }
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets past this many are pruned of the full ones (tokens idle long enough).
const PRUNE_ABOVE: usize = 10_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    /// A limiter to `limit` (which may turn limiting off).
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            per_second: f64::from(limit.per_second),
            burst: f64::from(limit.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `key` at `now`: `Ok`, or the whole seconds to wait.
    pub fn take(&self, key: i64, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(1, start), Ok(()));
        }
        assert_eq!(limiter.take(1, start), Err(1));
        // Another key has its own bucket.
        assert_eq!(limiter.take(2, start), Ok(()));
        // Half a second refills one request at 2 per second.
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.take(1, later), Ok(()));
        assert_eq!(limiter.take(1, later), Err(1));
        // Never more than the burst, however long the quiet.
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.take(1, much_later), Ok(()));
        }
        assert!(limiter.take(1, much_later).is_err());
    }

    #[test]
    fn a_slow_rate_asks_for_a_longer_wait_and_zero_turns_it_off() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1,
            burst: 1,
        });
        let now = Instant::now();
        assert_eq!(limiter.take(7, now), Ok(()));
        assert_eq!(limiter.take(7, now), Err(1));
        let off = RateLimiter::new(RateLimit::OFF);
        for _ in 0..1000 {
            assert_eq!(off.take(7, now), Ok(()));
        }
    }
}
