//! A failure in the middle of a batch is charged to the message that failed:
//! healthy neighbours are never dead-lettered nor charged for it.

use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, TransactionTrait};
use outbox_core::{
    Batch, BatchResult, Delivery, EachMessage, LeasedHandler, LeasedMessageHandler, Message,
    Outcome, PartitionKey, Queue, RetryPolicy, TransactionalHandler, TransactionalMessageHandler,
};

use super::eventually;
use crate::{Recorder, TestDb};

/// How the poison message m3 fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poison {
    /// The batch handler returns a batch-level retry for any batch holding m3.
    BatchRetry,
    /// The batch handler rejects any batch holding m3 as a whole.
    BatchReject,
    /// A per-message handler panics on m3.
    Panic,
    /// A per-message handler hangs past the handler timeout on m3.
    Hang,
}

/// Far above what a healthy batch takes, so that only the hanging message
/// ever times out, even on a loaded machine.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(1);

fn is_poison(message: &Delivery) -> bool {
    message.payload == b"m3"
}

/// What a per-message handler does with m3.
async fn poison_message(poison: Poison) {
    match poison {
        Poison::Panic => panic!("poison m3"),
        Poison::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        Poison::BatchRetry | Poison::BatchReject => {}
    }
}

fn batch_outcome(poison: Poison, batch: &Batch) -> Option<BatchResult> {
    batch.messages.iter().any(is_poison).then(|| match poison {
        Poison::BatchReject => BatchResult::reject("poison m3"),
        _ => BatchResult::retry("poison m3"),
    })
}

fn one(message: &Delivery, batch_of: &str) -> Batch {
    Batch {
        queue: batch_of.into(),
        partition: 0,
        attempt: 0,
        messages: vec![message.clone()],
    }
}

/// The leased handler: batch-level or per-message, by `poison`.
#[derive(Clone)]
struct LeasedPoison {
    poison: Poison,
    rec: Recorder,
}

#[async_trait::async_trait]
impl LeasedHandler for LeasedPoison {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        if let Some(result) = batch_outcome(self.poison, batch) {
            return result;
        }
        self.rec.record(batch);
        BatchResult::success()
    }
}

#[async_trait::async_trait]
impl LeasedMessageHandler for LeasedPoison {
    async fn handle(&self, message: &Delivery) -> Outcome {
        if is_poison(message) {
            poison_message(self.poison).await;
        }
        self.rec.record(&one(message, "lq"));
        Outcome::Success
    }
}

/// The transactional handler: writes a side row per message in the
/// partition's transaction before deciding, so a failure must roll it back.
#[derive(Clone)]
struct TransactionalPoison {
    db: TestDb,
    poison: Poison,
    rec: Recorder,
}

#[async_trait::async_trait]
impl TransactionalHandler for TransactionalPoison {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        for m in &batch.messages {
            if let Err(err) = txn
                .execute_raw(self.db.side_insert(m.message_id, m.seq))
                .await
            {
                return BatchResult::retry(format!("side insert failed: {err}"));
            }
        }
        if let Some(result) = batch_outcome(self.poison, batch) {
            return result;
        }
        self.rec.record(batch);
        BatchResult::success()
    }
}

#[async_trait::async_trait]
impl TransactionalMessageHandler for TransactionalPoison {
    async fn handle(&self, txn: &DatabaseTransaction, message: &Delivery) -> Outcome {
        if let Err(err) = txn
            .execute_raw(self.db.side_insert(message.message_id, message.seq))
            .await
        {
            return Outcome::retry(format!("side insert failed: {err}"));
        }
        if is_poison(message) {
            poison_message(self.poison).await;
        }
        self.rec.record(&one(message, "tq"));
        Outcome::Success
    }
}

fn three_attempts() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(20))
        .jitter(0.0)
        .max_attempts(Some(3))
}

/// m1..m5 to partition 0 of `queue`, in one transaction of a producer-only
/// instance, so that the workers started afterwards see them as one batch.
/// Returns the message ids in order.
pub(crate) async fn enqueue_five(db: &TestDb, queues: &[&str]) -> Vec<Vec<uuid::Uuid>> {
    let producer = db
        .builder()
        .queue(Queue::produce_only("tq", 1))
        .queue(Queue::produce_only("lq", 1))
        .run_workers(false)
        .start()
        .await
        .expect("producer start");
    let mut ids = Vec::new();
    let txn = db.db.begin().await.unwrap();
    for queue in queues {
        let batch = (1..=5).map(|i| {
            (
                PartitionKey::index(0),
                Message::new("t", format!("m{i}").into_bytes()),
            )
        });
        ids.push(
            producer
                .outbox()
                .enqueue_batch(&txn, queue, batch)
                .await
                .unwrap(),
        );
    }
    txn.commit().await.unwrap();
    producer.stop().await;
    ids
}

