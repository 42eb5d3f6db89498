//! Requeue: dead letters back into their live queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use outbox_core::sea_orm::ConnectionTrait;
use outbox_core::sea_orm::TransactionTrait;
use outbox_core::sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use outbox_core::{
    Batch, DeadLetterPage, DeadLetterScope, DeadLetterStatus, Delivery, EachMessage,
    LeasedMessageHandler, Message, OutboxError, Outcome, PartitionKey, Queue,
};

use super::dead_letter::{admin, admin_on, dead_letter_all, is_invalid_scope, poison};
use super::{PATIENCE, eventually};
use crate::{Recorder, TestDb, wait_until};

/// Rejects chosen payloads the first time it sees them; records the rest.
#[derive(Clone, Default)]
struct FirstTimePoison {
    ok: Recorder,
    headers: Arc<Mutex<HashMap<String, BTreeMap<String, String>>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    poison: Vec<String>,
}

#[async_trait::async_trait]
impl LeasedMessageHandler for FirstTimePoison {
    async fn handle(&self, message: &Delivery) -> Outcome {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        let first = self.seen.lock().unwrap().insert(payload.clone());
        if first && self.poison.contains(&payload) {
            return Outcome::reject("poison");
        }
        self.headers
            .lock()
            .unwrap()
            .insert(payload, message.headers.clone());
        self.ok.record(&Batch {
            queue: "q".into(),
            partition: 0,
            attempt: 0,
            messages: vec![message.clone()],
        });
        Outcome::Success
    }
}

