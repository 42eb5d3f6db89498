//! A queue's partition rows: created at start ([`ensure_partitions`]), and
//! the check at start that a shrink of the partition count strands no
//! message, with a warning when a growth may reorder a key's messages.
//!
//! Partition rows are never deleted. A row at or above a queue's new count
//! is left inert: nothing enqueues to it or processes it any more, and a
//! start with the smaller count is refused while it still holds messages
//! ([`OutboxError::PartitionsNotDrained`]). Started again with the larger
//! count, the queue uses it as before.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::column::Column;
use crate::dialect::Dialect;
use crate::error::OutboxError;
use crate::queue::Queue;
use crate::statement_limits::ROWS_PER_STATEMENT;
use crate::table::Tables;

/// One existing partition row.
struct Row {
    id: i64,
    partition: u32,
    /// Sequenced, not yet processed.
    unprocessed: i64,
}

/// Refuses a queue whose partition count shrank while the partitions it
/// drops still hold messages; warns when a count grows while messages wait.
///
/// # Errors
/// [`OutboxError::PartitionsNotDrained`], or a database error.
pub(crate) async fn check(
    db: &DatabaseConnection,
    dialect: &dyn Dialect,
    tables: &Tables,
    queues: &[Queue],
) -> Result<(), OutboxError> {
    let err = |e| crate::error::classify::db_error(dialect, e);
    let select = Query::select()
        .columns([
            Column::Id,
            Column::QueueName,
            Column::PartitionNo,
            Column::ProcessedSeq,
        ])
        .expr_as(
            crate::next_seq::next_seq(tables, &tables.partition),
            Column::NextSeq,
        )
        .from(tables.partition.clone())
        .and_where(Expr::col(Column::QueueName).is_in(queues.iter().map(|q| q.name.clone())))
        .to_owned();
    let mut existing: HashMap<String, Vec<Row>> = HashMap::new();
    for row in db.query_all(&select).await.map_err(err)? {
        let queue: String = row.try_get("", Column::QueueName.name()).map_err(err)?;
        let partition: i32 = row.try_get("", Column::PartitionNo.name()).map_err(err)?;
        let next_seq: i64 = row.try_get("", Column::NextSeq.name()).map_err(err)?;
        let processed_seq: i64 = row.try_get("", Column::ProcessedSeq.name()).map_err(err)?;
        existing.entry(queue).or_default().push(Row {
            id: row.try_get("", Column::Id.name()).map_err(err)?,
            partition: u32::try_from(partition).unwrap_or(u32::MAX),
            unprocessed: Ord::max(next_seq - 1 - processed_seq, 0),
        });
    }
    for queue in queues {
        let Some(rows) = existing.get(&queue.name) else {
            continue;
        };
        let before = rows.iter().map(|r| r.partition + 1).max().unwrap_or(0);
        if before == queue.partitions {
            continue;
        }
        // Only a changed count pays for counting unsequenced messages.
        let waiting = waiting_per_partition(db, dialect, tables, rows).await?;
        if before > queue.partitions {
            let undrained: BTreeMap<u32, u64> = waiting
                .into_iter()
                .filter(|(partition, n)| *partition >= queue.partitions && *n > 0)
                .collect();
            if !undrained.is_empty() {
                return Err(OutboxError::PartitionsNotDrained {
                    queue: queue.name.clone(),
                    partitions: queue.partitions,
                    messages: undrained.values().sum(),
                    undrained: undrained.into_keys().collect(),
                });
            }
        } else {
            let messages: u64 = waiting.values().sum();
            if messages > 0 {
                tracing::warn!(
                    queue = %queue.name,
                    before,
                    partitions = queue.partitions,
                    messages,
                    "outbox queue grows while messages wait: a key's new messages may go to another partition than its waiting ones and be delivered first; drain the queue before growing it where that order matters"
                );
            }
        }
    }
    Ok(())
}

/// Messages waiting per partition number: sequenced and unprocessed, plus
/// unsequenced.
async fn waiting_per_partition(
    db: &DatabaseConnection,
    dialect: &dyn Dialect,
    tables: &Tables,
    rows: &[Row],
) -> Result<BTreeMap<u32, u64>, OutboxError> {
    let err = |e| crate::error::classify::db_error(dialect, e);
    let count = Query::select()
        .column(Column::PartitionId)
        .expr_as(Expr::col(Column::Id).count(), Alias::new("n"))
        .from(tables.message.clone())
        .and_where(Expr::col(Column::Seq).is_null())
        .and_where(Expr::col(Column::PartitionId).is_in(rows.iter().map(|r| r.id)))
        .group_by_col(Column::PartitionId)
        .to_owned();
    let mut incoming: HashMap<i64, i64> = HashMap::new();
    for row in db.query_all(&count).await.map_err(err)? {
        incoming.insert(
            row.try_get("", Column::PartitionId.name()).map_err(err)?,
            row.try_get("", "n").map_err(err)?,
        );
    }
    Ok(rows
        .iter()
        .map(|r| {
            let n = r.unprocessed + incoming.get(&r.id).copied().unwrap_or(0);
            (r.partition, u64::try_from(n).unwrap_or(0))
        })
        .collect())
}

/// Inserts the partition rows that do not exist yet and returns the ids of
/// all of them, keyed by (queue, partition number).
pub(crate) async fn ensure_partitions(
    db: &DatabaseConnection,
    dialect: &dyn Dialect,
    tables: &Tables,
    queues: &[Queue],
) -> Result<HashMap<(String, u32), i64>, OutboxError> {
    let err = |e| crate::error::classify::db_error(dialect, e);
    let pairs: Vec<(String, u32)> = queues
        .iter()
        .flat_map(|q| (0..q.partitions).map(move |n| (q.name.clone(), n)))
        .collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert
            .into_table(tables.partition.clone())
            .columns([Column::QueueName, Column::PartitionNo])
            .on_conflict(
                OnConflict::columns([Column::QueueName, Column::PartitionNo])
                    .do_nothing_on([Column::QueueName])
                    .to_owned(),
            );
        for (queue, n) in chunk {
            insert
                .values([Expr::val(queue.clone()), Expr::val(i64::from(*n))])
                .map_err(OutboxError::internal)?;
        }
        db.execute(&insert).await.map_err(err)?;
    }
    let select = Query::select()
        .columns([Column::Id, Column::QueueName, Column::PartitionNo])
        .from(tables.partition.clone())
        .and_where(Expr::col(Column::QueueName).is_in(queues.iter().map(|q| q.name.clone())))
        .to_owned();
    let mut ids = HashMap::new();
    for row in db.query_all(&select).await.map_err(err)? {
        let id: i64 = row.try_get("", Column::Id.name()).map_err(err)?;
        let queue: String = row.try_get("", Column::QueueName.name()).map_err(err)?;
        let n: i32 = row.try_get("", Column::PartitionNo.name()).map_err(err)?;
        ids.insert((queue, u32::try_from(n).unwrap_or(u32::MAX)), id);
    }
    Ok(ids)
}
