//! The closing check of every fault case: the ledger (`<prefix>sent`)
//! against the deliveries (`<prefix>side`) and the dead letters.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, Statement};

use crate::TestDb;
use crate::cases::process::side_rows;

/// What became of the messages of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Messages whose enqueuing transaction committed (ledger rows).
    pub(crate) sent: usize,
    /// Distinct messages the handler committed.
    pub(crate) delivered: usize,
    /// Messages in the dead-letter table.
    pub(crate) dead: usize,
    /// Handler commits beyond the first per message.
    pub(crate) duplicates: usize,
    /// Deliveries out of sequence order within their partition, dead
    /// letters being allowed gaps.
    pub(crate) order_violations: usize,
    /// Committed messages neither delivered nor dead-lettered.
    pub(crate) lost: usize,
    /// Delivered or dead-lettered messages no committed transaction sent.
    pub(crate) phantom: usize,
    /// Messages both delivered and dead-lettered.
    pub(crate) both: usize,
    /// Partitions whose sequence (deliveries and dead letters) is not
    /// 1..=n for its n committed messages.
    pub(crate) gapped_partitions: usize,
}

impl Counts {
    /// The closing line of a case.
    pub(crate) fn line(&self) -> String {
        format!(
            "sent {}, delivered {}, dead-lettered {}, duplicates {}, order violations {}",
            self.sent, self.delivered, self.dead, self.duplicates, self.order_violations
        )
    }
}

async fn rows(db: &TestDb, sql: String) -> Vec<outbox_core::sea_orm::QueryResult> {
    db.db
        .query_all_raw(Statement::from_string(
            db.db.get_database_backend(),
            sql.clone(),
        ))
        .await
        .expect(&sql)
}

/// Compares the ledger of `queue` with the side table (which only `queue`'s
/// handler writes) and the dead letters of `queue`.
pub(crate) async fn counts(db: &TestDb, queue: &str) -> Counts {
    let sent: HashMap<Vec<u8>, i64> = rows(
        db,
        format!(
            "SELECT message_id, partition_no FROM {} WHERE queue_name = '{queue}'",
            db.table("sent")
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r.try_get::<Vec<u8>>("", "message_id").unwrap(),
            r.try_get::<i64>("", "partition_no").unwrap(),
        )
    })
    .collect();
    let dead: Vec<(Vec<u8>, i64, i64)> = rows(
        db,
        format!(
            "SELECT message_id, partition_no, seq FROM {} WHERE queue_name = '{queue}'",
            db.table("dead_letter")
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r.try_get::<Vec<u8>>("", "message_id").unwrap(),
            i64::from(r.try_get::<i32>("", "partition_no").unwrap()),
            r.try_get::<i64>("", "seq").unwrap(),
        )
    })
    .collect();
    let side = side_rows(db).await;

    let delivered: HashSet<&Vec<u8>> = side.iter().map(|r| &r.4).collect();
    let dead_ids: HashSet<&Vec<u8>> = dead.iter().map(|d| &d.0).collect();
    let mut counts = Counts {
        sent: sent.len(),
        delivered: delivered.len(),
        dead: dead.len(),
        duplicates: side.len() - delivered.len(),
        ..Counts::default()
    };
    counts.lost = sent
        .keys()
        .filter(|id| !delivered.contains(id) && !dead_ids.contains(id))
        .count();
    counts.phantom = delivered
        .iter()
        .chain(dead_ids.iter())
        .filter(|id| !sent.contains_key(**id))
        .count();
    counts.both = delivered.intersection(&dead_ids).count();

    // Order: within a partition, deliveries in commit order (side row ids)
    // must follow the sequence, skipping only dead-lettered seqs.
    let mut dead_seqs: HashMap<i64, HashSet<i64>> = HashMap::new();
    for (_, partition, seq) in &dead {
        dead_seqs.entry(*partition).or_default().insert(*seq);
    }
    let mut next: HashMap<i64, i64> = HashMap::new();
    for (partition, seq, ..) in &side {
        let skip = dead_seqs.get(partition);
        let expected = next.entry(*partition).or_insert(1);
        while skip.is_some_and(|s| s.contains(expected)) {
            *expected += 1;
        }
        if *seq == *expected {
            *expected += 1;
        } else if *seq > *expected {
            counts.order_violations += 1;
            *expected = seq + 1;
        }
        // seq < expected: a second delivery, counted in `duplicates`.
    }
    let mut per_partition: HashMap<i64, i64> = HashMap::new();
    for partition in sent.values() {
        *per_partition.entry(*partition).or_default() += 1;
    }
    for (partition, n) in per_partition {
        let skip = dead_seqs.get(&partition);
        let mut expected = next.get(&partition).copied().unwrap_or(1);
        while skip.is_some_and(|s| s.contains(&expected)) {
            expected += 1;
        }
        if expected - 1 != n {
            counts.gapped_partitions += 1;
        }
    }
    counts
}

/// Waits until every committed message of `queue` was delivered or
/// dead-lettered, up to `patience`; returns the counts either way.
pub(crate) async fn drain(db: &TestDb, queue: &str, patience: Duration) -> Counts {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let sent = db
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM {} WHERE queue_name = '{queue}'",
                db.table("sent")
            ))
            .await;
        let delivered = db
            .scalar(&format!(
                "SELECT COUNT(DISTINCT message_id) AS n FROM {}",
                db.table("side")
            ))
            .await;
        let dead = db
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM {} WHERE queue_name = '{queue}'",
                db.table("dead_letter")
            ))
            .await;
        if delivered + dead >= sent || tokio::time::Instant::now() >= deadline {
            return counts(db, queue).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the closing line of `case` and fails on any loss, phantom,
/// duplicate (transactional mode) or reordering.
pub(crate) fn assert_clean(case: &str, db: &TestDb, counts: &Counts, extra: &str) {
    eprintln!("{case} on {:?}: {}{extra}", db.backend, counts.line());
    assert_eq!(
        counts.lost, 0,
        "{case}: committed messages lost: {counts:?}"
    );
    assert_eq!(
        counts.phantom, 0,
        "{case}: messages of rolled-back transactions came out: {counts:?}"
    );
    assert_eq!(
        counts.both, 0,
        "{case}: messages both delivered and dead-lettered: {counts:?}"
    );
    assert_eq!(
        counts.sent,
        counts.delivered + counts.dead,
        "{case}: sent != delivered + dead-lettered: {counts:?}"
    );
    assert_eq!(
        counts.duplicates, 0,
        "{case}: duplicate deliveries in transactional mode: {counts:?}"
    );
    assert_eq!(
        counts.order_violations, 0,
        "{case}: deliveries out of order: {counts:?}"
    );
    assert_eq!(
        counts.gapped_partitions, 0,
        "{case}: a partition's sequence has a gap: {counts:?}"
    );
}
