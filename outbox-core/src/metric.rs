//! Metrics, through the [`metrics`] facade: every name the outbox emits,
//! and where its value comes from.
//!
//! Nothing is recorded unless the application installs a recorder (for
//! example `metrics-exporter-prometheus`) **before** [`OutboxBuilder::start`]:
//! the outbox registers its per-queue handles once at start, so a hot path
//! only bumps a handle, and with no recorder a handle is a no-op.
//!
//! Names follow Prometheus conventions: an `outbox_` prefix, `_total` on
//! counters, base units (`_seconds`). Every series carries a `queue` label;
//! dead-letter gauges also a `status` label. Partitions carry no label: a
//! queue may have up to [`MAX_PARTITIONS`](crate::MAX_PARTITIONS) of them,
//! too many series for a metrics store; the console and
//! [`OutboxAdmin::stats`](crate::OutboxAdmin::stats) show each partition.
//!
//! Gauges come from one [`OutboxAdmin::stats`](crate::OutboxAdmin::stats)
//! read per [`OutboxBuilder::gauge_interval`] (a fixed number of grouped
//! queries for all queues, whatever their partition count), plus this
//! instance's own lease and membership counts, which cost no query.
//!
//! [`OutboxBuilder::start`]: crate::OutboxBuilder::start
//! [`OutboxBuilder::gauge_interval`]: crate::OutboxBuilder::gauge_interval

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::dead_letter::scope::DeadLetterStatus;
use crate::message::Batch;
use crate::worker::settlement::Settlement;

/// Counter: messages written by `enqueue`/`enqueue_batch`. Counted when the
/// insert succeeds in the caller's transaction, so a transaction rolled back
/// afterwards still counts; compare with [`DELIVERED`] over long windows.
pub const ENQUEUED: &str = "outbox_messages_enqueued_total";
/// Counter: messages whose handler succeeded and whose acknowledgement was
/// written (each delivery counts: a leased redelivery after a lost lease
/// counts again).
pub const DELIVERED: &str = "outbox_messages_delivered_total";
/// Counter: head-of-partition messages that failed and wait to be tried
/// again (one per failed attempt).
pub const RETRIED: &str = "outbox_messages_retried_total";
/// Counter: messages moved to the dead-letter table (rejected, or retries
/// exhausted).
pub const DEAD_LETTERED: &str = "outbox_messages_dead_lettered_total";
/// Counter: dead letters put back into their queue by a requeue.
pub const REQUEUED: &str = "outbox_messages_requeued_total";
/// Counter: partition leases this instance took.
pub const LEASES_TAKEN: &str = "outbox_leases_taken_total";
/// Counter: partition leases this instance lost while working under them
/// (expired or taken over; its last batch is delivered again).
pub const LEASES_LOST: &str = "outbox_leases_lost_total";
/// Histogram (seconds): how long a handler took for one batch.
pub const HANDLER_DURATION: &str = "outbox_handler_duration_seconds";
/// Histogram (messages): the size of each batch given to a handler.
pub const BATCH_SIZE: &str = "outbox_batch_size";
/// Histogram (seconds): from a message's enqueue (its `created_at`, on the
/// database clock) to its acknowledgement (this host's clock).
pub const DELIVERY_LATENCY: &str = "outbox_delivery_latency_seconds";
/// Gauge (messages): committed messages not yet delivered, sequenced or not.
pub const BACKLOG: &str = "outbox_backlog_messages";
/// Gauge (seconds): age of the oldest undelivered message; 0 when there is none.
pub const OLDEST_AGE: &str = "outbox_oldest_undelivered_age_seconds";
/// Gauge (letters), with a `status` label (`pending`, `reprocessing`,
/// `resolved`, `discarded`): dead letters in the table.
pub const DEAD_LETTERS: &str = "outbox_dead_letters";
/// Gauge (partitions): partitions whose head message is failing, which holds
/// the partition back.
pub const BLOCKED_PARTITIONS: &str = "outbox_blocked_partitions";
/// Gauge (partitions): partitions of the queue whose lease this instance holds.
pub const OWNED_PARTITIONS: &str = "outbox_owned_partitions";
/// Gauge (instances): live instances (fresh heartbeats) on these tables, as
/// this instance last counted them. Labelled by queue like the others.
pub const LIVE_INSTANCES: &str = "outbox_live_instances";

