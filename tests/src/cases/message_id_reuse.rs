//! A message id used again after its first message was dead-lettered and
//! vacuumed: requeueing the dead letter must not take over, or let the
//! vacuum delete, the body of the other message with that id.

use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{
    DeadLetterScope, DeadLetterStatus, Delivery, EachMessage, LeasedMessageHandler, Message,
    OutboxError, OutboxHandle, Outcome, PartitionKey, Queue,
};
use uuid::Uuid;

use super::dead_letter::admin;
use super::{PATIENCE, eventually};
use crate::{Received, Recorder, TestDb, wait_until};

/// Rejects every message.
struct RejectAll;

#[async_trait::async_trait]
impl LeasedMessageHandler for RejectAll {
    async fn handle(&self, _: &Delivery) -> Outcome {
        Outcome::reject("rejected on purpose")
    }
}

/// Rows of `table` whose message id is `id`.
async fn rows_with_id(db: &TestDb, table: &str, id: Uuid) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) AS n FROM {} WHERE message_id = {}",
        db.table(table),
        id_literal(db, id)
    ))
    .await
}

/// `id` as a SQL literal of the message-id column's type.
fn id_literal(db: &TestDb, id: Uuid) -> String {
    let hex = id.simple().to_string();
    match db.backend {
        crate::Backend::Postgres => format!("'\\x{hex}'::bytea"),
        crate::Backend::MySql | crate::Backend::Sqlite => format!("X'{hex}'"),
    }
}

/// The payload of the message row with `id`, if there is one.
async fn body_payload(db: &TestDb, id: Uuid) -> Option<String> {
    use outbox_core::sea_orm::ConnectionTrait;
    let row = db
        .db
        .query_one_raw(outbox_core::sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            format!(
                "SELECT payload FROM {} WHERE message_id = {}",
                db.table("message"),
                id_literal(db, id)
            ),
        ))
        .await
        .unwrap()?;
    let payload: Vec<u8> = row.try_get("", "payload").unwrap();
    Some(String::from_utf8_lossy(&payload).into_owned())
}

async fn enqueue(handle: &OutboxHandle, db: &TestDb, queue: &str, message: Message) -> Uuid {
    let txn = db.db.begin().await.unwrap();
    let id = handle
        .outbox()
        .enqueue(&txn, queue, PartitionKey::index(0), message)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    handle.outbox().notify();
    id
}

/// Message `id` ("original", queue `q`) is rejected into a dead letter, and
/// the vacuum removes its rows, so the id is free again.
async fn dead_letter_and_vacuum(db: &TestDb, id: Uuid) {
    let handle = db
        .builder()
        .queue(Queue::leased("q", 1, EachMessage(RejectAll)))
        .start()
        .await
        .unwrap();
    enqueue(
        &handle,
        db,
        "q",
        Message::new("t", b"original".to_vec()).message_id(id),
    )
    .await;
    let dl = admin(db);
    eventually(
        "the original message is dead-lettered and vacuumed",
        || async {
            dl.count(&DeadLetterScope::all()).await.unwrap() == 1
                && rows_with_id(db, "message", id).await == 0
        },
    )
    .await;
    handle.stop().await;
}

/// Runs the vacuum over queue `r` (and only it) until its message rows are gone.
async fn vacuum_r(db: &TestDb) {
    let vacuum = db
        .builder()
        .queue(Queue::produce_only("r", 1))
        .start()
        .await
        .unwrap();
    eventually("queue r is vacuumed", || async {
        db.scalar(&format!(
            "SELECT COUNT(*) AS n FROM {} o JOIN {} p ON p.id = o.partition_id WHERE p.queue_name = 'r'",
            db.table("message"),
            db.table("partition")
        ))
        .await
            == 0
    })
    .await;
    vacuum.stop().await;
}

/// Delivers queue `q` and returns what arrived once `want` messages did, or
/// panics naming what is missing.
async fn deliver_q(db: &TestDb, want: &[&str], missing: &str) -> Vec<Received> {
    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 1, rec.clone()))
        .start()
        .await
        .unwrap();
    let arrived = wait_until(PATIENCE, || {
        let got: Vec<String> = rec.all().into_iter().map(|r| r.payload).collect();
        want.iter().all(|w| got.iter().any(|g| g == w))
    })
    .await;
    handle.stop().await;
    assert!(
        arrived,
        "{missing}: queue q delivered {:?} (message rows: {}, unsequenced: {})",
        rec.all()
            .iter()
            .map(|r| (r.seq, r.payload.as_str()))
            .collect::<Vec<_>>(),
        db.count("message").await,
        db.unsequenced().await,
    );
    rec.all()
}

