//! What a per-message handler is told about each delivery, and enqueueing
//! through the transaction `Outbox::transaction` hands its callback.

use std::sync::{Arc, Mutex};

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction};
use outbox_core::{
    Delivery, EachMessage, LeasedMessageHandler, Message, Outcome, PartitionKey, Queue,
    TransactionError, TransactionalMessageHandler,
};

use super::PATIENCE;
use crate::{TestDb, wait_until};

/// One handler for every queue: records (queue, partition, payload) of each
/// delivery, in either mode.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, u32, String)>>>);

impl Seen {
    fn push(&self, message: &Delivery) {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        self.0
            .lock()
            .unwrap()
            .push((message.queue.clone(), message.partition, payload));
    }

    fn all(&self) -> Vec<(String, u32, String)> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl LeasedMessageHandler for Seen {
    async fn handle(&self, message: &Delivery) -> Outcome {
        self.push(message);
        Outcome::Success
    }
}

#[async_trait::async_trait]
impl TransactionalMessageHandler for Seen {
    async fn handle(&self, _: &DatabaseTransaction, message: &Delivery) -> Outcome {
        self.push(message);
        Outcome::Success
    }
}

/// One per-message handler serves three queues (two leased, one
/// transactional) and learns each message's queue and partition from the
/// delivery itself; the messages are enqueued with `tx.enqueue` and
/// `tx.enqueue_batch` inside `Outbox::transaction`, by index and by string,
/// integer and UUID keys, next to a row written through the same `tx`; a
/// callback that fails takes its row and its message with it.
pub async fn message_handler_is_told_each_deliverys_queue_and_partition(db: TestDb) {
    db.create_side_table().await;
    let seen = Seen::default();
    let handle = db
        .builder()
        .queue(Queue::leased("a", 2, EachMessage(seen.clone())))
        .queue(Queue::leased("b", 3, EachMessage(seen.clone())))
        .queue(Queue::transactional("t", 2, EachMessage(seen.clone())))
        .start()
        .await
        .unwrap();
    let customer = uuid::Uuid::from_u128(0x0192_f0c1_5a6b_7c8d_9e0f_a1b2_c3d4_e5f6);
    // (queue, key, partitions of the queue), each sent once.
    let sent: Vec<(&str, PartitionKey, u32)> = vec![
        ("a", PartitionKey::index(0), 2),
        ("a", PartitionKey::index(1), 2),
        ("b", PartitionKey::from("customer-1"), 3),
        ("b", PartitionKey::from(42_u64), 3),
        ("b", PartitionKey::from(-7_i64), 3),
        ("b", PartitionKey::from(customer), 3),
        ("t", PartitionKey::index(0), 2),
        ("t", PartitionKey::index(1), 2),
    ];
    let expected: Vec<(String, u32, String)> = sent
        .iter()
        .enumerate()
        .map(|(i, (queue, key, partitions))| {
            (queue.to_string(), key.resolve(*partitions), format!("m{i}"))
        })
        .collect();

    let side = db.side_insert(uuid::Uuid::now_v7(), 1);
    let messages = sent.clone();
    handle
        .outbox()
        .transaction(move |tx| {
            Box::pin(async move {
                // The context is a connection for the caller's own writes.
                tx.execute_raw(side).await.map_err(|e| e.to_string())?;
                let mut batch = Vec::new();
                for (i, (queue, key, _)) in messages.into_iter().enumerate() {
                    let message = Message::new("t", format!("m{i}"));
                    if queue == "t" {
                        batch.push((key, message));
                    } else {
                        tx.enqueue(queue, key, message)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                tx.enqueue_batch("t", batch)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .await
        .unwrap();

    // A failing callback rolls back its row and its message.
    let side = db.side_insert(uuid::Uuid::now_v7(), 2);
    let failed = handle
        .outbox()
        .transaction(move |tx| {
            Box::pin(async move {
                tx.execute_raw(side).await.map_err(|e| e.to_string())?;
                tx.enqueue(
                    "a",
                    PartitionKey::index(0),
                    Message::new("t", "rolled back"),
                )
                .await
                .map_err(|e| e.to_string())?;
                Err::<(), _>("declined".to_owned())
            })
        })
        .await;
    assert!(
        matches!(failed, Err(TransactionError::Transaction(ref e)) if e == "declined"),
        "{failed:?}"
    );

    assert!(
        wait_until(PATIENCE, || seen.all().len() >= expected.len()).await,
        "delivered {:?}",
        seen.all()
    );
    handle.stop().await;
    let mut got = seen.all();
    got.sort_by(|x, y| x.2.cmp(&y.2));
    assert_eq!(got, expected, "queue and partition as each delivery told");
    assert_eq!(
        db.count("side").await,
        1,
        "the failed callback's row stayed"
    );
}
