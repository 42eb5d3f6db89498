//! Reading and updating a partition row and its sequenced messages: the
//! statements both processing modes share.

use std::time::Duration;

use tokio::time::Instant;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, Order, Query};
use sea_orm::{ConnectionTrait, QueryResult};
use uuid::Uuid;

use crate::column::Column;
use crate::error::OutboxError;
use crate::message::{Batch, Delivery};
use crate::outbox::Shared;
use crate::reason::stored_reason;
use crate::statement_limits::ROWS_PER_STATEMENT;
use crate::statement_limits::statement_chunks;
use crate::worker::settlement::Settlement;

/// A partition row as a worker sees it, with the database clock.
#[derive(Debug, Clone)]
pub(crate) struct PartitionState {
    pub(crate) processed_seq: i64,
    pub(crate) next_seq: i64,
    pub(crate) attempts: u32,
    pub(crate) retry_at: i64,
    pub(crate) lease_token: i64,
    pub(crate) now: i64,
}

impl PartitionState {
    /// Whether sequenced messages wait beyond the cursor.
    pub(crate) fn has_work(&self) -> bool {
        self.next_seq - 1 > self.processed_seq
    }

    /// How long the partition must still wait for a retry, if at all.
    pub(crate) fn backoff(&self) -> Option<Duration> {
        (self.retry_at > self.now)
            .then(|| Duration::from_millis(u64::try_from(self.retry_at - self.now).unwrap_or(0)))
    }
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T, sea_orm::DbErr> {
    row.try_get::<T>("", column)
}

/// Reads the partition row; with `lock`, takes the dialect's row lock with
/// `SKIP LOCKED` and returns `None` when another worker holds it.
pub(crate) async fn state<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    partition_id: i64,
    lock: bool,
) -> Result<Option<PartitionState>, OutboxError> {
    let mut select = Query::select();
    select
        .columns([
            Column::ProcessedSeq,
            Column::Attempts,
            Column::RetryAt,
            Column::LeaseToken,
        ])
        .expr_as(
            crate::next_seq::next_seq(&shared.tables, &shared.tables.partition),
            Column::NextSeq,
        )
        .expr_as(shared.dialect.now_millis(), Alias::new("now_ms"))
        .from(shared.tables.partition.clone())
        .and_where(Expr::col(Column::Id).eq(partition_id));
    if lock && let Some(lock_type) = shared.dialect.partition_lock() {
        select.lock_with_behavior(lock_type, LockBehavior::SkipLocked);
    }
    let Some(row) = conn
        .query_one(&select)
        .await
        .map_err(|e| shared.db_error(e))?
    else {
        return Ok(None);
    };
    let parse = || -> Result<PartitionState, sea_orm::DbErr> {
        Ok(PartitionState {
            processed_seq: get(&row, Column::ProcessedSeq.name())?,
            next_seq: get(&row, Column::NextSeq.name())?,
            attempts: u32::try_from(get::<i32>(&row, Column::Attempts.name())?).unwrap_or(0),
            retry_at: get(&row, Column::RetryAt.name())?,
            lease_token: get(&row, Column::LeaseToken.name())?,
            now: get(&row, "now_ms")?,
        })
    };
    parse().map(Some).map_err(|e| shared.db_error(e))
}

/// Reads up to `limit` messages after `processed_seq`, stopping at a gap.
pub(crate) async fn read_batch<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    partition_id: i64,
    (queue, partition): (&str, u32),
    processed_seq: i64,
    limit: u32,
) -> Result<Vec<Delivery>, OutboxError> {
    let select = Query::select()
        .columns([
            Column::Seq,
            Column::MessageId,
            Column::Payload,
            Column::PayloadType,
            Column::Headers,
            Column::CreatedAt,
        ])
        .from(shared.tables.message.clone())
        .and_where(Expr::col(Column::PartitionId).eq(partition_id))
        .and_where(Expr::col(Column::Seq).gt(processed_seq))
        .order_by(Column::Seq, Order::Asc)
        .limit(u64::from(limit))
        .to_owned();
    let rows = conn
        .query_all(&select)
        .await
        .map_err(|e| shared.db_error(e))?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        let delivery = parse_delivery(&row, queue, partition).map_err(|e| shared.db_error(e))?;
        // Dense by construction; a gap would mean a deleted message, so stop there.
        if delivery.seq != processed_seq + 1 + deliveries.len() as i64 {
            tracing::error!(
                partition_id,
                seq = delivery.seq,
                "outbox found a gap in a partition; stopping the batch before it"
            );
            break;
        }
        deliveries.push(delivery);
    }
    Ok(deliveries)
}

fn parse_delivery(
    row: &QueryResult,
    queue: &str,
    partition: u32,
) -> Result<Delivery, sea_orm::DbErr> {
    let id: Vec<u8> = get(row, Column::MessageId.name())?;
    let headers: String = get(row, Column::Headers.name())?;
    Ok(Delivery {
        queue: queue.to_owned(),
        partition,
        seq: get(row, Column::Seq.name())?,
        message_id: Uuid::from_slice(&id).map_err(|e| sea_orm::DbErr::Type(e.to_string()))?,
        payload: get(row, Column::Payload.name())?,
        payload_type: get(row, Column::PayloadType.name())?,
        headers: serde_json::from_str(&headers).map_err(|e| sea_orm::DbErr::Json(e.to_string()))?,
        enqueued_at_ms: get(row, Column::CreatedAt.name())?,
    })
}

