//! The handler timeout bounds what a transactional handler waits for in the
//! database, and `stop()` returns while a handler hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use outbox_core::{Batch, BatchResult, Message, OutboxHandle, PartitionKey, Queue, RetryPolicy};

use super::PATIENCE;
use super::batch_failure::id_literal;
use crate::{Backend, Recorder, TestDb, wait_until};

/// The row of the side table the handler updates and the test locks.
const KEY: uuid::Uuid = uuid::Uuid::from_u128(0x0b0c);

/// How long `stop()` may take here: its documented deadline (twice the
/// handler timeout plus 5 s) with room to spare.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Updates the KEY row, then writes a side row per message.
#[derive(Clone)]
struct UpdatesKey {
    db: TestDb,
    calls: Arc<AtomicUsize>,
    rec: Recorder,
}

#[async_trait::async_trait]
impl outbox_core::TransactionalHandler for UpdatesKey {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        self.calls.fetch_add(1, Ordering::SeqCst);
        for m in &batch.messages {
            let update = format!(
                "UPDATE {} SET seq = seq + 1 WHERE message_id = {}",
                self.db.table("side"),
                id_literal(&self.db, KEY)
            );
            if let Err(err) = txn.execute_unprepared(&update).await {
                return BatchResult::retry(format!("lock wait failed: {err}"));
            }
            if let Err(err) = txn
                .execute_raw(self.db.side_insert(m.message_id, m.seq))
                .await
            {
                return BatchResult::retry(format!("side insert failed: {err}"));
            }
        }
        self.rec.record(batch);
        BatchResult::success()
    }
}

async fn start(db: &TestDb, handler: &UpdatesKey) -> OutboxHandle {
    db.builder()
        .queue(
            Queue::transactional("q", 1, handler.clone())
                .handler_timeout(Duration::from_secs(1))
                .lease(Duration::from_secs(5))
                .lease_headroom(Duration::from_secs(1))
                .retry(
                    RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(100))
                        .jitter(0.0),
                ),
        )
        .start()
        .await
        .unwrap()
}

async fn stop_in_time(handle: &OutboxHandle, while_what: &str) {
    assert!(
        tokio::time::timeout(STOP_WITHIN, handle.stop())
            .await
            .is_ok(),
        "stop() did not return within {STOP_WITHIN:?} while {while_what}"
    );
}

async fn key_seq(db: &TestDb) -> i64 {
    db.scalar(&format!(
        "SELECT seq AS n FROM {} WHERE message_id = {}",
        db.table("side"),
        id_literal(db, KEY)
    ))
    .await
}

