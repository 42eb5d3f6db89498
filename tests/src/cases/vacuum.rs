use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, PartitionKey, Queue};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Guarantee 6: processed rows are deleted; the tables do not keep them.
pub async fn vacuum_removes_processed_rows(db: TestDb) {
    let rec = Recorder::default();
    let handle = db
        .builder()
        .vacuum_batch(50)
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await
        .unwrap();
    for round in 0..3 {
        let txn = db.db.begin().await.unwrap();
        let batch = (0..200).map(|i| {
            (
                PartitionKey::index(i % 2),
                Message::new("t", format!("{round}-{i}").into_bytes()),
            )
        });
        handle
            .outbox()
            .enqueue_batch(&txn, "q", batch)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        handle.outbox().notify();
        let expected = 200 * (round + 1);
        assert!(wait_until(PATIENCE, || rec.distinct() == expected).await);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = db.count("message").await;
            if left == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{left} processed rows never vacuumed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    handle.stop().await;
}
