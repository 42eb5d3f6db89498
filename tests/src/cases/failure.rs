use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{
    Batch, BatchResult, Delivery, EachMessage, LeasedHandler, LeasedMessageHandler, Message,
    Outcome, PartitionKey, Queue,
};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Fails chosen payloads a number of times (or rejects them), records the rest.
#[derive(Clone, Default)]
struct Picky {
    ok: Recorder,
    tries: Arc<Mutex<HashMap<String, u32>>>,
    retry: HashMap<String, u32>,
    unavailable: HashMap<String, u32>,
    reject: Vec<String>,
}

#[async_trait::async_trait]
impl LeasedMessageHandler for Picky {
    async fn handle(&self, message: &Delivery) -> Outcome {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        let tries = {
            let mut tries = self.tries.lock().unwrap();
            let n = tries.entry(payload.clone()).or_default();
            *n += 1;
            *n
        };
        if self.reject.contains(&payload) {
            return Outcome::reject("poison");
        }
        // Whether this try is one of the first `fails` of the payload.
        let failing =
            |fails: &HashMap<String, u32>| fails.get(&payload).is_some_and(|n| tries <= *n);
        if failing(&self.unavailable) {
            return Outcome::Unavailable {
                reason: format!("broker down, try {tries}"),
                after: Some(Duration::from_millis(10)),
            };
        }
        if failing(&self.retry) {
            return Outcome::Retry {
                reason: format!("try {tries}"),
                after: Some(Duration::from_millis(10)),
            };
        }
        self.ok.record(&Batch {
            queue: "q".into(),
            partition: 0,
            attempt: 0,
            messages: vec![message.clone()],
        });
        Outcome::Success
    }
}

async fn enqueue_ten(db: &TestDb, outbox: &outbox_core::Outbox) {
    let txn = db.db.begin().await.unwrap();
    let batch = (0..10).map(|i| {
        (
            PartitionKey::index(0),
            Message::new("t", format!("m{i}").into_bytes()),
        )
    });
    outbox.enqueue_batch(&txn, "q", batch).await.unwrap();
    txn.commit().await.unwrap();
    outbox.notify();
}

fn payloads(rec: &Recorder) -> Vec<String> {
    rec.all().into_iter().map(|r| r.payload).collect()
}

fn expected(except: &[&str]) -> Vec<String> {
    (0..10)
        .map(|i| format!("m{i}"))
        .filter(|m| !except.contains(&m.as_str()))
        .collect()
}

/// A retried message stays at the head: later ones wait, order is kept.
pub async fn retry_then_success_keeps_order(db: TestDb) {
    let handler = Picky {
        retry: HashMap::from([("m3".to_string(), 2)]),
        ..Picky::default()
    };
    let handle = db
        .builder()
        .queue(Queue::leased("q", 1, EachMessage(handler.clone())).batch_size(4))
        .start()
        .await
        .unwrap();
    enqueue_ten(&db, handle.outbox()).await;
    assert!(
        wait_until(PATIENCE, || handler.ok.len() == 10).await,
        "got {:?}",
        payloads(&handler.ok)
    );
    handle.stop().await;
    assert_eq!(payloads(&handler.ok), expected(&[]));
    assert_eq!(handler.tries.lock().unwrap()["m3"], 3);
    assert_eq!(
        handler.tries.lock().unwrap()["m4"],
        1,
        "a message after the retried one was handled early"
    );
    assert_eq!(db.count("dead_letter").await, 0);
}

/// A dependency outage longer than the retry policy's attempts never
/// dead-letters: `Unavailable` waits without using an attempt, order is kept,
/// and a `Retry` after the outage still has all its attempts.
pub async fn unavailable_dependency_never_dead_letters(db: TestDb) {
    let handler = Picky {
        unavailable: HashMap::from([("m3".to_string(), 30)]),
        retry: HashMap::from([("m5".to_string(), 2)]),
        ..Picky::default()
    };
    let retry =
        outbox_core::RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(10))
            .max_attempts(Some(3));
    let handle = db
        .builder()
        .queue(
            Queue::leased("q", 1, EachMessage(handler.clone()))
                .batch_size(4)
                .retry(retry),
        )
        .start()
        .await
        .unwrap();
    enqueue_ten(&db, handle.outbox()).await;
    // While the dependency is down, stats show the partition waiting on it,
    // with its error and no attempt used.
    assert!(
        wait_until(PATIENCE, || handler
            .tries
            .lock()
            .unwrap()
            .get("m3")
            .is_some_and(|n| *n >= 2))
        .await
    );
    let stats = handle.outbox().admin().stats().await.unwrap();
    let partition = stats.queue("q").unwrap().partition(0).unwrap().clone();
    assert!(partition.blocked_by_retry, "{partition:?}");
    assert_eq!(partition.attempts, 0);
    assert!(
        partition
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("broker down")),
        "{partition:?}"
    );
    assert!(
        wait_until(PATIENCE, || handler.ok.len() == 10).await,
        "got {:?}",
        payloads(&handler.ok)
    );
    handle.stop().await;
    assert_eq!(payloads(&handler.ok), expected(&[]));
    assert_eq!(handler.tries.lock().unwrap()["m3"], 31);
    assert_eq!(handler.tries.lock().unwrap()["m5"], 3);
    assert_eq!(
        handler.tries.lock().unwrap()["m4"],
        1,
        "a message after the unavailable one was handled early"
    );
    assert_eq!(db.count("dead_letter").await, 0);
}

