use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use outbox_core::{Batch, BatchResult, Message, Queue, TransactionalHandler};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Writes one side-table row per message in the partition's transaction.
/// With `fail_every`, a batch containing a multiple of it fails once, after
/// its inserts, so those inserts must roll back.
#[derive(Clone)]
struct SideWriter {
    db: TestDb,
    rec: Recorder,
    fail_every: Option<i64>,
    failed: Arc<Mutex<HashSet<uuid::Uuid>>>,
    insert_errors: Arc<AtomicUsize>,
}

impl SideWriter {
    fn new(db: &TestDb, rec: &Recorder, fail_every: Option<i64>) -> Self {
        Self {
            db: db.clone(),
            rec: rec.clone(),
            fail_every,
            failed: Arc::default(),
            insert_errors: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl TransactionalHandler for SideWriter {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        for m in &batch.messages {
            if let Err(err) = txn
                .execute_raw(self.db.side_insert(m.message_id, m.seq))
                .await
            {
                self.insert_errors.fetch_add(1, Ordering::SeqCst);
                return BatchResult::retry(err.to_string());
            }
        }
        if let Some(every) = self.fail_every {
            let mut failed = self.failed.lock().unwrap();
            if let Some(m) = batch
                .messages
                .iter()
                .find(|m| m.seq % every == 0 && !failed.contains(&m.message_id))
            {
                failed.insert(m.message_id);
                return BatchResult::retry("failing after the inserts");
            }
        }
        self.rec.record(batch);
        BatchResult::success()
    }
}

async fn produce(
    db: &TestDb,
    outbox: &outbox_core::Outbox,
    queue: &str,
    from: usize,
    count: usize,
) {
    for chunk in (from..from + count).collect::<Vec<_>>().chunks(50) {
        let txn = db.db.begin().await.unwrap();
        let batch = chunk.iter().map(|n| {
            (
                format!("k{}", n % 13),
                Message::new("t", n.to_string().into_bytes()),
            )
        });
        outbox.enqueue_batch(&txn, queue, batch).await.unwrap();
        txn.commit().await.unwrap();
        outbox.notify();
    }
}

async fn side_rows_reach(db: &TestDb, expected: i64) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if db.count("side").await >= expected {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// Guarantee 4: the handler's writes commit with the acknowledgement; a
/// handler that fails after writing rolls its writes back.
pub async fn transactional_handler_writes_commit_exactly_once(db: TestDb) {
    db.create_side_table().await;
    let rec = Recorder::default();
    let handler = SideWriter::new(&db, &rec, Some(7));
    let retry = outbox_core::RetryPolicy::exponential(
        std::time::Duration::from_millis(5),
        std::time::Duration::from_millis(20),
    );
    let handle = db
        .builder()
        .queue(
            Queue::transactional("q", 4, handler.clone())
                .batch_size(10)
                .retry(retry),
        )
        .start()
        .await
        .unwrap();
    produce(&db, handle.outbox(), "q", 0, 300).await;
    assert!(
        side_rows_reach(&db, 300).await,
        "side rows: {}",
        db.count("side").await
    );
    assert!(
        wait_until(PATIENCE, || rec.len() == 300).await,
        "recorded {}",
        rec.len()
    );
    handle.stop().await;
    assert_eq!(
        db.count("side").await,
        300,
        "exactly one side row per message"
    );
    assert_eq!(rec.len(), 300, "a message was acknowledged twice");
    assert_eq!(rec.order_violations(), 0);
    assert_eq!(
        handler.insert_errors.load(Ordering::SeqCst),
        0,
        "a side row was written twice"
    );
    assert!(
        !handler.failed.lock().unwrap().is_empty(),
        "the failing path was not exercised"
    );
}

/// Stop drains and restart resumes from the stored cursor: nothing twice.
pub async fn stop_then_restart_resumes_without_redelivery(db: TestDb) {
    db.create_side_table().await;
    let rec = Recorder::default();
    let first = db
        .builder()
        .queue(Queue::transactional(
            "q",
            4,
            SideWriter::new(&db, &rec, None),
        ))
        .start()
        .await
        .unwrap();
    produce(&db, first.outbox(), "q", 0, 100).await;
    assert!(wait_until(PATIENCE, || rec.len() == 100).await);
    first.stop().await;
    first.stop().await; // idempotent

    // Enqueued while nothing runs.
    let producer = db.producer("q", 4).await;
    produce(&db, producer.outbox(), "q", 100, 100).await;
    producer.stop().await;

    let second = db
        .builder()
        .queue(Queue::transactional(
            "q",
            4,
            SideWriter::new(&db, &rec, None),
        ))
        .start()
        .await
        .unwrap();
    assert!(
        wait_until(PATIENCE, || rec.len() >= 200).await,
        "recorded {}",
        rec.len()
    );
    second.stop().await;
    assert_eq!(rec.len(), 200, "redelivered across the restart");
    assert_eq!(rec.distinct(), 200);
    assert_eq!(db.count("side").await, 200);
    assert_eq!(rec.order_violations(), 0);
}

/// Two instances with separate pools on one database: no duplicate, no loss.
pub async fn two_instances_share_partitions_without_duplicates(db: TestDb) {
    db.create_side_table().await;
    let rec = Recorder::default();
    let a = db
        .builder()
        .queue(Queue::transactional("q", 8, SideWriter::new(&db, &rec, None)).batch_size(20))
        .start()
        .await
        .unwrap();
    let other_pool = db.another_pool().await;
    let b = db
        .builder_on(other_pool.clone())
        .queue(Queue::transactional("q", 8, SideWriter::new(&db, &rec, None)).batch_size(20))
        .start()
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        produce(&db, a.outbox(), "q", 0, 1000),
        produce(&db, b.outbox(), "q", 1000, 1000)
    );
    let ((), ()) = (ra, rb);
    assert!(
        side_rows_reach(&db, 2000).await,
        "side rows: {}",
        db.count("side").await
    );
    assert!(wait_until(PATIENCE, || rec.len() >= 2000).await);
    a.stop().await;
    b.stop().await;
    other_pool.close().await.ok();
    assert_eq!(rec.len(), 2000, "duplicate deliveries");
    assert_eq!(rec.distinct(), 2000);
    assert_eq!(db.count("side").await, 2000);
    assert_eq!(rec.order_violations(), 0);
}

/// Runs a failing statement on its first call and claims success anyway; on
/// PostgreSQL that aborts the transaction, which must cost one retry, not a
/// stalled partition.
#[derive(Clone)]
struct FailsStatementOnce {
    db: TestDb,
    rec: Recorder,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl TransactionalHandler for FailsStatementOnce {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = txn
                .execute_unprepared("SELECT no_such_column FROM no_such_table")
                .await;
        }
        for m in &batch.messages {
            if let Err(err) = txn
                .execute_raw(self.db.side_insert(m.message_id, m.seq))
                .await
            {
                return BatchResult::retry(err.to_string());
            }
        }
        self.rec.record(batch);
        BatchResult::success()
    }
}

/// A handler that leaves its transaction failed does not stall the partition,
/// and its writes never commit twice.
pub async fn failed_statement_in_handler_does_not_stall_partition(db: TestDb) {
    db.create_side_table().await;
    let rec = Recorder::default();
    let handler = FailsStatementOnce {
        db: db.clone(),
        rec: rec.clone(),
        calls: Arc::default(),
    };
    let retry = outbox_core::RetryPolicy::exponential(
        std::time::Duration::from_millis(5),
        std::time::Duration::from_millis(10),
    );
    let handle = db
        .builder()
        .queue(Queue::transactional("q", 1, handler.clone()).retry(retry))
        .start()
        .await
        .unwrap();
    produce(&db, handle.outbox(), "q", 0, 20).await;
    assert!(
        side_rows_reach(&db, 20).await,
        "side rows: {}",
        db.count("side").await
    );
    handle.stop().await;
    assert_eq!(db.count("side").await, 20);
    assert_eq!(rec.distinct(), 20);
    assert_eq!(rec.order_violations(), 0);
    assert!(handler.calls.load(Ordering::SeqCst) >= 2 || rec.len() == 20);
}
