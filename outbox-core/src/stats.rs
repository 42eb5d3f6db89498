//! Stats per queue and partition: backlog, age, cursor, lease, retry state
//! and dead letters, read with a fixed number of grouped queries.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, CaseStatement, Expr, ExprTrait, Func, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use serde::Serialize;
use serde::ser::SerializeStruct;

use crate::column::Column;
use crate::dead_letter::scope::DeadLetterStatus;
use crate::error::OutboxError;
use crate::handle::OutboxHandle;
use crate::outbox_admin::OutboxAdmin;

/// Dead letters by status. A claim past its deadline counts as pending.
///
/// Serializes as `{"pending", "reprocessing", "resolved", "discarded",
/// "total"}`, `total` being [`DeadLetterCounts::total`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterCounts {
    /// Waiting for an operator or a replay.
    pub pending: u64,
    /// Claimed by a replay, deadline not yet passed.
    pub reprocessing: u64,
    /// Resolved or requeued.
    pub resolved: u64,
    /// Discarded.
    pub discarded: u64,
}

impl DeadLetterCounts {
    /// The count of one status.
    pub fn get(&self, status: DeadLetterStatus) -> u64 {
        match status {
            DeadLetterStatus::Pending => self.pending,
            DeadLetterStatus::Reprocessing => self.reprocessing,
            DeadLetterStatus::Resolved => self.resolved,
            DeadLetterStatus::Discarded => self.discarded,
        }
    }

    /// Letters still needing handling: pending plus reprocessing.
    pub fn open(&self) -> u64 {
        self.pending + self.reprocessing
    }

    /// Every letter.
    pub fn total(&self) -> u64 {
        self.open() + self.resolved + self.discarded
    }

    fn add(&mut self, other: &Self) {
        self.pending += other.pending;
        self.reprocessing += other.reprocessing;
        self.resolved += other.resolved;
        self.discarded += other.discarded;
    }
}

impl Serialize for DeadLetterCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut counts = serializer.serialize_struct("DeadLetterCounts", 5)?;
        counts.serialize_field("pending", &self.pending)?;
        counts.serialize_field("reprocessing", &self.reprocessing)?;
        counts.serialize_field("resolved", &self.resolved)?;
        counts.serialize_field("discarded", &self.discarded)?;
        counts.serialize_field("total", &self.total())?;
        counts.end()
    }
}

/// The state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The partition number.
    pub partition: u32,
    /// Messages committed but not yet sequenced (`seq` NULL).
    pub incoming: u64,
    /// Messages sequenced but not yet processed: `next_seq - 1 - processed_seq`.
    pub unprocessed: u64,
    /// Age of the oldest message not yet processed (the head of the
    /// partition, or the oldest unsequenced one), from its enqueue time on the
    /// database clock; `None` when there is none.
    pub oldest_unprocessed_age_ms: Option<u64>,
    /// The cursor: the last processed sequence number.
    pub processed_seq: i64,
    /// The sequence number the next sequenced message gets.
    pub next_seq: i64,
    /// The instance that holds or last held the lease (leased mode).
    pub lease_owner: Option<String>,
    /// When that lease runs or ran out (epoch ms).
    pub lease_until_ms: Option<i64>,
    /// Whether the lease is live now.
    pub lease_held: bool,
    /// Failed attempts of the head message so far (0 when it is not failing).
    pub attempts: u32,
    /// The head message's last error while it is failing.
    pub last_error: Option<String>,
    /// When the head message is tried next (epoch ms), while it is failing.
    pub retry_at_ms: Option<i64>,
    /// Whether the head message is failing (a retry, or a dependency
    /// reported unavailable), which holds back the whole partition until it
    /// succeeds, or, with a retry policy that has `max_attempts`, until it is
    /// dead-lettered. Also set while the outcome of a batch cannot be
    /// written (the database refuses the statement): `last_error` then says
    /// why, and the write is tried again with a growing backoff.
    pub blocked_by_retry: bool,
    /// This partition's dead letters by status.
    pub dead_letters: DeadLetterCounts,
}