/// Every metric name, for documentation checks and exporters' allow-lists.
pub const ALL: [&str; 16] = [
    ENQUEUED,
    DELIVERED,
    RETRIED,
    DEAD_LETTERED,
    REQUEUED,
    LEASES_TAKEN,
    LEASES_LOST,
    HANDLER_DURATION,
    BATCH_SIZE,
    DELIVERY_LATENCY,
    BACKLOG,
    OLDEST_AGE,
    DEAD_LETTERS,
    BLOCKED_PARTITIONS,
    OWNED_PARTITIONS,
    LIVE_INSTANCES,
];

/// How often the gauges are read unless set.
pub const DEFAULT_GAUGE_INTERVAL: Duration = Duration::from_secs(15);

/// Describes every metric to the installed recorder (units and help text).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(ENQUEUED, Unit::Count, "Messages enqueued.");
    describe_counter!(
        DELIVERED,
        Unit::Count,
        "Messages delivered and acknowledged."
    );
    describe_counter!(
        RETRIED,
        Unit::Count,
        "Failed attempts that will be retried."
    );
    describe_counter!(
        DEAD_LETTERED,
        Unit::Count,
        "Messages moved to dead letters."
    );
    describe_counter!(REQUEUED, Unit::Count, "Dead letters requeued.");
    describe_counter!(LEASES_TAKEN, Unit::Count, "Partition leases taken.");
    describe_counter!(
        LEASES_LOST,
        Unit::Count,
        "Partition leases lost while held."
    );
    describe_histogram!(HANDLER_DURATION, Unit::Seconds, "Handler time per batch.");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Messages per handler batch.");
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Enqueue to acknowledgement."
    );
    describe_gauge!(BACKLOG, Unit::Count, "Messages not yet delivered.");
    describe_gauge!(
        OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest undelivered message."
    );
    describe_gauge!(DEAD_LETTERS, Unit::Count, "Dead letters by status.");
    describe_gauge!(
        BLOCKED_PARTITIONS,
        Unit::Count,
        "Partitions held by a retry."
    );
    describe_gauge!(OWNED_PARTITIONS, Unit::Count, "Partitions leased here.");
    describe_gauge!(LIVE_INSTANCES, Unit::Count, "Live outbox instances.");
}

/// One queue's handles, registered once at start. The gauges are set by
/// the gauge task (`worker::gauges`).
pub(crate) struct QueueMetrics {
    enqueued: Counter,
    delivered: Counter,
    retried: Counter,
    dead_lettered: Counter,
    leases_taken: Counter,
    leases_lost: Counter,
    handler_duration: Histogram,
    batch_size: Histogram,
    latency: Histogram,
    pub(crate) backlog: Gauge,
    pub(crate) oldest_age: Gauge,
    pub(crate) dead_letters: [(DeadLetterStatus, Gauge); 4],
    pub(crate) blocked: Gauge,
    pub(crate) owned: Gauge,
    pub(crate) live: Gauge,
}

impl QueueMetrics {
    fn new(queue: &str) -> Self {
        let q = || [("queue", queue.to_owned())];
        let status = |s: DeadLetterStatus| {
            (
                s,
                metrics::gauge!(DEAD_LETTERS, "queue" => queue.to_owned(), "status" => s.as_str()),
            )
        };
        Self {
            enqueued: metrics::counter!(ENQUEUED, &q()),
            delivered: metrics::counter!(DELIVERED, &q()),
            retried: metrics::counter!(RETRIED, &q()),
            dead_lettered: metrics::counter!(DEAD_LETTERED, &q()),
            leases_taken: metrics::counter!(LEASES_TAKEN, &q()),
            leases_lost: metrics::counter!(LEASES_LOST, &q()),
            handler_duration: metrics::histogram!(HANDLER_DURATION, &q()),
            batch_size: metrics::histogram!(BATCH_SIZE, &q()),
            latency: metrics::histogram!(DELIVERY_LATENCY, &q()),
            backlog: metrics::gauge!(BACKLOG, &q()),
            oldest_age: metrics::gauge!(OLDEST_AGE, &q()),
            dead_letters: [
                status(DeadLetterStatus::Pending),
                status(DeadLetterStatus::Reprocessing),
                status(DeadLetterStatus::Resolved),
                status(DeadLetterStatus::Discarded),
            ],
            blocked: metrics::gauge!(BLOCKED_PARTITIONS, &q()),
            owned: metrics::gauge!(OWNED_PARTITIONS, &q()),
            live: metrics::gauge!(LIVE_INSTANCES, &q()),
        }
    }
}

