use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, PartitionKey, Queue};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Guarantee 5: a worker that stalls holding a lease loses it on expiry; the
/// messages are delivered again by another worker, and the stalled worker's
/// late acknowledgement is refused.
pub async fn leased_redelivers_after_lease_expiry_and_refuses_stale_ack(db: TestDb) {
    let producer = db.producer("q", 1).await;
    let outbox = producer.outbox().clone();
    let txn = db.db.begin().await.unwrap();
    let batch = (0..5).map(|i| {
        (
            PartitionKey::index(0),
            Message::new("t", format!("m{i}").into_bytes()),
        )
    });
    outbox.enqueue_batch(&txn, "q", batch).await.unwrap();
    txn.commit().await.unwrap();

    // A "stalled worker" takes the lease and never acknowledges in time.
    let stale = outbox
        .take_lease("q", 0, "stalled-worker", Duration::from_millis(1500))
        .await
        .unwrap()
        .expect("the partition is free");

    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(
            Queue::leased("q", 1, rec.clone())
                .lease(Duration::from_secs(10))
                .handler_timeout(Duration::from_secs(5)),
        )
        .start()
        .await
        .unwrap();
    // While the stale lease lives, nobody else may deliver.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rec.is_empty(),
        "delivered while another worker held the lease"
    );
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 5).await,
        "not redelivered after lease expiry"
    );

    let refused = !outbox.acknowledge(&stale, 5).await.unwrap();
    assert!(refused, "the stale acknowledgement was accepted");
    handle.stop().await;
    producer.stop().await;
    assert_eq!(rec.order_violations(), 0);
    let processed = db
        .scalar(&format!(
            "SELECT processed_seq AS n FROM {}",
            db.table("partition")
        ))
        .await;
    assert_eq!(processed, 5);
    // The stopped worker gave its lease back: it can be taken at once.
    assert!(
        outbox
            .take_lease("q", 0, "next", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

/// Two leased instances: every message delivered, in order.
pub async fn two_leased_instances_lose_nothing(db: TestDb) {
    let rec = Recorder::default();
    let a = db
        .builder()
        .queue(Queue::leased("q", 8, rec.clone()))
        .start()
        .await
        .unwrap();
    let other_pool = db.another_pool().await;
    let b = db
        .builder_on(other_pool.clone())
        .queue(Queue::leased("q", 8, rec.clone()))
        .start()
        .await
        .unwrap();
    for (n, handle) in [&a, &b].into_iter().enumerate() {
        for chunk in 0..10 {
            let txn = db.db.begin().await.unwrap();
            let batch = (0..50).map(|i| {
                (
                    format!("k{i}"),
                    Message::new("t", format!("{n}-{chunk}-{i}").into_bytes()),
                )
            });
            handle
                .outbox()
                .enqueue_batch(&txn, "q", batch)
                .await
                .unwrap();
            txn.commit().await.unwrap();
            handle.outbox().notify();
        }
    }
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 1000).await,
        "delivered {}",
        rec.distinct()
    );
    a.stop().await;
    b.stop().await;
    other_pool.close().await.ok();
    assert_eq!(rec.order_violations(), 0);
}

/// Blocks its first call until released, to let a test steal the lease.
#[derive(Clone, Default)]
struct Blocking {
    rec: Recorder,
    started: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
    returned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl outbox_core::LeasedHandler for Blocking {
    async fn handle(&self, batch: &outbox_core::Batch) -> outbox_core::BatchResult {
        if self.rec.is_empty() {
            self.rec.record(batch);
            self.started.notify_one();
            self.release.notified().await;
            self.returned
                .store(true, std::sync::atomic::Ordering::SeqCst);
        } else {
            self.rec.record(batch);
        }
        outbox_core::BatchResult::success()
    }
}

/// A worker whose lease expired and was taken by another while its handler
/// ran: its acknowledgement is refused and the cursor does not move.
pub async fn leased_worker_that_lost_its_lease_cannot_acknowledge(db: TestDb) {
    let handler = Blocking::default();
    let handle = db
        .builder()
        .queue(
            Queue::leased("q", 1, handler.clone())
                .lease(Duration::from_secs(20))
                .handler_timeout(Duration::from_secs(15)),
        )
        .start()
        .await
        .unwrap();
    let outbox = handle.outbox().clone();
    let txn = db.db.begin().await.unwrap();
    let batch = (0..5).map(|i| {
        (
            PartitionKey::index(0),
            Message::new("t", format!("m{i}").into_bytes()),
        )
    });
    outbox.enqueue_batch(&txn, "q", batch).await.unwrap();
    txn.commit().await.unwrap();
    outbox.notify();
    tokio::time::timeout(PATIENCE, handler.started.notified())
        .await
        .expect("handler never started");

    // The lease runs out (as if the worker had stalled past it) and another takes it.
    db.exec(&format!(
        "UPDATE {} SET lease_until = 0",
        db.table("partition")
    ))
    .await;
    let thief = outbox
        .take_lease("q", 0, "thief", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired lease can be taken");
    handler.release.notify_one();
    assert!(
        wait_until(PATIENCE, || handler
            .returned
            .load(std::sync::atomic::Ordering::SeqCst))
        .await
    );
    // Give the worker time to try its acknowledgement.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let processed = db
        .scalar(&format!(
            "SELECT processed_seq AS n FROM {}",
            db.table("partition")
        ))
        .await;
    assert_eq!(
        processed, 0,
        "the worker that lost its lease acknowledged anyway"
    );
    assert!(
        outbox.acknowledge(&thief, 5).await.unwrap(),
        "the new holder's acknowledgement was refused"
    );
    handle.stop().await;
}