/// The state of one queue: totals, and each partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue name.
    pub queue: String,
    /// Incoming messages over all partitions.
    pub incoming: u64,
    /// Sequenced, unprocessed messages over all partitions.
    pub unprocessed: u64,
    /// The oldest unprocessed age over all partitions.
    pub oldest_unprocessed_age_ms: Option<u64>,
    /// Partitions whose head message is failing.
    pub blocked_partitions: u32,
    /// Dead letters by status, over all partitions.
    pub dead_letters: DeadLetterCounts,
    /// Every partition with a row, in partition order.
    pub partitions: Vec<PartitionStats>,
}

/// Stats of every queue, read at one moment of the database clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutboxStats {
    /// The database clock when the stats were read (epoch ms).
    pub now_ms: i64,
    /// Every queue with partition rows or dead letters, by name.
    pub queues: Vec<QueueStats>,
}

impl OutboxStats {
    /// One queue's stats.
    pub fn queue(&self, name: &str) -> Option<&QueueStats> {
        self.queues.iter().find(|q| q.queue == name)
    }
}

impl QueueStats {
    /// One partition's stats.
    pub fn partition(&self, partition: u32) -> Option<&PartitionStats> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

fn int(row: &QueryResult, column: &str) -> Result<i64, DbErr> {
    row.try_get::<i64>("", column)
        .or_else(|_| row.try_get::<i32>("", column).map(i64::from))
}

fn count(row: &QueryResult, column: &str) -> Result<u64, DbErr> {
    int(row, column).map(|n| u64::try_from(n).unwrap_or(0))
}

fn age(now: i64, since: Option<i64>) -> Option<u64> {
    since.map(|t| u64::try_from(now - t).unwrap_or(0))
}

/// Reads the stats with two queries (three when there are no partition
/// rows): partition rows with their messages' counts and ages, and dead
/// letters grouped by queue, partition and status.
///
/// A partition's backlog (unsequenced, and sequenced beyond the cursor) is
/// read in the one statement that reads its cursor, so a sequencer pass
/// that commits meanwhile moves messages from one count to the other and
/// never out of both.
pub(crate) async fn collect(
    admin: &OutboxAdmin,
    queue: Option<&str>,
) -> Result<OutboxStats, OutboxError> {
    let err = |e| admin.error(e);
    let t = &admin.tables;
    let now_expr = admin.dialect.now_millis();

    // 1. Partition rows, their messages, and the clock.
    let part = &t.partition;
    let m = Alias::new("stats_m");
    let of_messages = |value: Expr, only: Expr| {
        Expr::SubQuery(
            None,
            Box::new(
                Query::select()
                    .expr(value)
                    .from_as(t.message.clone(), m.clone())
                    .and_where(
                        Expr::col((m.clone(), Column::PartitionId))
                            .equals((part.clone(), Column::Id)),
                    )
                    .and_where(only)
                    .to_owned()
                    .into(),
            ),
        )
    };
    let unsequenced = || Expr::col((m.clone(), Column::Seq)).is_null();
    let head =
        Expr::col((m.clone(), Column::Seq))
            .eq(Expr::col((part.clone(), Column::ProcessedSeq)).add(1));
    let mut select = Query::select();
    select
        .columns([
            Column::Id,
            Column::QueueName,
            Column::PartitionNo,
            Column::ProcessedSeq,
            Column::Attempts,
            Column::LastError,
            Column::RetryAt,
            Column::LeaseOwner,
            Column::LeaseUntil,
        ])
        .expr_as(crate::next_seq::next_seq(t, part), Column::NextSeq)
        .expr_as(
            of_messages(
                Func::count(Expr::col((m.clone(), Column::Id))).into(),
                unsequenced(),
            ),
            Alias::new("unsequenced"),
        )
        .expr_as(
            of_messages(
                Func::min(Expr::col((m.clone(), Column::CreatedAt))).into(),
                unsequenced(),
            ),
            Alias::new("oldest_unsequenced"),
        )
        .expr_as(
            of_messages(Expr::col((m.clone(), Column::CreatedAt)), head),
            Alias::new("head_created_at"),
        )
        .expr_as(now_expr.clone(), Alias::new("now_ms"))
        .from(part.clone())
        .order_by(Column::QueueName, Order::Asc)
        .order_by(Column::PartitionNo, Order::Asc);
    if let Some(queue) = queue {
        select.and_where(Expr::col(Column::QueueName).eq(queue));
    }
    let rows = admin.db.query_all(&select).await.map_err(err)?;
    let now = match rows.first() {
        Some(row) => int(row, "now_ms").map_err(err)?,
        None => {
            let clock = Query::select()
                .expr_as(now_expr.clone(), Alias::new("now_ms"))
                .to_owned();
            match admin.db.query_one(&clock).await.map_err(err)? {
                Some(row) => int(&row, "now_ms").map_err(err)?,
                None => 0,
            }
        }
    };
    let mut queues: BTreeMap<String, BTreeMap<u32, PartitionStats>> = BTreeMap::new();
    for row in &rows {
        let name: String = row.try_get("", Column::QueueName.name()).map_err(err)?;
        let partition =
            u32::try_from(int(row, Column::PartitionNo.name()).map_err(err)?).unwrap_or(0);
        let next_seq: i64 = row.try_get("", Column::NextSeq.name()).map_err(err)?;
        let processed_seq: i64 = row.try_get("", Column::ProcessedSeq.name()).map_err(err)?;
        let attempts = u32::try_from(int(row, Column::Attempts.name()).map_err(err)?).unwrap_or(0);
        let retry_at: i64 = row.try_get("", Column::RetryAt.name()).map_err(err)?;
        let lease_until: i64 = row.try_get("", Column::LeaseUntil.name()).map_err(err)?;
        let last_error: Option<String> = row.try_get("", Column::LastError.name()).map_err(err)?;
        let oldest_unsequenced: Option<i64> = row.try_get("", "oldest_unsequenced").map_err(err)?;
        let head_created_at: Option<i64> = row.try_get("", "head_created_at").map_err(err)?;
        // A head waiting after `Outcome::Unavailable` keeps its attempt count
        // (often 0) but has an error until it succeeds.
        let blocked = attempts > 0 || last_error.is_some();
        let stats = PartitionStats {
            partition,
            incoming: count(row, "unsequenced").map_err(err)?,
            unprocessed: u64::try_from(next_seq - 1 - processed_seq).unwrap_or(0),
            oldest_unprocessed_age_ms: Ord::max(
                age(now, oldest_unsequenced),
                age(now, head_created_at),
            ),
            processed_seq,
            next_seq,
            lease_owner: row.try_get("", Column::LeaseOwner.name()).map_err(err)?,
            lease_until_ms: (lease_until > 0).then_some(lease_until),
            lease_held: lease_until > now,
            attempts,
            last_error: if blocked { last_error } else { None },
            retry_at_ms: (blocked && retry_at > 0).then_some(retry_at),
            blocked_by_retry: blocked,
            dead_letters: DeadLetterCounts::default(),
        };
        queues.entry(name).or_default().insert(partition, stats);
    }

    // 2. Dead letters by queue, partition and status; expired claims apart.
    let expired = CaseStatement::new().case(
        Expr::col(Column::Deadline)
            .is_null()
            .or(Expr::col(Column::Deadline).lt(now_expr)),
        Expr::cust("1"),
    );
    let mut select = Query::select();
    select
        .columns([Column::QueueName, Column::PartitionNo, Column::Status])
        .expr_as(Func::count(Expr::col(Column::Id)), Alias::new("n"))
        .expr_as(
            Func::count(Into::<Expr>::into(expired)),
            Alias::new("expired"),
        )
        .from(t.dead_letter.clone())
        .group_by_columns([Column::QueueName, Column::PartitionNo, Column::Status]);
    if let Some(queue) = queue {
        select.and_where(Expr::col(Column::QueueName).eq(queue));
    }
    let mut dead: BTreeMap<String, DeadLetterCounts> = BTreeMap::new();
    for row in admin.db.query_all(&select).await.map_err(err)? {
        let name: String = row.try_get("", Column::QueueName.name()).map_err(err)?;
        let partition =
            u32::try_from(int(&row, Column::PartitionNo.name()).map_err(err)?).unwrap_or(0);
        let status: String = row.try_get("", Column::Status.name()).map_err(err)?;
        let n = count(&row, "n").map_err(err)?;
        let expired = count(&row, "expired").map_err(err)?;
        let mut counts = DeadLetterCounts::default();
        match status.parse::<DeadLetterStatus>()? {
            DeadLetterStatus::Pending => counts.pending = n,
            DeadLetterStatus::Reprocessing => {
                counts.pending = expired;
                counts.reprocessing = n.saturating_sub(expired);
            }
            DeadLetterStatus::Resolved => counts.resolved = n,
            DeadLetterStatus::Discarded => counts.discarded = n,
        }
        dead.entry(name.clone()).or_default().add(&counts);
        if let Some(p) = queues
            .get_mut(&name)
            .and_then(|parts| parts.get_mut(&partition))
        {
            p.dead_letters.add(&counts);
        }
    }

    let mut names: Vec<String> = queues.keys().cloned().collect();
    names.extend(dead.keys().filter(|n| !queues.contains_key(*n)).cloned());
    names.sort();
    let queues = names
        .into_iter()
        .map(|name| {
            let partitions: Vec<PartitionStats> = queues
                .get(&name)
                .map(|parts| parts.values().cloned().collect())
                .unwrap_or_default();
            QueueStats {
                incoming: partitions.iter().map(|p| p.incoming).sum(),
                unprocessed: partitions.iter().map(|p| p.unprocessed).sum(),
                oldest_unprocessed_age_ms: partitions
                    .iter()
                    .filter_map(|p| p.oldest_unprocessed_age_ms)
                    .max(),
                blocked_partitions: u32::try_from(
                    partitions.iter().filter(|p| p.blocked_by_retry).count(),
                )
                .unwrap_or(u32::MAX),
                dead_letters: dead.get(&name).copied().unwrap_or_default(),
                partitions,
                queue: name,
            }
        })
        .collect();
    Ok(OutboxStats {
        now_ms: now,
        queues,
    })
}

impl OutboxAdmin {
    /// Stats of every queue that has partition rows or dead letters: backlog,
    /// cursor, lease, retry state and dead letters by status, per partition.
    /// Runs two queries, however many partitions there are.
    ///
    /// # Errors
    /// [`OutboxError::SchemaMissing`] when the tables do not exist;
    /// [`OutboxError::Database`] otherwise.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        collect(self, None).await
    }

