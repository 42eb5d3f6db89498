//! Requeue: dead letters back into their live queue, in one transaction with
//! marking them resolved.

use std::collections::{BTreeMap, HashSet};

use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, JoinType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, QueryResult, TransactionTrait};
use serde::Serialize;
use uuid::Uuid;

use super::record::message_id;
use super::scope::{DeadLetterScope, DeadLetterStatus, claimable, lock_candidates};
use crate::column::Column;
use crate::error::{DbErrorKind, OutboxError};
use crate::outbox_admin::OutboxAdmin;
use crate::statement_limits::{ROWS_PER_STATEMENT, statement_chunks};

/// A dead letter put back into its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Requeued {
    /// The dead letter's id (now resolved).
    pub dead_letter_id: i64,
    /// The queue it went back to.
    pub queue: String,
    /// Its partition number.
    pub partition: u32,
    /// The message id, unchanged.
    pub message_id: Uuid,
}

/// A letter chosen for requeueing.
struct Candidate {
    id: i64,
    queue: String,
    partition: u32,
    seq: i64,
    message_id: Uuid,
    payload: Vec<u8>,
    payload_type: String,
    /// The headers as stored: JSON text, copied as is.
    headers: String,
}

fn parse(row: &QueryResult) -> Result<Candidate, DbErr> {
    let int = |column: &str| -> Result<i64, DbErr> {
        row.try_get::<i64>("", column)
            .or_else(|_| row.try_get::<i32>("", column).map(i64::from))
    };
    Ok(Candidate {
        id: row.try_get("", Column::Id.name())?,
        queue: row.try_get("", Column::QueueName.name())?,
        partition: u32::try_from(int(Column::PartitionNo.name())?).unwrap_or(0),
        seq: row.try_get("", Column::Seq.name())?,
        message_id: message_id(&row.try_get::<Vec<u8>>("", Column::MessageId.name())?)?,
        payload: row.try_get("", Column::Payload.name())?,
        payload_type: row.try_get("", Column::PayloadType.name())?,
        headers: row.try_get("", Column::Headers.name())?,
    })
}

/// A partition row as requeue needs it.
struct PartitionRow {
    id: i64,
    processed_seq: i64,
}

/// One requeue transaction. `None` when a candidate was claimed by someone
/// else between reading and claiming (then nothing was written).
///
/// 1. Read the oldest claimable letters of the scope, locking them with
///    `SKIP LOCKED` where the backend has row locks.
/// 2. Mark them resolved with a conditional UPDATE; fewer rows than read
///    means another admin got one first: roll back, try again.
/// 3. Lock their partition rows (waiting: a transactional processor holds
///    its row only for one batch), so this does not interleave with the
///    workers of those partitions.
/// 4. Delete the original's message row at its old sequence number (at or
///    below the cursor, not yet vacuumed).
/// 5. Refuse an id that another message row still holds: waiting in any
///    queue (`MessageStillQueued`), or delivered and not yet vacuumed
///    (`MessageIdInUse`). The message id is unique, so a message enqueued
///    with one of the ids meanwhile makes step 6 fail the same way.
/// 6. Insert message rows with `seq` NULL: the sequencer gives them new
///    sequence numbers after everything already in the partition.
pub(super) async fn run(
    admin: &OutboxAdmin,
    scope: &DeadLetterScope,
    limit: u32,
) -> Result<Option<Vec<Requeued>>, OutboxError> {
    let err = |e| admin.error(e);
    let t = &admin.tables;
    let now = admin.dialect.now_millis();
    let txn = admin
        .db
        .begin_with_options(admin.dialect.worker_transaction())
        .await
        .map_err(err)?;

    // 1. Candidates.
    let mut select = Query::select();
    select
        .columns([
            Column::Id,
            Column::QueueName,
            Column::PartitionNo,
            Column::Seq,
            Column::MessageId,
            Column::Payload,
            Column::PayloadType,
            Column::Headers,
        ])
        .from(t.dead_letter.clone())
        .cond_where(Cond::all().add(scope.condition(&now)).add(claimable(&now)))
        .order_by(Column::Id, Order::Asc)
        .limit(u64::from(limit));
    lock_candidates(&mut select, admin.dialect.as_ref());
    let mut candidates = Vec::new();
    let mut seen = HashSet::new();
    for row in txn.query_all(&select).await.map_err(err)? {
        let candidate = parse(&row).map_err(err)?;
        // Two open letters of one message (rare): take the older now; the
        // next requeue finds the other still queued and says so.
        if seen.insert(candidate.message_id) {
            candidates.push(candidate);
        }
    }
    if candidates.is_empty() {
        txn.commit().await.map_err(err)?;
        return Ok(Some(Vec::new()));
    }

    // 2. Claim them: resolved, atomically with everything below.
    let update = Query::update()
        .table(t.dead_letter.clone())
        .value(Column::Status, DeadLetterStatus::Resolved.as_str())
        .value(Column::Deadline, Option::<i64>::None)
        .value(Column::CompletedAt, now.clone())
        .cond_where(
            Cond::all()
                .add(Expr::col(Column::Id).is_in(candidates.iter().map(|c| c.id)))
                .add(claimable(&now)),
        )
        .to_owned();
    let claimed = txn.execute(&update).await.map_err(err)?.rows_affected();
    if claimed != candidates.len() as u64 {
        txn.rollback().await.map_err(err)?;
        return Ok(None);
    }

    // 3. Their partition rows.
    let partitions = match lock_partitions(admin, &txn, &candidates).await {
        Ok(partitions) => partitions,
        Err(e) => {
            let _ = txn.rollback().await;
            return Err(e);
        }
    };

    // 4-6.
    if let Err(e) = move_back(admin, &txn, &candidates, &partitions).await {
        let _ = txn.rollback().await;
        return Err(e);
    }
    txn.commit().await.map_err(err)?;
    crate::metric::requeued_all(candidates.iter().map(|c| c.queue.as_str()));
    Ok(Some(
        candidates
            .into_iter()
            .map(|c| Requeued {
                dead_letter_id: c.id,
                queue: c.queue,
                partition: c.partition,
                message_id: c.message_id,
            })
            .collect(),
    ))
}

