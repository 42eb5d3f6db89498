//! Timestamps of the run as `u32` microseconds since an origin: 4 bytes a
//! message, so tracking a million messages costs the bench 4 MB per table of
//! times, not 16 (an `Instant`) or more.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Marks a message that was not delivered.
pub(crate) const NEVER: u32 = u32::MAX;

/// Where the run's times count from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// Monotonic, for a run in one process.
    Monotonic(Instant),
    /// The wall clock, with the origin in microseconds since the Unix epoch:
    /// comparable between processes on one machine (`--split-process`).
    Wall(u64),
}

impl Clock {
    /// A monotonic clock starting now.
    pub(crate) fn monotonic() -> Self {
        Self::Monotonic(Instant::now())
    }

    /// A wall clock starting now.
    pub(crate) fn wall() -> Self {
        Self::Wall(unix_micros())
    }

    /// The origin of a wall clock, to hand to another process.
    pub(crate) fn wall_origin(self) -> Option<u64> {
        match self {
            Self::Wall(origin) => Some(origin),
            Self::Monotonic(_) => None,
        }
    }

    /// Microseconds since the origin: 0 before it, and at most `NEVER - 1`
    /// (71 minutes; a longer run saturates there).
    pub(crate) fn now(self) -> u32 {
        let micros = match self {
            Self::Monotonic(origin) => {
                u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
            }
            Self::Wall(origin) => unix_micros().saturating_sub(origin),
        };
        u32::try_from(micros).unwrap_or(NEVER - 1).min(NEVER - 1)
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Seconds between two clock readings (0 if `to` is not after `from`).
pub(crate) fn secs_between(from: u32, to: u32) -> f64 {
    f64::from(to.saturating_sub(from)) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_count_from_their_origin() {
        let mono = Clock::monotonic();
        assert!(mono.now() < 1_000_000);
        assert_eq!(mono.wall_origin(), None);
        let wall = Clock::wall();
        assert!(wall.now() < 1_000_000);
        let origin = wall.wall_origin().unwrap_or(0);
        assert!(origin > 1_600_000_000_000_000);
        // An origin in the future reads as 0, one long past saturates.
        assert_eq!(Clock::Wall(u64::MAX).now(), 0);
        assert_eq!(Clock::Wall(0).now(), NEVER - 1);
        assert!((secs_between(1_000_000, 3_500_000) - 2.5).abs() < 1e-9);
        assert!(secs_between(5, 3).abs() < 1e-12);
    }
}
