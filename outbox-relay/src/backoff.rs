//! How long a relay asks the outbox to wait while its broker is down.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::Rng;

/// Exponential backoff for [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable):
/// after the `n`th consecutive failure to reach the broker the relay asks to
/// wait `initial * 2^(n-1)`, capped at `max`, less a random part of up to
/// half (so that partitions do not retry in lockstep). A success resets the
/// count.
///
/// The default is 100 ms doubling up to 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max` (raised to `initial` if
    /// smaller). An `initial` of zero is taken as 1 ms.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay after `failures` consecutive failures (1 or more), before
    /// jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// `delay(failures)` less a random part of up to half of it.
    fn jittered(&self, failures: u32) -> Duration {
        let delay = self.delay(failures);
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let cut = rand::rng().random_range(0..=nanos);
        delay.saturating_sub(Duration::from_nanos(cut))
    }
}

/// A relay's count of consecutive failures to reach its broker.
#[derive(Debug, Default)]
pub(crate) struct FailureCounter {
    backoff: Backoff,
    failures: AtomicU32,
}

impl FailureCounter {
    pub(crate) fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failures: AtomicU32::new(0),
        }
    }

    /// Counts one more failure and returns how long to wait.
    pub(crate) fn failed(&self) -> Duration {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        self.backoff.jittered(failures)
    }

    /// The broker answered: start again from the initial delay.
    pub(crate) fn reset(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_from_100_ms_up_to_30_s() {
        let backoff = Backoff::default();
        let delays: Vec<_> = (1..=12).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(
            delays,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(backoff.delay(0), 100 * MS);
        assert_eq!(backoff.delay(u32::MAX), 30_000 * MS);
    }

    #[test]
    fn jitter_stays_between_half_and_the_full_delay() {
        let backoff = Backoff::new(100 * MS, 1000 * MS);
        for failures in 1..=6 {
            let delay = backoff.delay(failures);
            for _ in 0..200 {
                let jittered = backoff.jittered(failures);
                assert!(jittered <= delay && jittered >= delay / 2, "{jittered:?}");
            }
        }
    }

    #[test]
    fn counter_grows_with_failures_and_resets_on_success() {
        let counter = FailureCounter::new(Backoff::new(10 * MS, 10_000 * MS));
        let first = counter.failed();
        assert!((5 * MS..=10 * MS).contains(&first), "{first:?}");
        for _ in 0..4 {
            counter.failed();
        }
        let sixth = counter.failed();
        assert!((160 * MS..=320 * MS).contains(&sixth), "{sixth:?}");
        counter.reset();
        let again = counter.failed();
        assert!((5 * MS..=10 * MS).contains(&again), "{again:?}");
    }

    #[test]
    fn new_keeps_max_at_least_initial_and_initial_above_zero() {
        let backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(backoff.initial(), MS);
        assert_eq!(backoff.max(), MS);
        assert_eq!(Backoff::new(5 * MS, 2 * MS).max(), 5 * MS);
    }
}
