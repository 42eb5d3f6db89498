//! `GET /admin/outbox/stats` as JSON.

use outbox_core::{DeadLetterCounts, OutboxStats, PartitionStats, QueueStats};
use serde::{Deserialize, Serialize};

/// Stats of every queue, read at one moment of the database clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsJson {
    /// The database clock when the stats were read (epoch ms).
    pub now_ms: i64,
    /// Every queue with partition rows or dead letters.
    pub queues: Vec<QueueStatsJson>,
}

/// One queue: totals and each partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatsJson {
    /// The queue name.
    pub queue: String,
    /// Messages committed but not yet sequenced, over all partitions.
    pub incoming: u64,
    /// Messages sequenced but not yet delivered, over all partitions.
    pub unprocessed: u64,
    /// Age of the oldest undelivered message (ms).
    pub oldest_unprocessed_age_ms: Option<u64>,
    /// Partitions whose head message is failing.
    pub blocked_partitions: u32,
    /// Dead letters by status.
    pub dead_letters: DeadLetterCountsJson,
    /// Every partition, in order.
    pub partitions: Vec<PartitionStatsJson>,
}

/// One partition: backlog, cursor, lease and retry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatsJson {
    /// The partition number.
    pub partition: u32,
    /// Messages committed but not yet sequenced.
    pub incoming: u64,
    /// Messages sequenced but not yet delivered.
    pub unprocessed: u64,
    /// Age of the oldest undelivered message (ms).
    pub oldest_unprocessed_age_ms: Option<u64>,
    /// The last delivered sequence number.
    pub processed_seq: i64,
    /// The sequence number the next message gets.
    pub next_seq: i64,
    /// The instance that holds or last held the lease.
    pub lease_owner: Option<String>,
    /// When that lease runs or ran out (epoch ms).
    pub lease_until_ms: Option<i64>,
    /// Whether the lease is live now.
    pub lease_held: bool,
    /// Failed attempts of the head message.
    pub attempts: u32,
    /// The head message's last error while it is failing.
    pub last_error: Option<String>,
    /// When the head message is tried next (epoch ms).
    pub retry_at_ms: Option<i64>,
    /// Whether the head message is failing and holds the partition back.
    pub blocked_by_retry: bool,
    /// Dead letters by status.
    pub dead_letters: DeadLetterCountsJson,
}

/// Dead letters by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterCountsJson {
    /// Waiting for an operator.
    pub pending: u64,
    /// Claimed by a replay.
    pub reprocessing: u64,
    /// Resolved or requeued.
    pub resolved: u64,
    /// Discarded.
    pub discarded: u64,
    /// All of them.
    pub total: u64,
}

impl From<&OutboxStats> for StatsJson {
    fn from(stats: &OutboxStats) -> Self {
        Self {
            now_ms: stats.now_ms,
            queues: stats.queues.iter().map(QueueStatsJson::from).collect(),
        }
    }
}

impl From<&QueueStats> for QueueStatsJson {
    fn from(q: &QueueStats) -> Self {
        Self {
            queue: q.queue.clone(),
            incoming: q.incoming,
            unprocessed: q.unprocessed,
            oldest_unprocessed_age_ms: q.oldest_unprocessed_age_ms,
            blocked_partitions: q.blocked_partitions,
            dead_letters: (&q.dead_letters).into(),
            partitions: q.partitions.iter().map(PartitionStatsJson::from).collect(),
        }
    }
}

impl From<&PartitionStats> for PartitionStatsJson {
    fn from(p: &PartitionStats) -> Self {
        Self {
            partition: p.partition,
            incoming: p.incoming,
            unprocessed: p.unprocessed,
            oldest_unprocessed_age_ms: p.oldest_unprocessed_age_ms,
            processed_seq: p.processed_seq,
            next_seq: p.next_seq,
            lease_owner: p.lease_owner.clone(),
            lease_until_ms: p.lease_until_ms,
            lease_held: p.lease_held,
            attempts: p.attempts,
            last_error: p.last_error.clone(),
            retry_at_ms: p.retry_at_ms,
            blocked_by_retry: p.blocked_by_retry,
            dead_letters: (&p.dead_letters).into(),
        }
    }
}

impl From<&DeadLetterCounts> for DeadLetterCountsJson {
    fn from(c: &DeadLetterCounts) -> Self {
        Self {
            pending: c.pending,
            reprocessing: c.reprocessing,
            resolved: c.resolved,
            discarded: c.discarded,
            total: c.total(),
        }
    }
}
