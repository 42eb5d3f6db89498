//! Dead-letter administration: list, count, show, replay, resolve, reject,
//! discard and cleanup.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use outbox_core::sea_orm::{DatabaseConnection, TransactionTrait};
use outbox_core::{
    DeadLetterPage, DeadLetterScope, DeadLetterStatus, DeadLetters, Delivery, EachMessage,
    LeasedMessageHandler, Message, OutboxAdmin, OutboxError, Outcome, PartitionKey, Queue,
};

use super::eventually;
use crate::TestDb;

/// Rejects every message, with its payload in the reason.
#[derive(Clone, Default)]
struct RejectAll;

#[async_trait::async_trait]
impl LeasedMessageHandler for RejectAll {
    async fn handle(&self, message: &Delivery) -> Outcome {
        Outcome::reject(format!(
            "poison {}",
            String::from_utf8_lossy(&message.payload)
        ))
    }
}

/// The admin API on this test's tables, on `pool` (no started outbox).
pub(crate) fn admin_on(db: &TestDb, pool: DatabaseConnection) -> DeadLetters {
    OutboxAdmin::for_dialect(pool, db.dialect.clone(), &db.prefix)
        .expect("admin")
        .dead_letters()
}

pub(crate) fn admin(db: &TestDb) -> DeadLetters {
    admin_on(db, db.db.clone())
}

/// One message to dead-letter: queue, partition, payload type, payload.
pub(crate) type Poison = (&'static str, u32, &'static str, String);

