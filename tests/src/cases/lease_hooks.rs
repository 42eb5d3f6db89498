//! The lease hooks of the `testing` feature (`take_lease`, `acknowledge`):
//! an acknowledgement outside what was sequenced is refused.

use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, OutboxError, PartitionKey};

use crate::TestDb;

/// Finding 8 of issue 14: `acknowledge` accepted any seq, so a caller could
/// move the cursor past messages never sequenced (the partition then skips
/// them when they come) or write a cursor of 0 or below. Now a seq that is
/// not after the cursor or beyond the highest sequenced one is
/// `AcknowledgeOutOfRange` and writes nothing; one in range moves the cursor.
pub async fn acknowledge_outside_the_sequenced_range_is_refused(db: TestDb) {
    let producer = db.producer("q", 1).await;
    let txn = db.db.begin().await.unwrap();
    let batch = (0..3).map(|i| {
        (
            PartitionKey::index(0),
            Message::new("t", format!("m{i}").into_bytes()),
        )
    });
    producer
        .outbox()
        .enqueue_batch(&txn, "q", batch)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    // Sequence them (seqs 1..=3) without processing: workers of another queue.
    db.sequence_all().await;

    let outbox = producer.outbox();
    let lease = outbox
        .take_lease("q", 0, "custom", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the partition is free");
    let cursor = || async {
        db.scalar(&format!(
            "SELECT processed_seq AS n FROM {} WHERE queue_name = 'q'",
            db.table("partition")
        ))
        .await
    };
    let mut accepted = Vec::new();
    for seq in [0, -1, 4, i64::MAX] {
        match outbox.acknowledge(&lease, seq).await {
            Err(OutboxError::AcknowledgeOutOfRange {
                seq: refused,
                processed_seq: 0,
                highest_seq: 3,
                ..
            }) if refused == seq => {}
            other => accepted.push((seq, format!("{other:?}"), cursor().await)),
        }
    }
    assert!(
        accepted.is_empty(),
        "seqs outside 1..=3 were not refused with AcknowledgeOutOfRange: (seq, result, cursor after) {accepted:?}"
    );
    assert_eq!(
        cursor().await,
        0,
        "a refused acknowledgement moved the cursor"
    );

    assert!(outbox.acknowledge(&lease, 2).await.unwrap());
    assert_eq!(cursor().await, 2);
    for seq in [2, 1] {
        let result = outbox.acknowledge(&lease, seq).await;
        assert!(
            matches!(
                result,
                Err(OutboxError::AcknowledgeOutOfRange {
                    processed_seq: 2,
                    ..
                })
            ),
            "seq {seq} at or before the cursor: {result:?}"
        );
    }
    assert!(outbox.acknowledge(&lease, 3).await.unwrap());
    assert_eq!(cursor().await, 3);
    producer.stop().await;
}