async fn enqueue(db: &TestDb, handle: &outbox_core::OutboxHandle, range: std::ops::Range<u32>) {
    let txn = db.db.begin().await.unwrap();
    let batch = range.map(|i| {
        (
            PartitionKey::index(0),
            Message::new("t", format!("m{i}").into_bytes()).header("k", format!("v{i}")),
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

/// Writes the delivered message row of `message_id` at `seq` in `q`/0, as
/// one not yet vacuumed would be (with a payload of its own, so a requeue
/// that delivered this row rather than the letter would show).
async fn stale_message(db: &TestDb, message_id: uuid::Uuid, seq: i64) {
    let delete = Query::delete()
        .from_table(Alias::new(db.table("message")))
        .and_where(Expr::col("message_id").eq(message_id.as_bytes().to_vec()))
        .to_owned();
    db.db.execute(&delete).await.unwrap();
    let partition_id = db
        .scalar(&format!(
            "SELECT id AS n FROM {} WHERE queue_name = 'q' AND partition_no = 0",
            db.table("partition")
        ))
        .await;
    let insert = Query::insert()
        .into_table(Alias::new(db.table("message")))
        .columns([
            "partition_id",
            "seq",
            "message_id",
            "payload",
            "payload_type",
            "headers",
            "created_at",
        ])
        .values_panic([
            Expr::val(partition_id),
            Expr::val(seq),
            Expr::val(message_id.as_bytes().to_vec()),
            Expr::val(b"stale".to_vec()),
            Expr::val("stale"),
            Expr::val("{}"),
            Expr::val(0i64),
        ])
        .to_owned();
    db.db.execute(&insert).await.unwrap();
}

/// A requeued letter goes back into its partition as a new message (same
/// id and headers) and is delivered after the messages already there; the
/// original's row, not yet vacuumed, is replaced.
pub async fn requeued_letter_is_delivered_after_the_partitions_messages(db: TestDb) {
    let handler = FirstTimePoison {
        poison: vec!["m2".into()],
        ..FirstTimePoison::default()
    };
    let start = || {
        db.builder()
            .queue(Queue::leased("q", 1, EachMessage(handler.clone())))
            .start()
    };
    let handle = start().await.unwrap();
    enqueue(&db, &handle, 0..5).await;
    let dl = admin(&db);
    let all = DeadLetterScope::all();
    assert!(wait_until(PATIENCE, || handler.ok.len() == 4).await);
    eventually("m2 dead-lettered", || async {
        dl.count(&all).await.unwrap() == 1
    })
    .await;
    handle.stop().await;
    let letter = dl
        .list(&all, &DeadLetterPage::default())
        .await
        .unwrap()
        .letters
        .remove(0);
    assert_eq!(letter.seq, 3);

    // Three more messages wait in the partition; the original's row may linger.
    let producer = db.producer("q", 1).await;
    enqueue(&db, &producer, 5..8).await;
    producer.stop().await;
    stale_message(&db, letter.message_id, letter.seq).await;

    let requeued = dl.requeue(&all, 100).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].message_id, letter.message_id);
    assert_eq!(
        (requeued[0].queue.as_str(), requeued[0].partition),
        ("q", 0)
    );
    assert_eq!(
        dl.get(letter.id).await.unwrap().status,
        DeadLetterStatus::Resolved
    );
    assert!(dl.requeue(&all, 100).await.unwrap().is_empty());

    let handle = start().await.unwrap();
    assert!(
        wait_until(PATIENCE, || handler.ok.len() == 8).await,
        "delivered {:?}",
        handler.ok.all()
    );
    handle.stop().await;
    let got: Vec<(String, i64)> = handler
        .ok
        .all()
        .into_iter()
        .map(|r| (r.payload, r.seq))
        .collect();
    let want: Vec<(String, i64)> = [
        ("m0", 1),
        ("m1", 2),
        ("m3", 4),
        ("m4", 5),
        ("m5", 6),
        ("m6", 7),
        ("m7", 8),
        ("m2", 9),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_string(), s))
    .collect();
    assert_eq!(got, want);
    let m2 = handler
        .ok
        .all()
        .into_iter()
        .find(|r| r.payload == "m2")
        .unwrap();
    assert_eq!(
        m2.message_id, letter.message_id,
        "requeue changed the message id"
    );
    assert_eq!(
        handler.headers.lock().unwrap()["m2"]
            .get("k")
            .map(String::as_str),
        Some("v2")
    );
    assert_eq!(dl.count(&all).await.unwrap(), 1);
}

/// Inserts a pending dead letter directly (for states the pipeline does not make).
async fn raw_dead_letter(db: &TestDb, queue: &str, message_id: uuid::Uuid) {
    let insert = Query::insert()
        .into_table(Alias::new(db.table("dead_letter")))
        .columns([
            "queue_name",
            "partition_no",
            "seq",
            "message_id",
            "payload",
            "payload_type",
            "headers",
            "created_at",
            "failed_at",
            "attempts",
            "last_error",
            "status",
        ])
        .values_panic([
            Expr::val(queue),
            Expr::val(0i64),
            Expr::val(1i64),
            Expr::val(message_id.as_bytes().to_vec()),
            Expr::val(b"raw".to_vec()),
            Expr::val("t"),
            Expr::val("{}"),
            Expr::val(0i64),
            Expr::val(0i64),
            Expr::val(1i64),
            Expr::val("raw"),
            Expr::val("pending"),
        ])
        .to_owned();
    db.db.execute(&insert).await.unwrap();
}

/// Requeue refuses a letter whose partition has no row, and one whose
/// message id is still queued; either way nothing changes.
pub async fn requeue_refuses_missing_partitions_and_queued_duplicates(db: TestDb) {
    let dl = admin(&db);
    raw_dead_letter(&db, "ghost", uuid::Uuid::now_v7()).await;
    let ghost = DeadLetterScope::all().queue("ghost");
    assert!(matches!(
        dl.requeue(&ghost, 10).await,
        Err(OutboxError::PartitionRowMissing { ref queue, partition: 0 }) if queue == "ghost"
    ));
    assert_eq!(
        dl.count(&ghost.clone().status(DeadLetterStatus::Pending))
            .await
            .unwrap(),
        1
    );

    let producer = db.producer("q", 1).await;
    let txn = db.db.begin().await.unwrap();
    let queued = producer
        .outbox()
        .enqueue(
            &txn,
            "q",
            PartitionKey::index(0),
            Message::new("t", b"live".to_vec()),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    producer.stop().await;
    raw_dead_letter(&db, "q", queued).await;
    let q = DeadLetterScope::all().queue("q");
    assert!(matches!(
        dl.requeue(&q, 10).await,
        Err(OutboxError::MessageStillQueued { message_id }) if message_id == queued
    ));
    assert_eq!(
        dl.count(&q.clone().status(DeadLetterStatus::Pending))
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.unsequenced().await, 1);
    assert!(is_invalid_scope(
        dl.requeue(&q.clone().status(DeadLetterStatus::Discarded), 10)
            .await
    ));
}

/// Two requeues at once move each letter exactly once, and every requeued
/// message is delivered.
pub async fn concurrent_requeues_move_each_letter_once(db: TestDb) {
    let messages = (0..30)
        .map(|i| poison("q", (i % 3) as u32, "t", i))
        .collect();
    dead_letter_all(&db, &[("q", 3)], messages).await;
    let (one, two) = (
        admin_on(&db, db.another_pool().await),
        admin_on(&db, db.another_pool().await),
    );
    let all = DeadLetterScope::all();
    let (a, b) = tokio::join!(one.requeue(&all, 1000), two.requeue(&all, 1000));
    let (a, b) = (a.unwrap(), b.unwrap());
    let ids: HashSet<i64> = a.iter().chain(&b).map(|r| r.dead_letter_id).collect();
    assert_eq!(a.len() + b.len(), 30, "requeued {} + {}", a.len(), b.len());
    assert_eq!(ids.len(), 30, "a letter was requeued twice");
    assert_eq!(db.unsequenced().await, 30);
    let dl = admin(&db);
    assert_eq!(
        dl.count(&all.clone().status(DeadLetterStatus::Resolved))
            .await
            .unwrap(),
        30
    );

    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 3, rec.clone()))
        .start()
        .await
        .unwrap();
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 30).await,
        "delivered {}",
        rec.distinct()
    );
    handle.stop().await;
    // Each partition had seqs 1..=10 dead-lettered; the requeued ten follow.
    for partition in 0..3 {
        let mut seqs: Vec<i64> = rec
            .all()
            .into_iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.seq)
            .collect();
        seqs.dedup();
        assert_eq!(seqs, (11..=20).collect::<Vec<_>>(), "partition {partition}");
    }
}