/// Runs the messages through queues whose handler rejects everything and
/// waits until all are dead letters. Returns the message ids by payload.
pub(crate) async fn dead_letter_all(
    db: &TestDb,
    queues: &[(&'static str, u32)],
    messages: Vec<Poison>,
) -> HashMap<String, uuid::Uuid> {
    let mut builder = db.builder();
    for (name, partitions) in queues {
        builder = builder.queue(Queue::leased(*name, *partitions, EachMessage(RejectAll)));
    }
    let handle = builder.start().await.unwrap();
    let total = messages.len() as u64;
    let mut ids = HashMap::new();
    let txn = db.db.begin().await.unwrap();
    for (queue, partition, payload_type, payload) in messages {
        let message = Message::new(payload_type, payload.clone().into_bytes())
            .header("trace", format!("t-{payload}"));
        let id = handle
            .outbox()
            .enqueue(&txn, queue, PartitionKey::index(partition), message)
            .await
            .unwrap();
        ids.insert(payload, id);
    }
    txn.commit().await.unwrap();
    handle.outbox().notify();
    let admin = admin(db);
    eventually("every message dead-lettered", || async {
        admin.count(&DeadLetterScope::all()).await.unwrap() == total
    })
    .await;
    handle.stop().await;
    ids
}

pub(crate) fn poison(
    queue: &'static str,
    partition: u32,
    payload_type: &'static str,
    n: usize,
) -> Poison {
    (
        queue,
        partition,
        payload_type,
        format!("{queue}{partition}-{n}"),
    )
}

pub(crate) fn is_invalid_scope<T: std::fmt::Debug>(result: Result<T, OutboxError>) -> bool {
    matches!(result, Err(OutboxError::InvalidScope(_)))
}

/// Listing, counting and showing select exactly the scope; pages are
/// disjoint and cover everything; bad scopes are typed errors.
pub async fn dead_letters_are_listed_counted_and_shown_by_scope(db: TestDb) {
    let ids = dead_letter_all(
        &db,
        &[("a", 2), ("b", 1)],
        vec![
            poison("a", 0, "Created", 1),
            poison("a", 0, "Updated", 2),
            poison("a", 1, "Created", 3),
            poison("b", 0, "Created", 4),
            poison("b", 0, "Deleted", 5),
        ],
    )
    .await;
    let dl = admin(&db);
    let all = DeadLetterScope::all();
    let count = |scope: DeadLetterScope| {
        let dl = dl.clone();
        async move { dl.count(&scope).await.unwrap() }
    };
    assert_eq!(count(all.clone()).await, 5);
    assert_eq!(count(all.clone().queue("a")).await, 3);
    assert_eq!(count(all.clone().queue("a").partition(1)).await, 1);
    assert_eq!(count(all.clone().partition(0)).await, 4);
    assert_eq!(count(all.clone().payload_type("Created")).await, 3);
    assert_eq!(
        count(all.clone().queue("b").payload_type("Created")).await,
        1
    );
    assert_eq!(
        count(all.clone().status(DeadLetterStatus::Pending)).await,
        5
    );
    assert_eq!(
        count(all.clone().status(DeadLetterStatus::Resolved)).await,
        0
    );

    // Pages of two: disjoint, in id order, covering all five.
    let mut seen = Vec::new();
    let mut page = DeadLetterPage::new(2);
    let mut pages = 0;
    loop {
        let list = dl.list(&all, &page).await.unwrap();
        pages += 1;
        assert!(list.letters.len() <= 2);
        seen.extend(list.letters.iter().map(|l| l.id));
        match list.next_cursor {
            Some(cursor) => page = DeadLetterPage::new(2).cursor(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "not in id order: {seen:?}"
    );
    assert_eq!(count(all.clone().ids(seen[..2].iter().copied())).await, 2);

    // Time range: failed_after inclusive, failed_before exclusive.
    let letters = dl
        .list(&all, &DeadLetterPage::new(10))
        .await
        .unwrap()
        .letters;
    let first = letters.iter().map(|l| l.failed_at_ms).min().unwrap();
    let last = letters.iter().map(|l| l.failed_at_ms).max().unwrap();
    assert_eq!(count(all.clone().failed_after(last + 1)).await, 0);
    assert_eq!(count(all.clone().failed_before(first)).await, 0);
    assert_eq!(
        count(all.clone().failed_after(first).failed_before(last + 1)).await,
        5
    );

    // Show: payload, headers, error history (last error and attempts).
    let summary = letters
        .iter()
        .find(|l| l.message_id == ids["a0-1"])
        .expect("a0-1 listed");
    assert_eq!(
        (summary.queue.as_str(), summary.partition, summary.seq),
        ("a", 0, 1)
    );
    let letter = dl.get(summary.id).await.unwrap();
    assert_eq!(letter.payload, b"a0-1");
    assert_eq!(letter.payload_type, "Created");
    assert_eq!(
        letter.headers.get("trace").map(String::as_str),
        Some("t-a0-1")
    );
    assert_eq!(letter.status, DeadLetterStatus::Pending);
    assert_eq!(letter.attempts, 1);
    assert!(letter.last_error.contains("poison a0-1"), "{letter:?}");
    assert_eq!(letter.summary(), *summary);

    // Typed errors for what cannot work.
    let max_id = seen.iter().max().copied().unwrap();
    assert!(matches!(
        dl.get(max_id + 1000).await,
        Err(OutboxError::DeadLetterNotFound { id }) if id == max_id + 1000
    ));
    assert!(is_invalid_scope(
        dl.list(&all, &DeadLetterPage::new(0)).await
    ));
    assert!(is_invalid_scope(
        dl.count(&all.clone().failed_after(10).failed_before(5))
            .await
    ));
    assert!("bogus".parse::<DeadLetterStatus>().is_err());
}

/// Two replays at once claim disjoint letters; with a third call after
/// them, every letter is claimed exactly once. (The two alone need not take
/// all: `SKIP LOCKED` skips a row the other claim holds at that moment,
/// and InnoDB can hold one it does not return, which stays pending for
/// the next call.) Resolve and reject then move exactly those letters on.
pub async fn concurrent_replays_claim_disjoint_letters(db: TestDb) {
    let messages = (0..20).map(|i| poison("q", 0, "t", i)).collect();
    dead_letter_all(&db, &[("q", 1)], messages).await;
    let (one, two) = (
        admin_on(&db, db.another_pool().await),
        admin_on(&db, db.another_pool().await),
    );
    let all = DeadLetterScope::all();
    let claim = Duration::from_secs(600);
    let (a, b) = tokio::join!(one.replay(&all, 15, claim), two.replay(&all, 15, claim));
    let (mut a, b) = (a.unwrap(), b.unwrap());
    let b_ids: HashSet<i64> = b.iter().map(|l| l.id).collect();
    assert!(
        a.iter().all(|l| !b_ids.contains(&l.id)),
        "a letter was claimed twice"
    );
    let rest = one.replay(&all, 15, claim).await.unwrap();
    assert!(
        rest.len() <= 2,
        "the concurrent replays left {} letters",
        rest.len()
    );
    a.extend(rest);
    let a_ids: HashSet<i64> = a.iter().map(|l| l.id).collect();
    assert_eq!(a_ids.len(), a.len(), "a letter was claimed twice");
    assert!(a_ids.is_disjoint(&b_ids), "a letter was claimed twice");
    assert_eq!(a.len() + b.len(), 20, "claimed {} + {}", a.len(), b.len());
    assert!(
        a.iter()
            .chain(&b)
            .all(|l| l.status == DeadLetterStatus::Reprocessing
                && l.deadline_ms.is_some()
                && l.payload.starts_with(b"q0-"))
    );
    assert!(one.replay(&all, 15, claim).await.unwrap().is_empty());

    let dl = admin(&db);
    let status = |s| all.clone().status(s);
    assert_eq!(
        dl.count(&status(DeadLetterStatus::Pending)).await.unwrap(),
        0
    );
    assert_eq!(
        dl.count(&status(DeadLetterStatus::Reprocessing))
            .await
            .unwrap(),
        20
    );

    let a_ids: Vec<i64> = a_ids.into_iter().collect();
    let b_ids: Vec<i64> = b_ids.into_iter().collect();
    assert_eq!(dl.resolve(&a_ids).await.unwrap(), a_ids.len() as u64);
    assert_eq!(dl.resolve(&a_ids).await.unwrap(), 0, "resolved twice");
    assert_eq!(
        dl.reject(&b_ids, "still broken").await.unwrap(),
        b_ids.len() as u64
    );
    assert_eq!(
        dl.count(&status(DeadLetterStatus::Resolved)).await.unwrap(),
        a_ids.len() as u64
    );
    assert_eq!(
        dl.count(&status(DeadLetterStatus::Pending)).await.unwrap(),
        b_ids.len() as u64
    );
    if let Some(id) = b_ids.first() {
        let letter = dl.get(*id).await.unwrap();
        assert_eq!(letter.last_error, "still broken");
        assert_eq!(letter.attempts, 2);
        assert_eq!(letter.deadline_ms, None);
    }
    let resolved = dl.get(a_ids[0]).await.unwrap();
    assert!(resolved.completed_at_ms.is_some());

    assert!(is_invalid_scope(
        dl.replay(&status(DeadLetterStatus::Resolved), 10, claim)
            .await
    ));
    assert!(is_invalid_scope(dl.replay(&all, 0, claim).await));
    assert!(is_invalid_scope(dl.replay(&all, 10, Duration::ZERO).await));
}

/// A claim not resolved before its deadline counts as pending again and can
/// be claimed anew.
pub async fn expired_replay_claims_return_to_pending(db: TestDb) {
    let messages = (0..3).map(|i| poison("q", 0, "t", i)).collect();
    dead_letter_all(&db, &[("q", 1)], messages).await;
    let dl = admin(&db);
    let all = DeadLetterScope::all();
    let claimed = dl
        .replay(&all, 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(
        dl.replay(&all, 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "a live claim was taken again"
    );
    let pending = all.clone().status(DeadLetterStatus::Pending);
    eventually("claims expire", || async {
        dl.count(&pending).await.unwrap() == 3
    })
    .await;
    let listed = dl.list(&all, &DeadLetterPage::new(10)).await.unwrap();
    assert!(
        listed
            .letters
            .iter()
            .all(|l| l.status == DeadLetterStatus::Pending && l.deadline_ms.is_none())
    );
    let stats = OutboxAdmin::for_dialect(db.db.clone(), db.dialect.clone(), &db.prefix)
        .unwrap()
        .stats()
        .await
        .unwrap();
    let counts = stats.queue("q").unwrap().dead_letters;
    assert_eq!((counts.pending, counts.reprocessing), (3, 0));
    let again = dl.replay(&all, 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.len(), 3, "expired claims were not claimable");
}

/// Discard gives up on open letters of a scope; cleanup deletes finished
/// ones by age and leaves open ones.
pub async fn discard_and_cleanup_remove_letters_by_scope(db: TestDb) {
    let mut messages: Vec<Poison> = (0..4).map(|i| poison("a", 0, "t", i)).collect();
    messages.extend((0..2).map(|i| poison("b", 0, "t", i)));
    dead_letter_all(&db, &[("a", 1), ("b", 1)], messages).await;
    let dl = admin(&db);
    let all = DeadLetterScope::all();
    assert_eq!(dl.discard(&all.clone().queue("b")).await.unwrap(), 2);
    assert_eq!(dl.discard(&all.clone().queue("b")).await.unwrap(), 0);
    assert_eq!(
        dl.count(&all.clone().status(DeadLetterStatus::Discarded))
            .await
            .unwrap(),
        2
    );
    assert!(is_invalid_scope(
        dl.discard(&all.clone().status(DeadLetterStatus::Resolved))
            .await
    ));
    let a_ids: Vec<i64> = dl
        .list(&all.clone().queue("a"), &DeadLetterPage::new(10))
        .await
        .unwrap()
        .letters
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(dl.resolve(&a_ids[..1]).await.unwrap(), 1);
    assert_eq!(
        dl.cleanup(&all, Duration::from_secs(3600)).await.unwrap(),
        0,
        "cleanup deleted recent letters"
    );
    assert!(is_invalid_scope(
        dl.cleanup(
            &all.clone().status(DeadLetterStatus::Pending),
            Duration::ZERO
        )
        .await
    ));
    assert_eq!(dl.cleanup(&all, Duration::ZERO).await.unwrap(), 3);
    assert_eq!(
        dl.count(&all).await.unwrap(),
        3,
        "open letters were deleted"
    );
    assert_eq!(
        dl.count(&all.clone().status(DeadLetterStatus::Pending))
            .await
            .unwrap(),
        3
    );
    assert_eq!(dl.discard(&all.clone().id(a_ids[1])).await.unwrap(), 1);
    assert_eq!(dl.count(&all.clone().queue("a")).await.unwrap(), 3);
}