async fn lock_partitions(
    admin: &OutboxAdmin,
    txn: &DatabaseTransaction,
    candidates: &[Candidate],
) -> Result<BTreeMap<(String, u32), PartitionRow>, OutboxError> {
    let err = |e| admin.error(e);
    let wanted: HashSet<(String, u32)> = candidates
        .iter()
        .map(|c| (c.queue.clone(), c.partition))
        .collect();
    let mut any = Cond::any();
    for (queue, partition) in &wanted {
        any = any.add(
            Cond::all()
                .add(Expr::col(Column::QueueName).eq(queue.clone()))
                .add(Expr::col(Column::PartitionNo).eq(i64::from(*partition))),
        );
    }
    let mut select = Query::select();
    select
        .columns([
            Column::Id,
            Column::QueueName,
            Column::PartitionNo,
            Column::ProcessedSeq,
        ])
        .from(admin.tables.partition.clone())
        .cond_where(any)
        .order_by(Column::Id, Order::Asc);
    if let Some(lock) = admin.dialect.partition_lock() {
        select.lock(lock);
    }
    let mut found = BTreeMap::new();
    for row in txn.query_all(&select).await.map_err(err)? {
        let queue: String = row.try_get("", Column::QueueName.name()).map_err(err)?;
        let partition: i32 = row
            .try_get::<i32>("", Column::PartitionNo.name())
            .or_else(|_| {
                row.try_get::<i64>("", Column::PartitionNo.name())
                    .map(|n| i32::try_from(n).unwrap_or(-1))
            })
            .map_err(err)?;
        let key = (queue, u32::try_from(partition).unwrap_or(u32::MAX));
        found.insert(
            key,
            PartitionRow {
                id: row.try_get("", Column::Id.name()).map_err(err)?,
                processed_seq: row.try_get("", Column::ProcessedSeq.name()).map_err(err)?,
            },
        );
    }
    if let Some((queue, partition)) = wanted.into_iter().find(|key| !found.contains_key(key)) {
        return Err(OutboxError::PartitionRowMissing { queue, partition });
    }
    Ok(found)
}