/// A transactional handler waiting on a row lock that another transaction
/// holds is cut off at its timeout: the attempt is recorded as a retry, the
/// worker's transaction ends, `stop()` returns, and the message goes through
/// once the lock is released. SQLite has one writer: the worker's
/// transaction takes the write lock before the handler runs, so the
/// handler never waits; instead the test's write transaction holds the
/// workers off, `stop()` still returns in time, and the message goes
/// through once it commits.
pub async fn transactional_handler_timeout_bounds_lock_waits_and_stop(db: TestDb) {
    db.create_side_table().await;
    db.db.execute_raw(db.side_insert(KEY, 0)).await.unwrap();
    let handler = UpdatesKey {
        db: db.clone(),
        calls: Arc::default(),
        rec: Recorder::default(),
    };
    let lock_key = format!(
        "UPDATE {} SET seq = seq WHERE message_id = {}",
        db.table("side"),
        id_literal(&db, KEY)
    );
    match db.backend {
        Backend::Postgres | Backend::MySql => {
            let first = start(&db, &handler).await;
            let blocker = db.db.begin().await.unwrap();
            blocker.execute_unprepared(&lock_key).await.unwrap();
            let txn = db.db.begin().await.unwrap();
            first
                .outbox()
                .enqueue(
                    &txn,
                    "q",
                    PartitionKey::index(0),
                    Message::new("t", b"m1".to_vec()),
                )
                .await
                .unwrap();
            txn.commit().await.unwrap();
            first.outbox().notify();
            // The handler is now waiting for the test's row lock.
            assert!(
                wait_until(PATIENCE, || handler.calls.load(Ordering::SeqCst) >= 1).await,
                "the handler was never called"
            );
            stop_in_time(&first, "a handler waited on a row lock").await;

            // The timed-out attempt was recorded (its transaction ended).
            let stats = first.outbox().admin().stats().await.unwrap();
            let partition = stats.queue("q").unwrap().partition(0).unwrap().clone();
            eprintln!(
                "recorded while the test held its lock: attempts {}, last error {:?}",
                partition.attempts, partition.last_error
            );
            let timed_out = |e: &str| {
                let e = e.to_lowercase();
                e.contains("timed out") || e.contains("timeout") || e.contains("max_statement_time")
            };
            assert!(
                partition.attempts >= 1
                    && partition.last_error.as_deref().is_some_and(timed_out)
                    && partition.processed_seq == 0,
                "expected a timed-out retry of m1 on record, got {partition:?}"
            );

            // A new instance keeps trying while the lock is held, then
            // delivers once the test commits.
            let second = start(&db, &handler).await;
            let attempts_before = partition.attempts;
            super::eventually("another timed-out attempt is recorded", || async {
                let stats = second.outbox().admin().stats().await.unwrap();
                stats.queue("q").unwrap().partition(0).unwrap().attempts > attempts_before
            })
            .await;
            blocker.commit().await.unwrap();
            assert!(
                wait_until(PATIENCE, || handler.rec.len() == 1).await,
                "m1 was not delivered after the lock was released"
            );
            stop_in_time(&second, "idle").await;
            // No pooled connection keeps the handler's timeouts (MySQL's are
            // session settings, restored after each handler).
            let changed = match db.backend {
                Backend::Postgres => {
                    "SELECT COUNT(*) AS n FROM pg_settings \
                     WHERE name IN ('statement_timeout', 'lock_timeout') AND setting <> reset_val"
                }
                Backend::MySql => {
                    "SELECT CAST(@@SESSION.innodb_lock_wait_timeout <> \
                     @@GLOBAL.innodb_lock_wait_timeout AS SIGNED) AS n"
                }
                Backend::Sqlite => unreachable!("this arm is PostgreSQL and MySQL"),
            };
            let queries: Vec<_> = (0..8)
                .map(|_| {
                    let db = db.clone();
                    tokio::spawn(async move { db.scalar(changed).await })
                })
                .collect();
            let mut connections = Vec::new();
            for query in queries {
                connections.push(query.await.unwrap());
            }
            assert!(
                connections.iter().all(|n| *n == 0),
                "a pooled connection kept the handler's timeouts: {connections:?}"
            );
        }
        Backend::Sqlite => {
            let first = start(&db, &handler).await;
            // The test's write transaction holds SQLite's only write lock;
            // m1 is enqueued in it, since an enqueue needs that lock too.
            let blocker = db.db.begin().await.unwrap();
            blocker.execute_unprepared(&lock_key).await.unwrap();
            first
                .outbox()
                .enqueue(
                    &blocker,
                    "q",
                    PartitionKey::index(0),
                    Message::new("t", b"m1".to_vec()),
                )
                .await
                .unwrap();
            assert!(
                !wait_until(Duration::from_millis(500), || handler
                    .calls
                    .load(Ordering::SeqCst)
                    > 0)
                .await,
                "a handler ran while the test held SQLite's write lock"
            );
            // The workers wait for the write lock (the busy timeout), not
            // for the handler: stop() still returns in time.
            stop_in_time(&first, "the test held SQLite's write lock").await;
            blocker.commit().await.unwrap();
            let second = start(&db, &handler).await;
            second.outbox().notify();
            assert!(
                wait_until(PATIENCE, || handler.rec.len() == 1).await,
                "m1 was not delivered after the write lock was released"
            );
            stop_in_time(&second, "idle").await;
        }
    }
    // Delivered once: one side row, the KEY row updated once.
    assert_eq!(db.count("side").await, 2, "side rows: KEY and m1's");
    assert_eq!(key_seq(&db).await, 1, "the handler's update committed once");
    assert_eq!(handler.rec.len(), 1);
}
