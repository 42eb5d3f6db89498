use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::metric;
use outbox_core::sea_orm::{DatabaseTransaction, TransactionTrait};
use outbox_core::{
    DeadLetterScope, Delivery, EachMessage, LeasedMessageHandler, Message, Outcome, PartitionKey,
    Queue, TransactionalMessageHandler,
};

use super::eventually;
use crate::{MetricProbe, TestDb};

/// The queue names are these cases' own: the recorder is process-wide.
const LEASED_QUEUE: &str = "metered";
const TRANSACTIONAL_QUEUE: &str = "metered_tx";
const OK: usize = 20;

/// Rejects `bad` payloads while `reject` is set; asks for one retry of
/// `flaky`; accepts the rest.
#[derive(Clone, Default)]
struct Picky {
    reject: Arc<AtomicBool>,
    retried: Arc<Mutex<HashSet<String>>>,
}

#[async_trait::async_trait]
impl LeasedMessageHandler for Picky {
    async fn handle(&self, message: &Delivery) -> Outcome {
        self.decide(message)
    }
}

#[async_trait::async_trait]
impl TransactionalMessageHandler for Picky {
    async fn handle(&self, _txn: &DatabaseTransaction, message: &Delivery) -> Outcome {
        self.decide(message)
    }
}

impl Picky {
    fn decide(&self, message: &Delivery) -> Outcome {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        if payload.starts_with("bad") && self.reject.load(Ordering::SeqCst) {
            return Outcome::reject("bad payload");
        }
        if payload == "flaky" && self.retried.lock().unwrap().insert(payload) {
            return Outcome::Retry {
                reason: "once".into(),
                after: Some(Duration::from_millis(10)),
            };
        }
        Outcome::Success
    }
}

/// Counters move by exactly the number of messages enqueued, delivered,
/// retried, dead-lettered and requeued; the gauges read the backlog, the
/// dead letters and this instance's leases.
pub async fn metrics_count_each_message_exactly_once(db: TestDb) {
    count_each_message_once(db, false).await;
}

/// The same counts in transactional mode, where a delivery is counted
/// only once its transaction commits.
pub async fn metrics_count_each_transactional_message_exactly_once(db: TestDb) {
    count_each_message_once(db, true).await;
}

async fn count_each_message_once(db: TestDb, transactional: bool) {
    let queue_name = if transactional {
        TRANSACTIONAL_QUEUE
    } else {
        LEASED_QUEUE
    };
    let q = || [("queue", queue_name)];
    let probe = MetricProbe::install();
    let counter = |series| probe.counter(series, &q());
    let gauge = |series| probe.gauge(series, &q());

    // Phase 1: a backlog, seen by a producer's gauges.
    let producer = db
        .builder()
        .queue(Queue::produce_only(queue_name, 2))
        .run_workers(false)
        .gauge_interval(Some(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let mut messages: Vec<(PartitionKey, Message)> = (0..OK)
        .map(|i| {
            (
                PartitionKey::index((i % 2) as u32),
                Message::new("t", format!("ok{i}")),
            )
        })
        .collect();
    messages.push((PartitionKey::index(0), Message::new("t", "bad0")));
    messages.push((PartitionKey::index(1), Message::new("t", "bad1")));
    messages.push((PartitionKey::index(1), Message::new("t", "flaky")));
    let total = messages.len() as u64;
    let txn = db.db.begin().await.unwrap();
    producer
        .outbox()
        .enqueue_batch(&txn, queue_name, messages)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(counter(metric::ENQUEUED), total);
    eventually("the backlog gauge shows every message", || async {
        gauge(metric::BACKLOG) == Some(total as f64)
    })
    .await;
    assert!(gauge(metric::OLDEST_AGE).is_some_and(|age| age >= 0.0));
    producer.stop().await;

    // Phase 2: delivery, one retry, two dead letters.
    let handler = Picky::default();
    handler.reject.store(true, Ordering::SeqCst);
    let queue = if transactional {
        Queue::transactional(queue_name, 2, EachMessage(handler.clone()))
    } else {
        Queue::leased(queue_name, 2, EachMessage(handler.clone()))
    };
    let handle = db
        .builder()
        .queue(queue.batch_size(4))
        .gauge_interval(Some(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    eventually("every message is settled", || async {
        counter(metric::DELIVERED) + counter(metric::DEAD_LETTERED) == total
    })
    .await;
    assert_eq!(counter(metric::DELIVERED), total - 2);
    assert_eq!(counter(metric::DEAD_LETTERED), 2);
    assert_eq!(counter(metric::RETRIED), 1);
    assert_eq!(counter(metric::ENQUEUED), total, "workers enqueue nothing");
    assert!(counter(metric::LEASES_TAKEN) >= 2, "both partitions leased");
    assert_eq!(counter(metric::LEASES_LOST), 0);
    let latencies = probe.histogram(metric::DELIVERY_LATENCY, &q());
    assert_eq!(
        latencies.len() as u64,
        total - 2,
        "one latency per delivery"
    );
    assert!(latencies.iter().all(|s| *s >= 0.0 && *s < 600.0));
    let sizes = probe.histogram(metric::BATCH_SIZE, &q());
    let durations = probe.histogram(metric::HANDLER_DURATION, &q());
    assert_eq!(
        sizes.len(),
        durations.len(),
        "one size and one duration per batch"
    );
    assert!(sizes.iter().all(|n| (1.0..=4.0).contains(n)), "{sizes:?}");
    // Every message was handed over at least once; the retried one twice,
    // and a batch cut short by the retry hands its rest over again.
    assert!(sizes.iter().sum::<f64>() >= (total + 1) as f64);
    eventually(
        "the gauges show no backlog and two pending letters",
        || async {
            gauge(metric::BACKLOG) == Some(0.0)
                && probe.gauge(
                    metric::DEAD_LETTERS,
                    &[("queue", queue_name), ("status", "pending")],
                ) == Some(2.0)
                && gauge(metric::OWNED_PARTITIONS) == Some(2.0)
                && gauge(metric::LIVE_INSTANCES).is_some_and(|n| n >= 1.0)
                && gauge(metric::BLOCKED_PARTITIONS) == Some(0.0)
        },
    )
    .await;

    // Phase 3: requeue the letters; they are delivered this time.
    handler.reject.store(false, Ordering::SeqCst);
    let requeued = handle
        .outbox()
        .dead_letters()
        .requeue(&DeadLetterScope::all().queue(queue_name), 100)
        .await
        .unwrap();
    assert_eq!(requeued.len(), 2);
    assert_eq!(counter(metric::REQUEUED), 2);
    eventually("the requeued letters are delivered", || async {
        counter(metric::DELIVERED) == total
    })
    .await;
    assert_eq!(counter(metric::DEAD_LETTERED), 2);
    eventually("the gauges show the letters resolved", || async {
        probe.gauge(
            metric::DEAD_LETTERS,
            &[("queue", queue_name), ("status", "resolved")],
        ) == Some(2.0)
            && probe.gauge(
                metric::DEAD_LETTERS,
                &[("queue", queue_name), ("status", "pending")],
            ) == Some(0.0)
    })
    .await;
    handle.stop().await;
    assert_eq!(counter(metric::DELIVERED), total, "nothing delivered twice");
}