async fn move_back(
    admin: &OutboxAdmin,
    txn: &DatabaseTransaction,
    candidates: &[Candidate],
    partitions: &BTreeMap<(String, u32), PartitionRow>,
) -> Result<(), OutboxError> {
    let err = |e| admin.error(e);
    let t = &admin.tables;
    let row_of = |c: &Candidate| {
        partitions
            .get(&(c.queue.clone(), c.partition))
            .ok_or_else(|| OutboxError::PartitionRowMissing {
                queue: c.queue.clone(),
                partition: c.partition,
            })
    };
    let ids = || candidates.iter().map(|c| c.message_id.as_bytes().to_vec());

    // 4. The original's own message row at its old sequence number (at or
    //    below the cursor, not yet vacuumed): its message id must be free
    //    for the new row.
    let mut old_rows = Cond::any();
    let mut any_old = false;
    for c in candidates {
        let row = row_of(c)?;
        if c.seq <= row.processed_seq {
            any_old = true;
            old_rows = old_rows.add(
                Cond::all()
                    .add(Expr::col(Column::PartitionId).eq(row.id))
                    .add(Expr::col(Column::Seq).eq(c.seq))
                    .add(Expr::col(Column::MessageId).eq(c.message_id.as_bytes().to_vec())),
            );
        }
    }
    if any_old {
        let delete = Query::delete()
            .from_table(t.message.clone())
            .cond_where(old_rows)
            .to_owned();
        txn.execute(&delete).await.map_err(err)?;
    }

    // 5. Any other message with one of these ids: still waiting (unsequenced,
    //    or above its partition's cursor) means the original is queued
    //    again; delivered means another message took the id.
    let (m, p) = (Alias::new("m"), Alias::new("p"));
    let users = Query::select()
        .column((m.clone(), Column::MessageId))
        .column((m.clone(), Column::Seq))
        .column((p.clone(), Column::ProcessedSeq))
        .from_as(t.message.clone(), m.clone())
        .join_as(
            JoinType::InnerJoin,
            t.partition.clone(),
            p.clone(),
            Expr::col((p.clone(), Column::Id)).equals((m.clone(), Column::PartitionId)),
        )
        .and_where(Expr::col((m.clone(), Column::MessageId)).is_in(ids()))
        .to_owned();
    let mut in_use = None;
    for row in txn.query_all(&users).await.map_err(err)? {
        let id = message_id(
            &row.try_get::<Vec<u8>>("", Column::MessageId.name())
                .map_err(err)?,
        )
        .map_err(err)?;
        let seq: Option<i64> = row.try_get("", Column::Seq.name()).map_err(err)?;
        let processed: i64 = row.try_get("", Column::ProcessedSeq.name()).map_err(err)?;
        if seq.is_none_or(|seq| seq > processed) {
            return Err(OutboxError::MessageStillQueued { message_id: id });
        }
        in_use.get_or_insert(id);
    }
    if let Some(id) = in_use {
        return Err(OutboxError::MessageIdInUse { message_id: id });
    }

    // 6. The new messages, unsequenced, in dead-letter id order, in
    //    statements within the backend's parameter and packet limits.
    let now = admin.dialect.now_millis();
    let chunks = statement_chunks(
        candidates,
        admin.dialect.statement_limits(),
        ROWS_PER_STATEMENT,
        6,
        |c| c.payload.len() + c.payload_type.len() + c.headers.len(),
    );
    for chunk in chunks {
        let mut insert = Query::insert();
        insert.into_table(t.message.clone()).columns([
            Column::PartitionId,
            Column::MessageId,
            Column::Payload,
            Column::PayloadType,
            Column::Headers,
            Column::CreatedAt,
        ]);
        for c in chunk {
            let row = row_of(c)?;
            insert
                .values([
                    Expr::val(row.id),
                    Expr::val(c.message_id.as_bytes().to_vec()),
                    Expr::val(c.payload.clone()),
                    Expr::val(c.payload_type.clone()),
                    Expr::val(c.headers.clone()),
                    now.clone(),
                ])
                .map_err(OutboxError::internal)?;
        }
        if let Err(e) = txn.execute(&insert).await {
            return Err(match admin.error(e) {
                // A message enqueued with one of the ids meanwhile: it keeps
                // the id.
                OutboxError::Database {
                    kind: DbErrorKind::UniqueViolation,
                    ..
                } => OutboxError::MessageIdInUse {
                    message_id: chunk.first().map(|c| c.message_id).unwrap_or_default(),
                },
                other => other,
            });
        }
    }
    Ok(())
}
