use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, OutboxError, Queue};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Guarantee 1: a message exists iff its transaction committed.
pub async fn rollback_leaves_no_message(db: TestDb) {
    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await
        .unwrap();
    let outbox = handle.outbox().clone();

    let txn = db.db.begin().await.unwrap();
    outbox
        .enqueue(&txn, "q", 0u32, Message::new("t", b"rolled back".to_vec()))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(db.count("body").await, 0, "a rolled-back body row remains");
    assert_eq!(
        db.count("incoming").await,
        0,
        "a rolled-back incoming row remains"
    );

    let txn = db.db.begin().await.unwrap();
    outbox
        .enqueue(&txn, "q", 0u32, Message::new("t", b"committed".to_vec()))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    outbox.notify();
    assert!(
        wait_until(PATIENCE, || rec.len() == 1).await,
        "committed message not delivered"
    );
    handle.stop().await;
    let payloads: Vec<String> = rec.all().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, vec!["committed".to_string()]);
}

/// Bad input gets a typed error and leaves the transaction untouched.
pub async fn bad_input_returns_typed_errors_and_changes_nothing(db: TestDb) {
    let rec = Recorder::default();
    let handle = db
        .builder()
        .max_payload_bytes(1024)
        .queue(Queue::leased("q", 4, rec.clone()))
        .start()
        .await
        .unwrap();
    let outbox = handle.outbox().clone();
    let ok = || Message::new("t", b"fine".to_vec());

    let txn = db.db.begin().await.unwrap();
    let err = outbox.enqueue(&txn, "nope", 0u32, ok()).await.unwrap_err();
    assert!(
        matches!(err, OutboxError::UnknownQueue { ref queue } if queue == "nope"),
        "{err:?}"
    );
    let err = outbox.enqueue(&txn, "q", 4u32, ok()).await.unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::PartitionOutOfRange {
                partition: 4,
                partitions: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let err = outbox
        .enqueue(&txn, "q", 0u32, Message::new("t", vec![0u8; 1025]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::PayloadTooLarge {
                size: 1025,
                limit: 1024
            }
        ),
        "{err:?}"
    );
    let err = outbox
        .enqueue(&txn, "q", 0u32, Message::new("", b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::InvalidPayloadType { .. }),
        "{err:?}"
    );
    let err = outbox
        .enqueue(&txn, "q", 0u32, ok().header("", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::InvalidHeader { .. }), "{err:?}");
    // A batch with one bad message writes none of them.
    let err = outbox
        .enqueue_batch(&txn, "q", [(0u32, ok()), (9u32, ok())])
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::PartitionOutOfRange { partition: 9, .. }),
        "{err:?}"
    );
    let id = uuid::Uuid::now_v7();
    let err = outbox
        .enqueue_batch(
            &txn,
            "q",
            [(0u32, ok().message_id(id)), (1u32, ok().message_id(id))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateMessageId { message_id } if message_id == id),
        "{err:?}"
    );
    txn.commit().await.unwrap();
    assert_eq!(
        db.count("body").await,
        0,
        "a rejected enqueue wrote a body row"
    );
    assert_eq!(
        db.count("incoming").await,
        0,
        "a rejected enqueue wrote an incoming row"
    );

    // A reused message id is reported as such.
    let id = uuid::Uuid::now_v7();
    let txn = db.db.begin().await.unwrap();
    outbox
        .enqueue(&txn, "q", 0u32, ok().message_id(id))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let txn = db.db.begin().await.unwrap();
    let err = outbox
        .enqueue(&txn, "q", 1u32, ok().message_id(id))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateMessageId { message_id } if message_id == id),
        "{err:?}"
    );
    txn.rollback().await.unwrap();
    outbox.notify();
    assert!(wait_until(PATIENCE, || rec.len() == 1).await);
    handle.stop().await;
    assert_eq!(rec.all()[0].message_id, id);
}
