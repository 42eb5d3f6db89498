use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{
    Batch, BatchResult, DeadLetterScope, EachMessage, LeasedHandler, Message, OutboxError,
    OutboxHandle, OutboxStats, Outcome, PartitionKey, Queue, RetryPolicy,
};
use tokio::sync::Notify;

use super::dead_letter::admin_on;
use super::eventually;
use crate::TestDb;

/// Partition 0 holds its first batch until released; partition 1 always
/// asks for a retry in ten minutes; partition 2 succeeds.
#[derive(Clone, Default)]
struct Mixed {
    entered: Arc<AtomicBool>,
    release: Arc<Notify>,
    released: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl LeasedHandler for Mixed {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        match batch.partition {
            0 => {
                self.entered.store(true, Ordering::SeqCst);
                while !self.released.load(Ordering::SeqCst) {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(50), self.release.notified())
                            .await;
                }
                BatchResult::success()
            }
            1 => BatchResult::All(Outcome::Retry {
                reason: "downstream down".into(),
                after: Some(Duration::from_secs(600)),
            }),
            _ => BatchResult::success(),
        }
    }
}

struct RejectAll;

#[async_trait::async_trait]
impl outbox_core::LeasedMessageHandler for RejectAll {
    async fn handle(&self, _: &outbox_core::Delivery) -> Outcome {
        Outcome::reject("no")
    }
}

async fn stats(handle: &OutboxHandle) -> OutboxStats {
    handle.stats().await.unwrap()
}

