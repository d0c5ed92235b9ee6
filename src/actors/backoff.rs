//! Waits between retries of something that failed (the database, mostly): doubling from
//! a first delay up to a cap, each wait jittered into its upper half, so nodes that lost
//! the database together do not all come back at the same instant.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max: max.max(first),
            failures: 0,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The full delay after `failures` failures: first × 2^(failures − 1), at most max.
    fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Counts one more failure and answers how long to wait before the next try: a
    /// random point in the upper half of the current ceiling.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling(self.failures);
        let half = ceiling / 2;
        half + half.mul_f64(unit_random())
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A random number in [0, 1).
fn unit_random() -> f64 {
    let mut bytes = [0u8; 4];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_within_their_upper_half() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for ceiling_ms in [100u64, 200, 400, 800, 1000, 1000] {
            let wait = backoff.failed();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{wait:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert!(backoff.failed() <= Duration::from_millis(100));
    }

    #[test]
    fn waits_are_jittered() {
        let mut waits = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
            waits.insert(backoff.failed());
        }
        assert!(waits.len() > 1, "twenty equal waits: {waits:?}");
    }

    #[test]
    fn many_failures_stay_at_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        for _ in 0..200 {
            assert!(backoff.failed() <= Duration::from_secs(30));
        }
    }
}