/// A dead letter as the table holds it.
#[derive(Debug)]
pub(crate) struct Letter {
    pub(crate) seq: i64,
    pub(crate) attempts: i64,
    pub(crate) last_error: String,
}

pub(crate) async fn dead_letters(db: &TestDb, queue: &str) -> Vec<Letter> {
    let sql = format!(
        "SELECT seq, attempts, last_error FROM {} WHERE queue_name = '{queue}' ORDER BY seq",
        db.table("dead_letter")
    );
    let rows = db
        .db
        .query_all_raw(Statement::from_string(db.db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| Letter {
            seq: row.try_get("", "seq").unwrap(),
            attempts: row
                .try_get::<i64>("", "attempts")
                .or_else(|_| row.try_get::<i32>("", "attempts").map(i64::from))
                .unwrap(),
            last_error: row.try_get("", "last_error").unwrap(),
        })
        .collect()
}

/// Payloads in the order of their first delivery.
fn first_deliveries(rec: &Recorder) -> Vec<String> {
    let mut seen = Vec::new();
    for r in rec.all() {
        if !seen.contains(&r.payload) {
            seen.push(r.payload);
        }
    }
    seen
}

/// Waits until the queues' cursors passed m5.
pub(crate) async fn settled(handle: &outbox_core::OutboxHandle, queues: &[&str]) {
    eventually("every queue's cursor passed m5", || async {
        let stats = handle.outbox().admin().stats().await.unwrap();
        queues.iter().all(|q| {
            stats
                .queue(q)
                .and_then(|q| q.partition(0))
                .is_some_and(|p| p.processed_seq == 5)
        })
    })
    .await;
}

/// A message id as an SQL literal of the backend's bytes type.
pub(crate) fn id_literal(db: &TestDb, id: uuid::Uuid) -> String {
    let hex = id.simple().to_string();
    match db.backend {
        crate::Backend::Postgres => format!("'\\x{hex}'::bytea"),
        crate::Backend::MySql => format!("UNHEX('{hex}')"),
        crate::Backend::Sqlite => format!("X'{hex}'"),
    }
}

/// Side rows written for the given message ids (transactional handlers).
pub(crate) async fn side_rows_for(db: &TestDb, ids: &[uuid::Uuid]) -> Vec<i64> {
    let mut counts = Vec::new();
    for id in ids {
        let literal = id_literal(db, *id);
        counts.push(
            db.scalar(&format!(
                "SELECT COUNT(*) AS n FROM {} WHERE message_id = {literal}",
                db.table("side")
            ))
            .await,
        );
    }
    counts
}

/// Runs m1..m5, m3 poisoned as `poison`, through a transactional and a
/// leased queue at once, and checks that only m3 paid for it.
async fn only_the_poison_pays(db: TestDb, poison: Poison) {
    db.create_side_table().await;
    let ids = enqueue_five(&db, &["tq", "lq"]).await;
    let (tq_rec, lq_rec) = (Recorder::default(), Recorder::default());
    let transactional = TransactionalPoison {
        db: db.clone(),
        poison,
        rec: tq_rec.clone(),
    };
    let leased = LeasedPoison {
        poison,
        rec: lq_rec.clone(),
    };
    let (tq, lq) = match poison {
        Poison::BatchRetry | Poison::BatchReject => (
            Queue::transactional("tq", 1, transactional),
            Queue::leased("lq", 1, leased),
        ),
        Poison::Panic | Poison::Hang => (
            Queue::transactional("tq", 1, EachMessage(transactional)),
            Queue::leased("lq", 1, EachMessage(leased)),
        ),
    };
    let configure = |q: Queue| {
        q.batch_size(10)
            .handler_timeout(HANDLER_TIMEOUT)
            .retry(three_attempts())
    };
    let handle = db
        .builder()
        .queue(configure(tq))
        .queue(configure(lq))
        .start()
        .await
        .unwrap();
    settled(&handle, &["tq", "lq"]).await;
    handle.stop().await;

    let (expected_error, expected_attempts) = match poison {
        Poison::BatchRetry => ("retries exhausted after 3 attempts: poison m3", 3),
        Poison::Panic => (
            "retries exhausted after 3 attempts: handler panicked: poison m3",
            3,
        ),
        Poison::Hang => ("retries exhausted after 3 attempts: handler timed out", 3),
        Poison::BatchReject => ("poison m3", 1),
    };
    for (queue, rec) in [("tq", &tq_rec), ("lq", &lq_rec)] {
        let letters = dead_letters(&db, queue).await;
        let summary: Vec<_> = letters
            .iter()
            .map(|l| (l.seq, l.attempts, l.last_error.clone()))
            .collect();
        assert!(
            letters.len() == 1
                && letters[0].seq == 3
                && letters[0].attempts == expected_attempts
                && letters[0].last_error.starts_with(expected_error),
            "{queue}: expected one dead letter, m3 (seq 3) after {expected_attempts} attempts with {expected_error:?}; got {summary:?}"
        );
        assert_eq!(
            first_deliveries(rec),
            ["m1", "m2", "m4", "m5"],
            "{queue}: healthy messages not delivered once each, in order"
        );
    }
    // Transactional: each healthy message's write committed exactly once,
    // the poison's never.
    let side = side_rows_for(&db, &ids[0]).await;
    assert_eq!(
        side,
        [1, 1, 0, 1, 1],
        "tq: committed side rows per message m1..m5"
    );
}

/// A batch-level retry is charged to the message that causes it, found by
/// re-running the batch in smaller pieces; its neighbours go through.
pub async fn batch_retry_charges_only_the_failing_message(db: TestDb) {
    only_the_poison_pays(db, Poison::BatchRetry).await;
}

/// A per-message handler that panics on one message of a batch: only that
/// message is charged and dead-lettered, with the panic's text.
pub async fn panicking_message_in_a_batch_is_the_only_one_charged(db: TestDb) {
    only_the_poison_pays(db, Poison::Panic).await;
}

/// A per-message handler that hangs past the handler timeout on one message
/// of a batch: only that message is charged and dead-lettered.
pub async fn timeout_retry_charges_only_the_hanging_message(db: TestDb) {
    only_the_poison_pays(db, Poison::Hang).await;
}

/// A batch-level reject dead-letters only the message that causes it, not
/// the whole batch.
pub async fn batch_reject_dead_letters_only_the_failing_message(db: TestDb) {
    only_the_poison_pays(db, Poison::BatchReject).await;
}

/// A batch handler reporting per-message outcomes whose statement failed
/// (a duplicate key): on PostgreSQL the failed statement aborts the
/// transaction, which must not replace the handler's real error.
#[derive(Clone)]
struct InsertsEach {
    db: TestDb,
    rec: Recorder,
}

#[async_trait::async_trait]
impl TransactionalHandler for InsertsEach {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        let mut outcomes = Vec::new();
        for m in &batch.messages {
            match txn
                .execute_raw(self.db.side_insert(m.message_id, m.seq))
                .await
            {
                Ok(_) => outcomes.push(Outcome::Success),
                Err(err) => {
                    outcomes.push(Outcome::retry(err.to_string()));
                    break;
                }
            }
        }
        let done = outcomes
            .iter()
            .take_while(|o| **o == Outcome::Success)
            .count();
        self.rec.record(&Batch {
            messages: batch.messages[..done].to_vec(),
            ..batch.clone()
        });
        BatchResult::PerMessage(outcomes)
    }
}