/// Stats report, per partition, what the tables hold: incoming backlog,
/// unprocessed messages and their age, cursor, lease, retry state and dead
/// letters by status (an expired replay claim counting as pending).
pub async fn stats_report_backlog_cursor_retry_and_dead_letters(db: TestDb) {
    // Phase 1: committed but not sequenced (no workers run).
    let producer = db
        .builder()
        .queue(Queue::produce_only("s", 3))
        .queue(Queue::produce_only("d", 1))
        .run_workers(false)
        .start()
        .await
        .unwrap();
    let txn = db.db.begin().await.unwrap();
    let messages = [(0u32, 2), (1, 1), (2, 3)].into_iter().flat_map(|(p, n)| {
        (0..n).map(move |i| {
            (
                PartitionKey::index(p),
                Message::new("t", format!("{p}-{i}")),
            )
        })
    });
    producer
        .outbox()
        .enqueue_batch(&txn, "s", messages)
        .await
        .unwrap();
    let poison = (0..2).map(|i| (PartitionKey::index(0), Message::new("t", format!("d{i}"))));
    producer
        .outbox()
        .enqueue_batch(&txn, "d", poison)
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let before = stats(&producer).await;
    let s = before.queue("s").expect("queue s");
    assert_eq!(s.partitions.len(), 3);
    let incoming: Vec<u64> = s.partitions.iter().map(|p| p.incoming).collect();
    assert_eq!(incoming, [2, 1, 3]);
    assert_eq!((s.incoming, s.unprocessed, s.blocked_partitions), (6, 0, 0));
    for p in &s.partitions {
        assert_eq!((p.processed_seq, p.next_seq, p.unprocessed), (0, 1, 0));
        assert!(p.oldest_unprocessed_age_ms.is_some(), "{p:?}");
        assert!(!p.lease_held && !p.blocked_by_retry);
        assert_eq!(p.dead_letters.total(), 0);
    }
    assert_eq!(before.queue("d").expect("queue d").incoming, 2);
    let only_s = producer.outbox().admin().queue_stats("s").await.unwrap();
    assert_eq!(only_s.queues.len(), 1);
    let only: Vec<(String, u64)> = only_s
        .queues
        .iter()
        .map(|q| (q.queue.clone(), q.incoming))
        .collect();
    assert_eq!(only, [("s".to_string(), 6)]);
    let unknown = producer.admin().queue_stats("nope").await.unwrap_err();
    assert!(
        matches!(unknown, OutboxError::UnknownQueue { ref queue } if queue == "nope"),
        "{unknown:?}"
    );
    // Serialized as they are, with each dead-letter count's total.
    let json = serde_json::to_value(&only_s).unwrap();
    assert_eq!(json["queues"][0]["queue"], "s");
    assert_eq!(json["queues"][0]["incoming"], 6);
    assert_eq!(json["queues"][0]["dead_letters"]["total"], 0);
    producer.stop().await;

    // Phase 2: a held lease, a failing head, a drained partition, dead letters.
    let mixed = Mixed::default();
    let handle = db
        .builder()
        .instance_name("stats-a")
        .queue(
            Queue::leased("s", 3, mixed.clone())
                .retry(RetryPolicy::default().max_attempts(None))
                .handler_timeout(Duration::from_secs(50)),
        )
        .queue(Queue::leased("d", 1, EachMessage(RejectAll)))
        .start()
        .await
        .unwrap();
    eventually("the stats settle", || async {
        let now = stats(&handle).await;
        let s = now.queue("s").unwrap();
        mixed.entered.load(Ordering::SeqCst)
            && s.partition(2).unwrap().processed_seq == 3
            && s.partition(1).unwrap().attempts >= 1
            && now.queue("d").unwrap().dead_letters.pending == 2
    })
    .await;
    let dl = admin_on(&db, db.db.clone());
    let claimed = dl
        .replay(&DeadLetterScope::all(), 1, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    let now = stats(&handle).await;
    let s = now.queue("s").unwrap();
    let held = s.partition(0).unwrap();
    assert_eq!((held.incoming, held.unprocessed), (0, 2));
    assert_eq!((held.processed_seq, held.next_seq), (0, 3));
    assert_eq!(held.lease_owner.as_deref(), Some("stats-a"));
    assert!(held.lease_held && held.lease_until_ms.unwrap() > now.now_ms);
    assert!(held.oldest_unprocessed_age_ms.is_some());
    assert!(!held.blocked_by_retry);

    let failing = s.partition(1).unwrap();
    assert_eq!((failing.unprocessed, failing.processed_seq), (1, 0));
    assert!(failing.blocked_by_retry);
    assert_eq!(failing.attempts, 1);
    assert_eq!(failing.last_error.as_deref(), Some("downstream down"));
    assert!(
        failing.retry_at_ms.unwrap() > now.now_ms + 60_000,
        "{failing:?}"
    );
    assert!(failing.oldest_unprocessed_age_ms.is_some());

    let drained = s.partition(2).unwrap();
    assert_eq!(
        (
            drained.incoming,
            drained.unprocessed,
            drained.processed_seq,
            drained.next_seq
        ),
        (0, 0, 3, 4)
    );
    assert_eq!(drained.oldest_unprocessed_age_ms, None);
    assert!(!drained.blocked_by_retry && drained.last_error.is_none());
    assert_eq!((s.incoming, s.unprocessed, s.blocked_partitions), (0, 3, 1));
    assert_eq!(
        s.oldest_unprocessed_age_ms,
        held.oldest_unprocessed_age_ms
            .max(failing.oldest_unprocessed_age_ms)
    );

    let d = now.queue("d").unwrap();
    assert_eq!(
        (d.dead_letters.pending, d.dead_letters.reprocessing),
        (1, 1)
    );
    assert_eq!(d.partitions[0].dead_letters, d.dead_letters);
    assert_eq!(d.partitions[0].processed_seq, 2);

    mixed.released.store(true, Ordering::SeqCst);
    mixed.release.notify_waiters();
    eventually("partition 0 drains", || async {
        stats(&handle)
            .await
            .queue("s")
            .unwrap()
            .partition(0)
            .unwrap()
            .unprocessed
            == 0
    })
    .await;
    handle.stop().await;
}

/// While the sequencer numbers a backlog that no processor takes, every
/// `stats()` read counts each message once: as unsequenced (`incoming`) or
/// as sequenced and unprocessed, never as neither. A backlog that reads 0
/// while messages wait would tell an operator, or a drain check, that
/// everything was delivered.
pub async fn stats_count_each_waiting_message_once_while_sequencing(db: TestDb) {
    const TOTAL: u64 = 3_000;
    let producer = db.producer("q", 4).await;
    for chunk in 0..(TOTAL / 500) {
        let txn = db.db.begin().await.unwrap();
        let batch = (0..500).map(|i| {
            (
                PartitionKey::index(u32::try_from(i % 4).unwrap_or(0)),
                Message::new("t", format!("{chunk}-{i}").into_bytes()),
            )
        });
        producer
            .outbox()
            .enqueue_batch(&txn, "q", batch)
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    producer.stop().await;
    // A sequencer of small passes and no processor: the queue is produce-only.
    let sequencer = db
        .builder()
        .sequencer_batch(5)
        .queue(Queue::produce_only("q", 4))
        .start()
        .await
        .unwrap();
    let admin = sequencer.outbox().admin();
    let mut reads = 0;
    loop {
        let stats = admin.queue_stats("q").await.unwrap();
        let q = stats.queue("q").expect("queue q");
        reads += 1;
        assert_eq!(
            q.incoming + q.unprocessed,
            TOTAL,
            "read {reads}: {} unsequenced + {} sequenced",
            q.incoming,
            q.unprocessed
        );
        if q.incoming == 0 {
            break;
        }
    }
    sequencer.stop().await;
    eprintln!("stats read {reads} times while the backlog was sequenced");
    assert!(reads > 1, "the backlog was sequenced before the first read");
}