    /// [`OutboxAdmin::stats`] restricted to one queue: `queues` holds that
    /// queue alone.
    ///
    /// # Errors
    /// [`OutboxError::UnknownQueue`] when the tables hold neither a partition
    /// row nor a dead letter of `queue` (a typo, or a queue no instance has
    /// registered yet); otherwise as [`OutboxAdmin::stats`].
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn queue_stats(&self, queue: &str) -> Result<OutboxStats, OutboxError> {
        let stats = collect(self, Some(queue)).await?;
        if stats.queue(queue).is_none() {
            return Err(OutboxError::UnknownQueue {
                queue: queue.to_owned(),
            });
        }
        Ok(stats)
    }
}

impl OutboxHandle {
    /// Stats of every queue in this outbox's tables (see [`OutboxAdmin::stats`]).
    ///
    /// # Errors
    /// As [`OutboxAdmin::stats`].
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        self.outbox().admin().stats().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_counts_serialize_with_their_total() {
        let counts = DeadLetterCounts {
            pending: 1,
            reprocessing: 2,
            resolved: 3,
            discarded: 4,
        };
        assert_eq!(
            serde_json::to_value(counts).unwrap(),
            serde_json::json!({
                "pending": 1, "reprocessing": 2, "resolved": 3, "discarded": 4, "total": 10,
            })
        );
    }
}