/// Finding 3 of issue 14: message M (id X) is dead-lettered and vacuumed; a
/// new message M' reuses X and is delivered (its rows wait for the vacuum);
/// then M's dead letter is requeued. The requeue used to delete M''s body
/// and write M's under the same id, so the vacuum of M''s partition deleted
/// M's body: M never arrived and its partition stalled for good.
///
/// Now the requeue is refused with `MessageIdInUse` while another message's
/// rows still use the id, and succeeds once they are vacuumed; M is then
/// delivered with its own payload, and a message enqueued after it on the
/// same partition is delivered too.
pub async fn requeue_after_message_id_reuse_delivers_both_and_stalls_nothing(db: TestDb) {
    let x = Uuid::now_v7();
    dead_letter_and_vacuum(&db, x).await;

    // M' reuses the id on queue r, is sequenced, and is delivered by a
    // custom processor (lease and acknowledgement), so that no vacuum runs
    // on r before the requeue.
    let producer = db
        .builder()
        .queue(Queue::produce_only("q", 1))
        .queue(Queue::produce_only("r", 1))
        .run_workers(false)
        .start()
        .await
        .unwrap();
    enqueue(
        &producer,
        &db,
        "r",
        Message::new("t", b"reuse".to_vec()).message_id(x),
    )
    .await;
    db.sequence_all().await;
    let lease = producer
        .outbox()
        .take_lease("r", 0, "custom-processor", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("r/0 is free");
    assert!(producer.outbox().acknowledge(&lease, 1).await.unwrap());
    assert_eq!(rows_with_id(&db, "message", x).await, 1);

    let dl = admin(&db);
    let all = DeadLetterScope::all();
    match dl.requeue(&all, 10).await {
        Ok(requeued) => {
            // The old behaviour: go on, and show what the vacuum does.
            assert_eq!(requeued.len(), 1);
            vacuum_r(&db).await;
        }
        Err(OutboxError::MessageIdInUse { message_id }) => {
            assert_eq!(message_id, x);
            assert_eq!(
                dl.count(&all.clone().status(DeadLetterStatus::Pending))
                    .await
                    .unwrap(),
                1,
                "a refused requeue changed the letter"
            );
            assert_eq!(
                body_payload(&db, x).await.as_deref(),
                Some("reuse"),
                "a refused requeue touched the other message's body"
            );
            assert_eq!(db.unsequenced().await, 0);
            vacuum_r(&db).await;
            let requeued = dl.requeue(&all, 10).await.unwrap();
            assert_eq!(requeued.len(), 1, "requeue after the vacuum");
            assert_eq!(requeued[0].message_id, x);
        }
        Err(other) => panic!("requeue failed: {other:?}"),
    }
    producer.outbox().notify();
    enqueue(&producer, &db, "q", Message::new("t", b"after".to_vec())).await;
    producer.stop().await;

    let got = deliver_q(
        &db,
        &["original", "after"],
        &format!(
            "the requeued message {x} never arrived and its partition stalled (the vacuum of the message that reused its id deleted its body)"
        ),
    )
    .await;
    let original = got.iter().find(|r| r.payload == "original").unwrap();
    assert_eq!(original.message_id, x);
    let order: Vec<&str> = got.iter().map(|r| r.payload.as_str()).collect();
    assert_eq!(order, ["original", "after"]);
}

/// Finding 3, the same id waiting in another partition: M' reuses X on
/// queue r and is sequenced but not yet delivered when M's dead letter is
/// requeued. The requeue only looked for waiting copies in the letter's own
/// partition, so it replaced M''s body with M's: M' was delivered with M's
/// payload. Now it is refused with `MessageStillQueued`, and works once M'
/// is delivered and vacuumed.
pub async fn requeue_refuses_an_id_waiting_in_another_partition(db: TestDb) {
    let x = Uuid::now_v7();
    dead_letter_and_vacuum(&db, x).await;
    let producer = db
        .builder()
        .queue(Queue::produce_only("q", 1))
        .queue(Queue::produce_only("r", 1))
        .run_workers(false)
        .start()
        .await
        .unwrap();
    enqueue(
        &producer,
        &db,
        "r",
        Message::new("t", b"reuse".to_vec()).message_id(x),
    )
    .await;
    producer.stop().await;
    db.sequence_all().await;

    let dl = admin(&db);
    let all = DeadLetterScope::all();
    let first = dl.requeue(&all, 10).await;
    let refused =
        matches!(first, Err(OutboxError::MessageStillQueued { message_id }) if message_id == x);
    assert!(refused || first.is_ok(), "requeue failed: {first:?}");

    // Deliver r: M' must arrive with its own payload.
    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(Queue::leased("r", 1, rec.clone()))
        .start()
        .await
        .unwrap();
    assert!(
        wait_until(PATIENCE, || rec.len() == 1).await,
        "r delivered nothing"
    );
    let reuse = rec.all().remove(0);
    assert_eq!(reuse.message_id, x);
    assert_eq!(
        reuse.payload, "reuse",
        "the message that reused the id was delivered with the requeued message's payload (requeue replaced its body)"
    );
    assert!(refused, "requeue accepted an id still waiting in queue r");
    eventually("queue r is vacuumed", || async {
        rows_with_id(&db, "message", x).await == 0
    })
    .await;
    handle.stop().await;

    let requeued = dl.requeue(&all, 10).await.unwrap();
    assert_eq!(requeued.len(), 1, "requeue once the other copy is gone");
    let got = deliver_q(&db, &["original"], "the requeued message never arrived").await;
    assert_eq!(got[0].message_id, x);
}
