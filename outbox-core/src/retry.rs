//! How a partition waits and gives up when its head message keeps failing.

use std::time::Duration;

use rand::Rng;

/// Retry policy of a queue: exponential backoff with jitter, and a cap on
/// attempts after which the message is dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries before the message is dead-lettered; `None` retries forever
    /// (the partition stays blocked until the handler succeeds).
    /// Default: `Some(10)`.
    pub max_attempts: Option<u32>,
    /// Delay after the first failure. Default: 100 ms.
    pub base: Duration,
    /// Longest delay. Default: 60 s. Whatever it says, a partition waits at
    /// most 24 hours.
    pub cap: Duration,
    /// Fraction of the delay drawn at random, `0.0..=1.0`, so that many
    /// partitions failing together do not retry in lockstep. Default: 0.2.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Some(10),
            base: Duration::from_millis(100),
            cap: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy with exponential backoff from `base` to `cap`.
    pub fn exponential(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            ..Self::default()
        }
    }

    /// Sets the attempt cap (`None`: unlimited).
    pub fn max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the jitter fraction, clamped to `0.0..=1.0`.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Whether a message that has failed `attempts` times is out of tries.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }

    /// The delay without jitter after `attempts` failures (1 = first failure).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(32);
        let factor = 2u32.saturating_pow(exponent);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay with jitter: within `[backoff * (1 - jitter), backoff]`.
    pub fn delay(&self, attempts: u32) -> Duration {
        let full = self.backoff(attempts);
        if self.jitter <= 0.0 {
            return full;
        }
        let cut = rand::rng().random_range(0.0..=self.jitter.min(1.0));
        full.mul_f64(1.0 - cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(800));
        assert_eq!(policy.backoff(5), Duration::from_secs(1));
        assert_eq!(policy.backoff(1000), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delay_stays_within_bounds() {
        let policy = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(1))
            .jitter(0.5);
        for _ in 0..100 {
            let delay = policy.delay(2);
            assert!(delay <= Duration::from_millis(200) && delay >= Duration::from_millis(100));
        }
    }

    #[test]
    fn attempts_cap() {
        let policy = RetryPolicy::default().max_attempts(Some(3));
        assert!(!policy.exhausted(2));
        assert!(policy.exhausted(3));
        assert!(
            !RetryPolicy::default()
                .max_attempts(None)
                .exhausted(u32::MAX)
        );
    }
}
