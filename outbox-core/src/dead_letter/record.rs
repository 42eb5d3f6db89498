//! A dead letter as the admin API returns it, and reading it from a row.

use std::collections::BTreeMap;

use sea_orm::{DbErr, QueryResult};
use serde::Serialize;
use uuid::Uuid;

use super::scope::DeadLetterStatus;
use crate::column::Column;
use crate::error::OutboxError;

/// Columns of a summary, in the order they are selected.
pub(crate) const SUMMARY_COLUMNS: [Column; 13] = [
    Column::Id,
    Column::QueueName,
    Column::PartitionNo,
    Column::Seq,
    Column::MessageId,
    Column::PayloadType,
    Column::CreatedAt,
    Column::FailedAt,
    Column::Attempts,
    Column::LastError,
    Column::Status,
    Column::Deadline,
    Column::CompletedAt,
];

/// Columns a full letter adds to a summary.
pub(crate) const BODY_COLUMNS: [Column; 2] = [Column::Payload, Column::Headers];

/// The alias of the database clock selected alongside the letters.
pub(crate) const NOW_COLUMN: &str = "now_ms";

/// One dead letter without its payload and headers, as listed.
///
/// The table keeps the last error and the number of attempts, not every
/// error: `last_error` and `attempts` are the letter's error history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetterSummary {
    /// The dead letter's id (also the listing cursor).
    pub id: i64,
    /// The queue the message was enqueued to.
    pub queue: String,
    /// Its partition number.
    pub partition: u32,
    /// The sequence number it had in its partition.
    pub seq: i64,
    /// The message id (kept by a requeue).
    pub message_id: Uuid,
    /// The payload type.
    pub payload_type: String,
    /// Where it is in its lifecycle; a claim past its deadline reads as pending.
    pub status: DeadLetterStatus,
    /// Delivery attempts: the handler's tries before it was dead-lettered,
    /// plus one for each rejected replay.
    pub attempts: u32,
    /// The last error: the handler's rejection or retry reason, or the
    /// reason given to the last [`DeadLetters::reject`](crate::DeadLetters::reject).
    pub last_error: String,
    /// When the message was enqueued (epoch ms, database clock).
    pub created_at_ms: i64,
    /// When it was dead-lettered (epoch ms).
    pub failed_at_ms: i64,
    /// While reprocessing: when the claim runs out (epoch ms).
    pub deadline_ms: Option<i64>,
    /// When it was resolved or discarded (epoch ms).
    pub completed_at_ms: Option<i64>,
}

/// One dead letter in full: a summary plus payload and headers. Serialized,
/// the payload is an array of bytes (decode it for display yourself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead letter's id.
    pub id: i64,
    /// The queue the message was enqueued to.
    pub queue: String,
    /// Its partition number.
    pub partition: u32,
    /// The sequence number it had in its partition.
    pub seq: i64,
    /// The message id.
    pub message_id: Uuid,
    /// The payload type.
    pub payload_type: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The message headers (trace context and user headers).
    pub headers: BTreeMap<String, String>,
    /// Where it is in its lifecycle; a claim past its deadline reads as pending.
    pub status: DeadLetterStatus,
    /// Delivery attempts (see [`DeadLetterSummary::attempts`]).
    pub attempts: u32,
    /// The last error (see [`DeadLetterSummary::last_error`]).
    pub last_error: String,
    /// When the message was enqueued (epoch ms, database clock).
    pub created_at_ms: i64,
    /// When it was dead-lettered (epoch ms).
    pub failed_at_ms: i64,
    /// While reprocessing: when the claim runs out (epoch ms).
    pub deadline_ms: Option<i64>,
    /// When it was resolved or discarded (epoch ms).
    pub completed_at_ms: Option<i64>,
}

impl DeadLetter {
    /// The letter without payload and headers.
    pub fn summary(&self) -> DeadLetterSummary {
        DeadLetterSummary {
            id: self.id,
            queue: self.queue.clone(),
            partition: self.partition,
            seq: self.seq,
            message_id: self.message_id,
            payload_type: self.payload_type.clone(),
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            created_at_ms: self.created_at_ms,
            failed_at_ms: self.failed_at_ms,
            deadline_ms: self.deadline_ms,
            completed_at_ms: self.completed_at_ms,
        }
    }
}

/// One page of dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetterList {
    /// The letters, in id order.
    pub letters: Vec<DeadLetterSummary>,
    /// The cursor for the next page, `None` when this page was the last.
    pub next_cursor: Option<i64>,
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T, DbErr> {
    row.try_get::<T>("", column)
}

