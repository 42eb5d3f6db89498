//! Presets for the worker settings: latency against load on the database.

use std::time::Duration;

/// A preset of worker settings. Every field can still be overridden on the
/// builder ([`OutboxBuilder::poll_interval`](crate::OutboxBuilder::poll_interval)
/// and friends) or per queue ([`Queue::batch_size`](crate::Queue::batch_size)),
/// whatever the order of the calls.
///
/// | setting | `low_latency` | `default` | `high_throughput` |
/// |---|---|---|---|
/// | poll interval (idle workers look at the tables) | 50 ms | 500 ms | 1 s |
/// | messages per handler call | 20 | 100 | 500 |
/// | messages per sequencer transaction | 500 | 1,000 | 5,000 |
/// | vacuum every | 250 ms | 1 s | 2 s |
/// | rows per vacuum statement | 1,000 | 1,000 | 5,000 |
///
/// Wakeups after commit make delivery immediate in every profile; the poll
/// interval bounds the latency when a wakeup is lost or comes from another
/// process without LISTEN/NOTIFY (MySQL, SQLite), and sets the idle cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// How often idle workers look at the tables.
    pub poll_interval: Duration,
    /// Messages handed to a handler at most per call, for queues that do not set their own.
    pub batch_size: u32,
    /// Incoming messages the sequencer moves per transaction.
    pub sequencer_batch: u32,
    /// Pause between vacuum passes.
    pub vacuum_interval: Duration,
    /// Rows vacuum deletes per statement.
    pub vacuum_batch: u32,
}

impl Profile {
    /// Short polls and small batches: the lowest latency, a few more statements per second when idle.
    pub fn low_latency() -> Self {
        Self {
            poll_interval: Duration::from_millis(50),
            batch_size: 20,
            sequencer_batch: 500,
            vacuum_interval: Duration::from_millis(250),
            vacuum_batch: 1000,
        }
    }

    /// Large batches and slow polls: the most messages per statement.
    pub fn high_throughput() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            batch_size: 500,
            sequencer_batch: 5000,
            vacuum_interval: Duration::from_secs(2),
            vacuum_batch: 5000,
        }
    }
}

impl Default for Profile {
    /// The balanced preset the builder starts from.
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            batch_size: 100,
            sequencer_batch: 1000,
            vacuum_interval: Duration::from_secs(1),
            vacuum_batch: 1000,
        }
    }
}