/// A handler statement that fails (a duplicate key) records that error, not
/// the "current transaction is aborted" that follows it on PostgreSQL, and
/// only the failing message pays.
pub async fn failed_statement_error_is_recorded_not_the_aborted_transaction(db: TestDb) {
    db.create_side_table().await;
    let ids = enqueue_five(&db, &["tq"]).await;
    // m3's side row exists already: its insert fails with a duplicate key.
    db.db
        .execute_raw(db.side_insert(ids[0][2], 0))
        .await
        .unwrap();
    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(
            Queue::transactional(
                "tq",
                1,
                InsertsEach {
                    db: db.clone(),
                    rec: rec.clone(),
                },
            )
            .batch_size(10)
            .retry(three_attempts()),
        )
        .start()
        .await
        .unwrap();
    settled(&handle, &["tq"]).await;
    handle.stop().await;
    let letters = dead_letters(&db, "tq").await;
    let summary: Vec<_> = letters
        .iter()
        .map(|l| (l.seq, l.attempts, l.last_error.clone()))
        .collect();
    let real = |e: &str| {
        let e = e.to_lowercase();
        (e.contains("duplicate") || e.contains("unique")) && !e.contains("aborted")
    };
    assert!(
        letters.len() == 1
            && letters[0].seq == 3
            && letters[0].attempts == 3
            && real(&letters[0].last_error),
        "expected one dead letter, m3 (seq 3) after 3 attempts with the duplicate-key error; got {summary:?}"
    );
    assert_eq!(first_deliveries(&rec), ["m1", "m2", "m4", "m5"]);
    assert_eq!(
        side_rows_for(&db, &ids[0]).await,
        [1, 1, 1, 1, 1],
        "committed side rows per message m1..m5 (m3's is the one inserted up front)"
    );
}