/// An integer column that is `INT` on some backends and `BIGINT` on others.
fn get_int(row: &QueryResult, column: &str) -> Result<i64, DbErr> {
    match row.try_get::<i64>("", column) {
        Ok(value) => Ok(value),
        Err(_) => row.try_get::<i32>("", column).map(i64::from),
    }
}

pub(crate) fn message_id(bytes: &[u8]) -> Result<Uuid, DbErr> {
    Uuid::from_slice(bytes).map_err(|e| DbErr::Type(e.to_string()))
}

/// Reads a summary from a row holding [`SUMMARY_COLUMNS`] and [`NOW_COLUMN`].
pub(crate) fn parse_summary(row: &QueryResult) -> Result<DeadLetterSummary, OutboxError> {
    let raw = || -> Result<_, DbErr> {
        Ok((
            get::<i64>(row, Column::Id.name())?,
            get::<String>(row, Column::QueueName.name())?,
            get_int(row, Column::PartitionNo.name())?,
            get::<i64>(row, Column::Seq.name())?,
            message_id(&get::<Vec<u8>>(row, Column::MessageId.name())?)?,
            get::<String>(row, Column::PayloadType.name())?,
            get::<i64>(row, Column::CreatedAt.name())?,
            get::<i64>(row, Column::FailedAt.name())?,
            get_int(row, Column::Attempts.name())?,
            get::<String>(row, Column::LastError.name())?,
            get::<String>(row, Column::Status.name())?,
            get::<Option<i64>>(row, Column::Deadline.name())?,
            get::<Option<i64>>(row, Column::CompletedAt.name())?,
            get::<i64>(row, NOW_COLUMN)?,
        ))
    };
    let (
        id,
        queue,
        partition,
        seq,
        message_id,
        payload_type,
        created_at_ms,
        failed_at_ms,
        attempts,
        last_error,
        stored_status,
        deadline,
        completed_at_ms,
        now,
    ) = raw().map_err(|e| OutboxError::Database {
        kind: crate::DbErrorKind::Other,
        source: e,
    })?;
    let status = DeadLetterStatus::effective(&stored_status, deadline, now)?;
    Ok(DeadLetterSummary {
        id,
        queue,
        partition: u32::try_from(partition).unwrap_or(0),
        seq,
        message_id,
        payload_type,
        status,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error,
        created_at_ms,
        failed_at_ms,
        deadline_ms: deadline.filter(|_| status == DeadLetterStatus::Reprocessing),
        completed_at_ms,
    })
}

/// Reads a full letter from a row holding the summary and [`BODY_COLUMNS`].
pub(crate) fn parse_letter(row: &QueryResult) -> Result<DeadLetter, OutboxError> {
    let s = parse_summary(row)?;
    let as_db = |e: DbErr| OutboxError::Database {
        kind: crate::DbErrorKind::Other,
        source: e,
    };
    let payload: Vec<u8> = get(row, Column::Payload.name()).map_err(as_db)?;
    let headers: String = get(row, Column::Headers.name()).map_err(as_db)?;
    let headers = serde_json::from_str(&headers).map_err(OutboxError::Json)?;
    Ok(DeadLetter {
        id: s.id,
        queue: s.queue,
        partition: s.partition,
        seq: s.seq,
        message_id: s.message_id,
        payload_type: s.payload_type,
        payload,
        headers,
        status: s.status,
        attempts: s.attempts,
        last_error: s.last_error,
        created_at_ms: s.created_at_ms,
        failed_at_ms: s.failed_at_ms,
        deadline_ms: s.deadline_ms,
        completed_at_ms: s.completed_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_serializes_status_and_id_as_text() {
        let summary = DeadLetterSummary {
            id: 7,
            queue: "orders".into(),
            partition: 1,
            seq: 2,
            message_id: Uuid::from_u128(1),
            payload_type: "OrderPlaced".into(),
            status: DeadLetterStatus::Reprocessing,
            attempts: 3,
            last_error: "boom".into(),
            created_at_ms: 10,
            failed_at_ms: 20,
            deadline_ms: Some(30),
            completed_at_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            serde_json::json!({
                "id": 7,
                "queue": "orders",
                "partition": 1,
                "seq": 2,
                "message_id": "00000000-0000-0000-0000-000000000001",
                "payload_type": "OrderPlaced",
                "status": "reprocessing",
                "attempts": 3,
                "last_error": "boom",
                "created_at_ms": 10,
                "failed_at_ms": 20,
                "deadline_ms": 30,
                "completed_at_ms": null,
            })
        );
    }
}