/// Where a settlement is written: the partition row, guarded by the fencing
/// token (which the write also extends) and by the cursor the batch was read
/// after. A holder whose picture of the row is stale (its lease was taken
/// over, or a write it remembers was lost) is refused and reads the row
/// again, so the cursor only ever moves forward from what was read.
pub(crate) struct Fence {
    pub(crate) token: i64,
    pub(crate) processed_seq: i64,
    pub(crate) lease: Duration,
}

/// Writes a settlement: cursor, attempts and retry time on the partition row,
/// and the dead letters. Returns `false` (and writes nothing) when the fence
/// no longer matches: the lease was lost and the acknowledgement is refused.
pub(crate) async fn persist<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    partition_id: i64,
    batch: &Batch,
    settlement: &Settlement,
    fence: Option<&Fence>,
) -> Result<bool, OutboxError> {
    let now = shared.dialect.now_millis();
    let mut update = Query::update();
    update
        .table(shared.tables.partition.clone())
        .value(Column::ProcessedSeq, settlement.processed_seq)
        .and_where(Expr::col(Column::Id).eq(partition_id));
    match &settlement.retry {
        Some(retry) => {
            let delay = i64::try_from(retry.delay.as_millis()).unwrap_or(i64::MAX / 2);
            update
                .value(
                    Column::Attempts,
                    i32::try_from(retry.attempts).unwrap_or(i32::MAX),
                )
                .value(Column::LastError, stored_reason(&retry.error))
                .value(Column::RetryAt, now.clone().add(delay));
        }
        None => {
            update
                .value(Column::Attempts, 0)
                .value(Column::LastError, Option::<String>::None)
                .value(Column::RetryAt, 0);
        }
    }
    if let Some(fence) = fence {
        let lease_ms = i64::try_from(fence.lease.as_millis()).unwrap_or(i64::MAX / 2);
        update
            .value(Column::LeaseUntil, now.clone().add(lease_ms))
            .and_where(Expr::col(Column::LeaseToken).eq(fence.token))
            .and_where(Expr::col(Column::ProcessedSeq).eq(fence.processed_seq));
    }
    let result = conn
        .execute(&update)
        .await
        .map_err(|e| shared.db_error(e))?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    insert_dead_letters(shared, conn, batch, settlement).await?;
    Ok(true)
}

async fn insert_dead_letters<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    batch: &Batch,
    settlement: &Settlement,
) -> Result<(), OutboxError> {
    const COLUMNS: [Column; 12] = [
        Column::QueueName,
        Column::PartitionNo,
        Column::Seq,
        Column::MessageId,
        Column::Payload,
        Column::PayloadType,
        Column::Headers,
        Column::CreatedAt,
        Column::FailedAt,
        Column::Attempts,
        Column::LastError,
        Column::Status,
    ];
    let mut rows = Vec::with_capacity(settlement.dead_letters.len());
    for dead in &settlement.dead_letters {
        let Some(message) = batch.messages.get(dead.index) else {
            continue;
        };
        let headers = serde_json::to_string(&message.headers).map_err(OutboxError::Json)?;
        rows.push((message, headers, stored_reason(&dead.reason), dead.attempts));
    }
    let now = shared.dialect.now_millis();
    // One statement per run of rows within the backend's parameter and
    // packet limits: a batch may dead-letter thousands of messages.
    let chunks = statement_chunks(
        &rows,
        shared.dialect.statement_limits(),
        ROWS_PER_STATEMENT,
        COLUMNS.len(),
        |(message, headers, reason, _)| {
            message.payload.len() + message.payload_type.len() + headers.len() + reason.len()
        },
    );
    for chunk in chunks {
        let mut insert = Query::insert();
        insert
            .into_table(shared.tables.dead_letter.clone())
            .columns(COLUMNS);
        for (message, headers, reason, attempts) in chunk {
            tracing::warn!(queue = %batch.queue, partition = batch.partition, seq = message.seq, message_id = %message.message_id, reason = %reason, "outbox dead-lettered a message");
            insert
                .values([
                    Expr::val(batch.queue.clone()),
                    Expr::val(i64::from(batch.partition)),
                    Expr::val(message.seq),
                    Expr::val(message.message_id.as_bytes().to_vec()),
                    Expr::val(message.payload.clone()),
                    Expr::val(message.payload_type.clone()),
                    Expr::val(headers.clone()),
                    Expr::val(message.enqueued_at_ms),
                    now.clone(),
                    Expr::val(i64::from(*attempts)),
                    Expr::val(reason.clone()),
                    Expr::val("pending"),
                ])
                .map_err(OutboxError::internal)?;
        }
        conn.execute(&insert)
            .await
            .map_err(|e| shared.db_error(e))?;
    }
    Ok(())
}

/// A lease this instance holds on a partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldLease {
    pub(crate) token: i64,
    /// When the lease runs out, on this process's clock (measured from just
    /// before the statement that took or extended it, so never late).
    pub(crate) expires: Instant,
    /// The partition row as this holder last wrote it: while the lease is
    /// held nobody else writes the cursor, attempts or retry time, so the
    /// next batch is read without reading the row first.
    pub(crate) processed_seq: i64,
    pub(crate) attempts: u32,
    pub(crate) retry_until: Option<Instant>,
}

impl HeldLease {
    pub(crate) fn from_state(state: &PartitionState, taken_at: Instant, lease: Duration) -> Self {
        Self {
            token: state.lease_token,
            expires: taken_at + lease,
            processed_seq: state.processed_seq,
            attempts: state.attempts,
            retry_until: state.backoff().map(|delay| taken_at + delay),
        }
    }
}