/// A rejected message moves to the dead-letter table; the partition goes on.
/// A message that exhausts its retries is dead-lettered too.
pub async fn reject_dead_letters_and_partition_goes_on(db: TestDb) {
    let handler = Picky {
        reject: vec!["m4".to_string()],
        retry: HashMap::from([("m7".to_string(), u32::MAX)]),
        ..Picky::default()
    };
    let retry =
        outbox_core::RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(10))
            .max_attempts(Some(3));
    let handle = db
        .builder()
        .queue(Queue::leased("q", 1, EachMessage(handler.clone())).retry(retry))
        .start()
        .await
        .unwrap();
    enqueue_ten(&db, handle.outbox()).await;
    assert!(
        wait_until(PATIENCE, || handler.ok.len() == 8).await,
        "got {:?}",
        payloads(&handler.ok)
    );
    handle.stop().await;
    assert_eq!(payloads(&handler.ok), expected(&["m4", "m7"]));
    assert_eq!(
        handler.tries.lock().unwrap()["m7"],
        3,
        "retries not capped at max_attempts"
    );
    let dead = db
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM {} WHERE status = 'pending'",
            db.table("dead_letter")
        ))
        .await;
    assert_eq!(dead, 2);
    let seqs = db
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM {} WHERE seq IN (5, 8)",
            db.table("dead_letter")
        ))
        .await;
    assert_eq!(seqs, 2, "dead letters are m4 (seq 5) and m7 (seq 8)");
}

/// Panics first time on partition 0, hangs past the timeout first time on
/// partition 1; both count as retries and delivery goes on in order.
#[derive(Clone, Default)]
struct Unruly {
    ok: Recorder,
    calls: Arc<Mutex<HashMap<u32, u32>>>,
}

#[async_trait::async_trait]
impl LeasedHandler for Unruly {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(batch.partition).or_default();
            *n += 1;
            *n
        };
        if call == 1 && batch.partition == 0 {
            panic!("handler bug on partition 0");
        }
        if call == 1 && batch.partition == 1 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        self.ok.record(batch);
        BatchResult::success()
    }
}

/// A panicking or hanging handler is a retry, never a dead worker.
pub async fn panicking_and_hanging_handlers_count_as_retries(db: TestDb) {
    let handler = Unruly::default();
    let retry =
        outbox_core::RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(10));
    let handle = db
        .builder()
        .queue(
            Queue::leased("q", 2, handler.clone())
                .handler_timeout(Duration::from_millis(300))
                .lease(Duration::from_secs(5))
                .lease_headroom(Duration::from_secs(1))
                .retry(retry),
        )
        .start()
        .await
        .unwrap();
    let txn = db.db.begin().await.unwrap();
    let batch = (0..20).map(|i| {
        (
            PartitionKey::index(i % 2),
            Message::new("t", format!("m{i}").into_bytes()),
        )
    });
    handle
        .outbox()
        .enqueue_batch(&txn, "q", batch)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    handle.outbox().notify();
    assert!(
        wait_until(PATIENCE, || handler.ok.distinct() == 20).await,
        "delivered {}",
        handler.ok.distinct()
    );
    handle.stop().await;
    assert_eq!(handler.ok.order_violations(), 0);
    assert_eq!(handler.ok.len(), 20);
    let calls = handler.calls.lock().unwrap().clone();
    assert!(
        calls[&0] >= 2 && calls[&1] >= 2,
        "failures were not retried: {calls:?}"
    );
    assert_eq!(db.count("dead_letter").await, 0);
}