/// The metric handles of one outbox instance, per registered queue.
pub(crate) struct Metrics {
    pub(crate) queues: HashMap<String, QueueMetrics>,
}

impl Metrics {
    /// Registers the handles of `queues` with the recorder installed now.
    pub(crate) fn new<'a>(queues: impl IntoIterator<Item = &'a str>) -> Self {
        describe();
        Self {
            queues: queues
                .into_iter()
                .map(|q| (q.to_owned(), QueueMetrics::new(q)))
                .collect(),
        }
    }

    /// `count` messages enqueued to `queue`.
    pub(crate) fn enqueued(&self, queue: &str, count: usize) {
        if let Some(m) = self.queues.get(queue) {
            m.enqueued.increment(count as u64);
        }
    }

    /// A lease of `queue` taken.
    pub(crate) fn lease_taken(&self, queue: &str) {
        if let Some(m) = self.queues.get(queue) {
            m.leases_taken.increment(1);
        }
    }

    /// A lease of `queue` lost while held.
    pub(crate) fn lease_lost(&self, queue: &str) {
        if let Some(m) = self.queues.get(queue) {
            m.leases_lost.increment(1);
        }
    }

    /// A handler ran `batch` for `elapsed`.
    pub(crate) fn handled(&self, batch: &Batch, elapsed: Duration) {
        if let Some(m) = self.queues.get(&batch.queue) {
            m.handler_duration.record(elapsed.as_secs_f64());
            m.batch_size.record(batch.messages.len() as f64);
        }
    }

    /// `settlement` of `batch` was written: count what it delivered,
    /// retried and dead-lettered (the same split as its events).
    pub(crate) fn settled(&self, batch: &Batch, settlement: &Settlement) {
        let Some(m) = self.queues.get(&batch.queue) else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let (mut delivered, mut dead) = (0u64, 0u64);
        for (index, message) in batch.messages.iter().enumerate() {
            if message.seq > settlement.processed_seq {
                if settlement.retry.is_some() {
                    m.retried.increment(1);
                }
                break;
            }
            if settlement.dead_letters.iter().any(|d| d.index == index) {
                dead += 1;
            } else {
                delivered += 1;
                let waited = u64::try_from(now_ms - message.enqueued_at_ms).unwrap_or(0);
                m.latency.record(waited as f64 / 1000.0);
            }
        }
        if delivered > 0 {
            m.delivered.increment(delivered);
        }
        if dead > 0 {
            m.dead_lettered.increment(dead);
        }
    }
}

/// Dead letters of these queues requeued (one name per letter). Requeues
/// run from admin code without a started outbox (the CLI, the console), so
/// this registers a handle per queue on each call: requeues are rare.
pub(crate) fn requeued_all<'a>(queues: impl IntoIterator<Item = &'a str>) {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for queue in queues {
        *counts.entry(queue).or_default() += 1;
    }
    for (queue, count) in counts {
        metrics::counter!(REQUEUED, "queue" => queue.to_owned()).increment(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for name in ALL {
            assert!(name.starts_with("outbox_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let counters = [
            ENQUEUED,
            DELIVERED,
            RETRIED,
            DEAD_LETTERED,
            REQUEUED,
            LEASES_TAKEN,
            LEASES_LOST,
        ];
        for name in ALL {
            assert_eq!(counters.contains(&name), name.ends_with("_total"), "{name}");
        }
    }
}
