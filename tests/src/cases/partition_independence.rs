//! Partitions are independent: one whose handler is stuck does not hold
//! back the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outbox_core::sea_orm::{DatabaseTransaction, TransactionTrait};
use outbox_core::{Batch, BatchResult, Message, PartitionKey, Queue, TransactionalHandler};
use tokio::sync::watch;

use super::PATIENCE;
use crate::{Backend, Recorder, TestDb, wait_until};

/// Records every batch; on partition 0 it first waits until the test opens
/// the gate, holding the partition's transaction (and its row lock) open.
#[derive(Clone)]
struct StuckOnPartitionZero {
    rec: Recorder,
    gate: watch::Receiver<bool>,
    entered: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl TransactionalHandler for StuckOnPartitionZero {
    async fn handle(&self, _txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        if batch.partition == 0 {
            self.entered.store(true, Ordering::SeqCst);
            let mut gate = self.gate.clone();
            if gate.wait_for(|open| *open).await.is_err() {
                return BatchResult::retry("the test dropped the gate");
            }
        }
        self.rec.record(batch);
        BatchResult::success()
    }
}

/// Enqueues `payloads` to `partition`, `per_txn` per transaction, and wakes
/// the sequencer after each commit.
async fn enqueue(
    db: &TestDb,
    outbox: &outbox_core::Outbox,
    partition: impl Fn(usize) -> u32,
    payloads: std::ops::Range<usize>,
    prefix: &str,
    per_txn: usize,
) {
    let all: Vec<usize> = payloads.collect();
    for chunk in all.chunks(per_txn) {
        let txn = db.db.begin().await.unwrap();
        let batch = chunk.iter().map(|i| {
            (
                PartitionKey::index(partition(*i)),
                Message::new("t", format!("{prefix}{i}").into_bytes()),
            )
        });
        outbox.enqueue_batch(&txn, "q", batch).await.unwrap();
        txn.commit().await.unwrap();
        outbox.notify();
    }
}

/// The payloads partition `p` received, in delivery order.
fn received_on(rec: &Recorder, p: u32) -> Vec<String> {
    rec.all()
        .into_iter()
        .filter(|r| r.partition == p)
        .map(|r| r.payload)
        .collect()
}

/// Transactional mode, 8 partitions: partition 0's handler blocks on its
/// first message, holding the partition. More messages for partition 0 than
/// the sequencer takes per pass are enqueued behind it (so its rows fill the
/// sequencer's window of oldest rows), then 200 messages for partitions 1-7.
/// On PostgreSQL and MariaDB all 200 arrive while partition 0 is still
/// blocked. On SQLite the blocked handler holds the single write lock, so
/// nothing else is written meanwhile (documented); there the case checks
/// that everything arrives after the release. Then partition 0's messages
/// all arrive, in order, once each.
pub async fn blocked_partition_does_not_stall_other_partitions(db: TestDb) {
    const SEQUENCER_BATCH: u32 = 50;
    let behind = SEQUENCER_BATCH as usize + 10;
    let others = 200;
    let (open, gate) = watch::channel(false);
    let handler = StuckOnPartitionZero {
        rec: Recorder::default(),
        gate,
        entered: Arc::default(),
    };
    let rec = handler.rec.clone();
    let builder = db.builder().sequencer_batch(SEQUENCER_BATCH).queue(
        Queue::transactional("q", 8, handler.clone())
            // Blocked for as long as the test needs: never cut short by the
            // handler timeout (which would release the partition).
            .handler_timeout(Duration::from_secs(600))
            .lease(Duration::from_secs(610)),
    );
    let to_others = |i: usize| 1 + (i % 7) as u32;

    let handle = match db.backend {
        Backend::Postgres | Backend::MySql => {
            let handle = builder.start().await.unwrap();
            let outbox = handle.outbox().clone();
            enqueue(&db, &outbox, |_| 0, 0..1, "z", 1).await;
            assert!(
                wait_until(PATIENCE, || handler.entered.load(Ordering::SeqCst)).await,
                "partition 0's handler was never called"
            );
            enqueue(&db, &outbox, |_| 0, 1..1 + behind, "z", behind).await;
            enqueue(&db, &outbox, to_others, 0..others, "o", 20).await;
            let delivered = || rec.all().iter().filter(|r| r.partition != 0).count();
            let all_came = wait_until(Duration::from_secs(30), || delivered() == others).await;
            let stats = outbox.admin().stats().await.unwrap();
            assert!(
                all_came,
                "{} of {others} messages on partitions 1-7 were handled while partition 0 was blocked; incoming {}, unprocessed {}",
                delivered(),
                stats.queue("q").unwrap().incoming,
                stats.queue("q").unwrap().unprocessed,
            );
            assert!(
                received_on(&rec, 0).is_empty(),
                "partition 0 was meant to be blocked"
            );
            eprintln!(
                "blocked partition on {:?}: {} of {others} messages on partitions 1-7 handled while partition 0 was blocked",
                db.backend,
                delivered()
            );
            handle
        }
        Backend::Sqlite => {
            // Enqueue first: while the blocked handler holds SQLite's write
            // lock, an enqueue would wait for it and time out.
            let producer = db.producer("q", 8).await;
            let outbox = producer.outbox().clone();
            enqueue(&db, &outbox, |_| 0, 0..1, "z", 1).await;
            enqueue(&db, &outbox, |_| 0, 1..1 + behind, "z", behind).await;
            enqueue(&db, &outbox, to_others, 0..others, "o", 20).await;
            producer.stop().await;
            eprintln!(
                "blocked_partition_does_not_stall_other_partitions on Sqlite: a blocked transactional handler holds the single writer; checking delivery after release only"
            );
            let handle = builder.start().await.unwrap();
            assert!(
                wait_until(PATIENCE, || handler.entered.load(Ordering::SeqCst)).await,
                "partition 0's handler was never called"
            );
            handle
        }
    };

    open.send(true).unwrap();
    let total = 1 + behind + others;
    assert!(
        wait_until(PATIENCE, || rec.len() >= total).await,
        "delivered {} of {total} after the release",
        rec.len()
    );
    handle.stop().await;
    let expected: Vec<String> = (0..1 + behind).map(|i| format!("z{i}")).collect();
    assert_eq!(
        received_on(&rec, 0),
        expected,
        "partition 0's messages lost, duplicated or reordered"
    );
    assert_eq!(rec.len(), total, "a message was handled twice");
    assert_eq!(rec.distinct(), total);
    assert_eq!(rec.order_violations(), 0);
    for p in 1..8 {
        let got = received_on(&rec, p);
        let mut sorted: Vec<usize> = got.iter().map(|s| s[1..].parse().unwrap()).collect();
        let in_order = sorted.windows(2).all(|w| w[0] < w[1]);
        sorted.sort_unstable();
        assert!(in_order, "partition {p} reordered: {got:?}");
    }
}
