//! Deterministic failure injection: which handler calls fail is a function
//! of a seed, the partition and the call number, never of timing or of
//! random message ids, so a case's precondition ("every partition failed at
//! least once") holds on every run and a failure can be replayed.

/// The seed when `OUTBOX_TEST_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5eed_0f0a_b0c5;

/// The seed of `case`: `OUTBOX_TEST_SEED` (a number, or `random` for a
/// fresh one) or a fixed default. Printed, so a run can be replayed.
pub(crate) fn seed(case: &str) -> u64 {
    let seed = match std::env::var("OUTBOX_TEST_SEED") {
        Ok(value) if value.eq_ignore_ascii_case("random") => uuid::Uuid::new_v4().as_u64_pair().0,
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("OUTBOX_TEST_SEED={value:?} is not a number or `random`")),
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("{case}: failure schedule seed {seed} (replay with OUTBOX_TEST_SEED={seed})");
    seed
}

/// SplitMix64: a well-mixed 64-bit hash, enough to spread failures.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seeded coin for `key` (e.g. a message's partition and seq).
pub(crate) fn coin(seed: u64, key: u64) -> bool {
    mix(seed ^ mix(key)) & 1 == 0
}

/// Which calls of each partition's handler fail: partition `p` with period
/// `d` fails its first call (so a partition that is called at all has
/// failed once, whatever the timing) and then exactly one call in each
/// following window of `d` calls, at an offset drawn from the seed. A
/// period of 0 schedules no failure.
#[derive(Debug, Clone)]
pub(crate) struct FailureSchedule {
    seed: u64,
    periods: Vec<u32>,
}

impl FailureSchedule {
    pub(crate) fn new(seed: u64, periods: &[u32]) -> Self {
        Self {
            seed,
            periods: periods.to_vec(),
        }
    }

    /// Whether call number `call` (counted from 1) of `partition` fails.
    pub(crate) fn fails(&self, partition: usize, call: u32) -> bool {
        let period = self.periods.get(partition).copied().unwrap_or(0);
        if period == 0 || call == 0 {
            return false;
        }
        if call == 1 {
            return true;
        }
        let (window, offset) = ((call - 1) / period, (call - 1) % period);
        let key = (partition as u64) << 32 | u64::from(window);
        window > 0 && mix(self.seed ^ mix(key)) % u64::from(period) == u64::from(offset)
    }

    /// The failing calls among the first `calls` of `partition`, for the log.
    pub(crate) fn failing(&self, partition: usize, calls: u32) -> Vec<u32> {
        (1..=calls).filter(|c| self.fails(partition, *c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_call_fails_then_one_per_window() {
        for seed in [0, 1, DEFAULT_SEED, u64::MAX] {
            let schedule = FailureSchedule::new(seed, &[0, 8, 5, 3]);
            assert!(schedule.failing(0, 100).is_empty());
            for (p, period) in [(1, 8), (2, 5), (3, 3)] {
                assert!(schedule.fails(p, 1));
                for window in 1..20 {
                    let in_window = (window * period + 1..=(window + 1) * period)
                        .filter(|c| schedule.fails(p, *c))
                        .count();
                    assert_eq!(in_window, 1, "seed {seed} partition {p} window {window}");
                }
            }
        }
        let a = FailureSchedule::new(1, &[0, 8]).failing(1, 80);
        let b = FailureSchedule::new(2, &[0, 8]).failing(1, 80);
        assert_eq!(a, FailureSchedule::new(1, &[0, 8]).failing(1, 80));
        assert_ne!(a, b, "the seed moves the failures");
    }
}
