use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{Message, PartitionKey, Queue};

use crate::{Backend, Recorder, TestDb, wait_until};

async fn listeners(db: &TestDb) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN%{}wake%'",
        db.prefix
    ))
    .await
}

/// PostgreSQL: a commit in another instance wakes this one through
/// LISTEN/NOTIFY, long before its poll; after the listener connection is
/// killed it reconnects by itself and wakeups work again.
pub async fn notifications_wake_another_instance_without_polling(db: TestDb) {
    if db.backend != Backend::Postgres {
        eprintln!(
            "--- notifications_wake_another_instance_without_polling: skipped on {:?}, which has no LISTEN/NOTIFY (in-process wakeups and polling only)",
            db.backend
        );
        return;
    }
    let rec = Recorder::default();
    let pair = InstancePair::start(&db, &rec, true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listeners(&db).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no listener connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pair.produce("first").await;
    assert!(
        wait_until(Duration::from_secs(10), || rec.len() == 1).await,
        "no wakeup across instances"
    );

    // Kill the listener connection; the outbox must listen again by itself.
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%{}wake%'",
        db.prefix
    ))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if listeners(&db).await > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener did not reconnect"
        );
    }
    pair.produce("second").await;
    assert!(
        wait_until(Duration::from_secs(10), || rec.len() == 2).await,
        "no wakeup after the listener was killed"
    );
    pair.stop().await;
    let payloads: Vec<String> = rec.all().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, vec!["first".to_string(), "second".to_string()]);
}

/// A consumer with a poll interval of an hour and a producer-only instance
/// on another pool: only notifications (`listen`) or the sequencer's quick
/// polls can bring the producer's messages to the consumer in time.
struct InstancePair {
    consumer: outbox_core::OutboxHandle,
    producer: outbox_core::OutboxHandle,
    producer_pool: outbox_core::sea_orm::DatabaseConnection,
}

impl InstancePair {
    async fn start(db: &TestDb, rec: &Recorder, listen: bool) -> Self {
        let consumer = db
            .builder()
            .listen(listen)
            .poll_interval(Duration::from_secs(3600))
            .queue(Queue::leased("q", 2, rec.clone()))
            .start()
            .await
            .unwrap();
        let producer_pool = db.another_pool().await;
        let producer = db
            .builder_on(producer_pool.clone())
            .listen(listen)
            .run_workers(false)
            .queue(Queue::produce_only("q", 2))
            .start()
            .await
            .unwrap();
        Self {
            consumer,
            producer,
            producer_pool,
        }
    }

    /// Commits one message to partition 1 of `q` through `handle`'s outbox
    /// on `pool`.
    async fn commit(
        handle: &outbox_core::OutboxHandle,
        pool: &outbox_core::sea_orm::DatabaseConnection,
        payload: &str,
    ) {
        let txn = pool.begin().await.unwrap();
        handle
            .outbox()
            .enqueue(
                &txn,
                "q",
                PartitionKey::index(1),
                Message::new("t", payload.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }

    /// Commits one message from the producer instance.
    async fn produce(&self, payload: &str) {
        Self::commit(&self.producer, &self.producer_pool, payload).await;
    }

    async fn stop(self) {
        self.producer.stop().await;
        self.consumer.stop().await;
        self.producer_pool.close().await.ok();
    }
}

/// Without notifications (MySQL and SQLite, or `listen(false)`), a sequencer
/// that just moved messages polls again within milliseconds, at doubling
/// gaps: a commit in another instance right after is delivered long before
/// the poll interval (here an hour).
pub async fn quick_polls_after_activity_see_another_instances_commit(db: TestDb) {
    let rec = Recorder::default();
    let pair = InstancePair::start(&db, &rec, false).await;

    // The first message is the consumer's own: `notify` after its commit
    // wakes the sequencer in process, and the quick polls start after that
    // pass.
    InstancePair::commit(&pair.consumer, &db.db, "own").await;
    // Two wakeups, as when two producers commit at once: the second finds
    // the sequencer busy with its pass and is kept for its next wait, which
    // must not end the quick polls.
    pair.consumer.outbox().notify();
    pair.consumer.outbox().notify();
    assert!(
        wait_until(Duration::from_secs(10), || rec.len() == 1).await,
        "the consumer's own message did not arrive"
    );

    // The second comes from the other instance, which cannot wake the
    // consumer: only a poll finds it.
    pair.produce("other").await;
    // The poll interval is an hour: arriving within 20 s can only be a quick
    // poll, and a loaded machine (CI) may have let the gaps grow to seconds.
    let arrived = wait_until(Duration::from_secs(20), || rec.len() == 2).await;
    pair.stop().await;
    assert!(
        arrived,
        "another instance's commit waited for the poll interval: no quick poll after activity"
    );
    let payloads: Vec<String> = rec.all().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, vec!["own".to_string(), "other".to_string()]);
}

/// Without notifications, a start counts as activity: a commit in another
/// instance right after a consumer starts (as when a service and its
/// producers start together) is found by the quick polls, not at the poll
/// interval (here an hour).
pub async fn quick_polls_after_start_see_another_instances_commit(db: TestDb) {
    let rec = Recorder::default();
    let pair = InstancePair::start(&db, &rec, false).await;
    // Past the consumer's first pass (which would find an earlier commit by
    // itself): only a poll can find this one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pair.produce("first").await;
    // As in the case above: 20 s against an hour's poll interval.
    let arrived = wait_until(Duration::from_secs(20), || rec.len() == 1).await;
    pair.stop().await;
    assert!(
        arrived,
        "a commit right after the consumer started waited for the poll interval"
    );
}
