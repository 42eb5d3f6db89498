use std::time::Duration;

use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{EventFilter, EventKind, Message, PartitionKey, Queue};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Subscribers receive what matches their filter, after commit; a
/// subscriber that never reads is dropped without stalling delivery.
pub async fn event_subscribers_get_filtered_events_and_a_full_one_is_dropped(db: TestDb) {
    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await
        .unwrap();
    let mut everything = handle.subscribe(EventFilter::all().queue("q"), 10_000);
    let mut delivered_p1 = handle.subscribe(
        EventFilter::all()
            .partition(1)
            .kinds([EventKind::Delivered]),
        10_000,
    );
    let mut stalled = handle.subscribe(EventFilter::all(), 4);

    let txn = db.db.begin().await.unwrap();
    let batch = (0..100).map(|i| {
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
        wait_until(PATIENCE, || rec.distinct() == 100).await,
        "a full subscriber stalled delivery"
    );

    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while all.len() < 200 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), everything.recv()).await {
            Ok(Some(event)) => all.push(event),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let count = |kind| all.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count(EventKind::Sequenced), 100);
    assert_eq!(count(EventKind::Delivered), 100);

    // Each subscriber is sent its copy in turn, so partition 1's copies may
    // still be on their way when `everything` has all of its own: wait for
    // them, then make sure nothing else follows.
    let mut p1 = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while p1.len() < 50 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), delivered_p1.recv()).await {
            Ok(Some(event)) => p1.push(event),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    while let Some(event) = delivered_p1.try_recv() {
        p1.push(event);
    }
    assert!(
        p1.iter()
            .all(|e| e.partition == 1 && e.kind == EventKind::Delivered)
    );
    assert_eq!(
        p1.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );

    let mut buffered = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), stalled.recv()).await {
        buffered += 1;
    }
    assert_eq!(
        buffered, 4,
        "the stalled subscriber should keep only its buffer, then end"
    );
    handle.stop().await;
    assert!(
        everything.recv().await.is_none(),
        "streams end when the outbox stops"
    );
}
