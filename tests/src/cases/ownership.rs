use std::collections::HashMap;
use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use outbox_core::{Message, Queue};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Lease owners of the partition rows (released rows have none).
async fn owners(db: &TestDb) -> HashMap<String, usize> {
    let sql = format!(
        "SELECT lease_owner FROM {} WHERE lease_owner IS NOT NULL",
        db.table("partition")
    );
    let rows = db
        .db
        .query_all_raw(Statement::from_string(db.db.get_database_backend(), sql))
        .await
        .unwrap();
    let mut owners = HashMap::new();
    for row in rows {
        *owners
            .entry(row.try_get::<String>("", "lease_owner").unwrap())
            .or_default() += 1;
    }
    owners
}

fn queue(rec: &Recorder) -> Queue {
    Queue::leased("q", 8, rec.clone())
        .lease(Duration::from_secs(4))
        .handler_timeout(Duration::from_secs(1))
        .lease_headroom(Duration::from_secs(1))
        .batch_size(5)
}

/// A second instance gets its share of the partitions while the first is
/// busy; when the first stops gracefully its partitions move to the second.
/// Nothing is lost and order holds through every handover.
pub async fn partitions_spread_over_instances_and_move_on_stop(db: TestDb) {
    let rec = Recorder::default();
    let a = db
        .builder()
        .instance_name("instance-a")
        .queue(queue(&rec))
        .start()
        .await
        .unwrap();
    let other_pool = db.another_pool().await;
    let producer = a.outbox().clone();
    let mut sent = 0usize;
    let send = |count: usize, from: usize| {
        let producer = producer.clone();
        let conn = db.db.clone();
        async move {
            let txn = conn.begin().await.unwrap();
            let batch = (from..from + count).map(|i| {
                (
                    format!("k{}", i % 64),
                    Message::new("t", i.to_string().into_bytes()),
                )
            });
            producer.enqueue_batch(&txn, "q", batch).await.unwrap();
            txn.commit().await.unwrap();
            producer.notify();
        }
    };
    send(200, sent).await;
    sent += 200;
    assert!(wait_until(PATIENCE, || rec.distinct() == sent).await);
    assert_eq!(
        owners(&db).await.get("instance-a"),
        Some(&8),
        "one instance should hold every partition"
    );

    let b = db
        .builder_on(other_pool.clone())
        .instance_name("instance-b")
        .queue(queue(&rec))
        .start()
        .await
        .unwrap();
    // Keep traffic flowing until both instances hold partitions.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        send(40, sent).await;
        sent += 40;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let owners = owners(&db).await;
        let (on_a, on_b) = (
            owners.get("instance-a").copied().unwrap_or(0),
            owners.get("instance-b").copied().unwrap_or(0),
        );
        if on_a >= 3 && on_b >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions did not spread: {owners:?}"
        );
    }
    assert!(
        wait_until(PATIENCE, || rec.distinct() == sent).await,
        "delivered {} of {sent}",
        rec.distinct()
    );

    // A graceful stop gives A's partitions back; B takes them all.
    a.stop().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        send(40, sent).await;
        sent += 40;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let owners = owners(&db).await;
        if owners.get("instance-b") == Some(&8) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions did not move to the survivor: {owners:?}"
        );
    }
    assert!(
        wait_until(PATIENCE, || rec.distinct() == sent).await,
        "delivered {} of {sent}",
        rec.distinct()
    );
    b.stop().await;
    other_pool.close().await.ok();
    assert_eq!(rec.order_violations(), 0);
}
