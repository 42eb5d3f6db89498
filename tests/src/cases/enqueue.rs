use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, OutboxError, PartitionKey, Queue};

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
        .enqueue(
            &txn,
            "q",
            PartitionKey::index(0),
            Message::new("t", b"rolled back".to_vec()),
        )
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(
        db.count("message").await,
        0,
        "a rolled-back message row remains"
    );

    let txn = db.db.begin().await.unwrap();
    outbox
        .enqueue(
            &txn,
            "q",
            PartitionKey::index(0),
            Message::new("t", b"committed".to_vec()),
        )
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
    let err = outbox
        .enqueue(&txn, "nope", PartitionKey::index(0), ok())
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::UnknownQueue { ref queue } if queue == "nope"),
        "{err:?}"
    );
    let err = outbox
        .enqueue(&txn, "q", PartitionKey::index(4), ok())
        .await
        .unwrap_err();
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
        .enqueue(
            &txn,
            "q",
            PartitionKey::index(0),
            Message::new("t", vec![0u8; 1025]),
        )
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
        .enqueue(
            &txn,
            "q",
            PartitionKey::index(0),
            Message::new("", b"x".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::InvalidPayloadType { .. }),
        "{err:?}"
    );
    for bad_type in ["t".repeat(129), "a\0b".to_owned()] {
        let err = outbox
            .enqueue(
                &txn,
                "q",
                PartitionKey::index(0),
                Message::new(bad_type, b"x".to_vec()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, OutboxError::InvalidPayloadType { .. }),
            "{err:?}"
        );
    }
    for bad in [
        ok().header("", "v"),
        ok().header("h".repeat(129), "v"),
        ok().header("a\nb", "v"),
        ok().header("h", "v".repeat(8 * 1024 + 1)),
    ] {
        let err = outbox
            .enqueue(&txn, "q", PartitionKey::index(0), bad)
            .await
            .unwrap_err();
        assert!(matches!(err, OutboxError::InvalidHeader { .. }), "{err:?}");
    }
    // A batch with one bad message writes none of them.
    let err = outbox
        .enqueue_batch(
            &txn,
            "q",
            [
                (PartitionKey::index(0), ok()),
                (PartitionKey::index(9), ok()),
            ],
        )
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
            [
                (PartitionKey::index(0), ok().message_id(id)),
                (PartitionKey::index(1), ok().message_id(id)),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateMessageId { message_id } if message_id == id),
        "{err:?}"
    );
    txn.commit().await.unwrap();
    assert_eq!(
        db.count("message").await,
        0,
        "a rejected enqueue wrote a message row"
    );

    // A reused message id is reported as such.
    let id = uuid::Uuid::now_v7();
    let txn = db.db.begin().await.unwrap();
    outbox
        .enqueue(&txn, "q", PartitionKey::index(0), ok().message_id(id))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let txn = db.db.begin().await.unwrap();
    let err = outbox
        .enqueue(&txn, "q", PartitionKey::index(1), ok().message_id(id))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateMessageId { message_id } if message_id == id),
        "{err:?}"
    );
    txn.rollback().await.unwrap();
    outbox.notify();
    assert!(wait_until(PATIENCE, || rec.len() == 1).await);
    assert_eq!(rec.all()[0].message_id, id);

    // Strings that would break SQL if spliced in are bound parameters: they
    // go through verbatim, and a scope built from one matches nothing.
    let hostile = "x'); DROP TABLE outbox_body; -- \" \\ `";
    let txn = db.db.begin().await.unwrap();
    outbox
        .enqueue(
            &txn,
            "q",
            hostile,
            Message::new(hostile, hostile.as_bytes().to_vec()).header(hostile, hostile),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    outbox.notify();
    assert!(wait_until(PATIENCE, || rec.len() == 2).await);
    handle.stop().await;
    assert_eq!(rec.all()[1].payload, hostile);
    let scope = outbox_core::DeadLetterScope::all()
        .queue(hostile)
        .payload_type(hostile);
    let admin =
        outbox_core::OutboxAdmin::for_dialect(db.db.clone(), db.dialect.clone(), &db.prefix)
            .unwrap();
    assert_eq!(admin.dead_letters().count(&scope).await.unwrap(), 0);
    for prefix in [hostile, "outbox_; drop table x", "Outbox_"] {
        assert!(matches!(
            outbox_core::OutboxAdmin::for_dialect(db.db.clone(), db.dialect.clone(), prefix),
            Err(OutboxError::InvalidTablePrefix { .. })
        ));
        assert!(matches!(
            db.schema().prefix(prefix),
            Err(OutboxError::InvalidTablePrefix { .. })
        ));
    }

    // A handler asking for an endless retry delay gets the 24-hour cap,
    // which the workers' clock arithmetic can take.
    let forever = db
        .builder()
        .queue(Queue::leased("forever", 1, ForeverRetry))
        .start()
        .await
        .unwrap();
    let txn = db.db.begin().await.unwrap();
    forever
        .outbox()
        .enqueue(&txn, "forever", PartitionKey::index(0), ok())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    forever.outbox().notify();
    let retry_at = format!(
        "SELECT retry_at AS n FROM {} WHERE queue_name = 'forever'",
        db.table("partition")
    );
    let mut waited = 0;
    while db.scalar(&retry_at).await == 0 {
        assert!(waited < 3000, "the retry was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    forever.stop().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let wait_ms = db.scalar(&retry_at).await - now_ms;
    let day_ms = 24 * 3600 * 1000;
    assert!(
        (day_ms - 120_000..=day_ms + 120_000).contains(&wait_ms),
        "a retry after Duration::MAX was stored as a wait of {wait_ms} ms"
    );
}

/// Asks for a retry after `Duration::MAX`.
struct ForeverRetry;

#[async_trait::async_trait]
impl outbox_core::LeasedHandler for ForeverRetry {
    async fn handle(&self, _: &outbox_core::Batch) -> outbox_core::BatchResult {
        outbox_core::BatchResult::All(outbox_core::Outcome::Retry {
            reason: "some day".into(),
            after: Some(std::time::Duration::MAX),
        })
    }
}
