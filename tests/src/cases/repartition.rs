//! Changing a queue's partition count: a shrink that would strand messages
//! is refused at start; once the partitions it removes are drained, it works.

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, OutboxError, OutboxHandle, PartitionKey, Queue};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

async fn enqueue(db: &TestDb, handle: &OutboxHandle, partitions: &[u32], tag: &str) {
    let txn = db.db.begin().await.unwrap();
    let batch = partitions.iter().enumerate().map(|(i, p)| {
        (
            PartitionKey::index(*p),
            Message::new("t", format!("{tag}-p{p}-{i}").into_bytes()),
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

/// Finding 7 of issue 14: a queue started with 4 partitions holds messages
/// in partitions 2 and 3; a restart with 2 partitions used to start without
/// a word and leave them there for good. Now `start()` refuses with
/// `PartitionsNotDrained` (naming the queue, the partitions and the count
/// of messages), for producer-only instances too; after a run with 4
/// partitions drains them, the shrink to 2 starts and delivers.
pub async fn shrinking_partitions_refuses_until_the_removed_ones_are_drained(db: TestDb) {
    // Partition 2: two sequenced messages; partition 3: two sequenced and one
    // still incoming; partition 0: one, which a 2-partition instance serves.
    let producer = db.producer("q", 4).await;
    enqueue(&db, &producer, &[0, 2, 2, 3, 3], "a").await;
    db.sequence_all().await;
    enqueue(&db, &producer, &[3], "b").await;
    producer.stop().await;

    let rec = Recorder::default();
    let shrunk = db
        .builder()
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await;
    match shrunk {
        Ok(handle) => {
            // The old behaviour: partition 0 is served, 2 and 3 are not.
            let served = wait_until(PATIENCE, || rec.distinct() == 1).await;
            handle.stop().await;
            panic!(
                "start with 2 partitions accepted while partitions 2 and 3 held 5 messages: \
                 delivered {} (partition 0 served: {served}), the 5 are stranded silently",
                rec.distinct()
            );
        }
        Err(OutboxError::PartitionsNotDrained {
            queue,
            partitions,
            undrained,
            messages,
        }) => {
            assert_eq!(queue, "q");
            assert_eq!(partitions, 2);
            assert_eq!(undrained, [2, 3]);
            assert_eq!(messages, 5);
        }
        Err(other) => panic!("start failed otherwise: {other:?}"),
    }
    let err = db
        .builder()
        .queue(Queue::produce_only("q", 2))
        .run_workers(false)
        .start()
        .await
        .expect_err("a producer-only instance with 2 partitions would strand them too");
    let text = err.to_string();
    assert!(
        text.contains("\"q\"") && text.contains("2, 3") && text.contains("5"),
        "{text}"
    );
    assert!(
        text.contains("4 partitions"),
        "the message should say what to do: {text}"
    );
    assert!(rec.is_empty(), "a refused start delivered something");

    // Drain with the old count, then shrink.
    let drain = db
        .builder()
        .queue(Queue::leased("q", 4, rec.clone()))
        .start()
        .await
        .unwrap();
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 6).await,
        "drained {} of 6",
        rec.distinct()
    );
    drain.stop().await;
    let handle = db
        .builder()
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await
        .expect("the shrink once partitions 2 and 3 are drained");
    enqueue(&db, &handle, &[0, 1], "c").await;
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 8).await,
        "after the shrink: delivered {} of 8",
        rec.distinct()
    );
    handle.stop().await;
    assert_eq!(rec.order_violations(), 0);

    // Growing is allowed, also with messages waiting.
    let producer = db.producer("q", 2).await;
    enqueue(&db, &producer, &[0, 1], "d").await;
    producer.stop().await;
    let grown = db
        .builder()
        .queue(Queue::leased("q", 3, rec.clone()))
        .start()
        .await
        .expect("growing the partition count");
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 10).await,
        "after growing: delivered {} of 10",
        rec.distinct()
    );
    grown.stop().await;
}
