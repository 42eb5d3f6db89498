//! Dead letters and requeue results as JSON.

use outbox_core::{DeadLetterList, DeadLetterSummary, Requeued};
use serde::{Deserialize, Serialize};

/// One page of dead letters, without payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterListJson {
    /// The letters, in id order.
    pub letters: Vec<DeadLetterJson>,
    /// Pass it as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

/// One dead letter, without payload and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterJson {
    /// The dead letter's id (for requeue).
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its partition.
    pub partition: u32,
    /// The sequence number it had.
    pub seq: i64,
    /// The message id.
    pub message_id: String,
    /// The payload type.
    pub payload_type: String,
    /// `pending`, `reprocessing`, `resolved` or `discarded`.
    pub status: String,
    /// Delivery attempts.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
    /// When the message was enqueued (epoch ms).
    pub created_at_ms: i64,
    /// When it was dead-lettered (epoch ms).
    pub failed_at_ms: i64,
    /// When it was resolved or discarded (epoch ms).
    pub completed_at_ms: Option<i64>,
}

/// A dead letter put back into its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequeuedJson {
    /// The dead letter's id (now resolved).
    pub dead_letter_id: i64,
    /// The queue it went back to.
    pub queue: String,
    /// Its partition.
    pub partition: u32,
    /// The message id, kept.
    pub message_id: String,
}

impl From<&DeadLetterList> for DeadLetterListJson {
    fn from(list: &DeadLetterList) -> Self {
        Self {
            letters: list.letters.iter().map(DeadLetterJson::from).collect(),
            next_cursor: list.next_cursor,
        }
    }
}

impl From<&DeadLetterSummary> for DeadLetterJson {
    fn from(l: &DeadLetterSummary) -> Self {
        Self {
            id: l.id,
            queue: l.queue.clone(),
            partition: l.partition,
            seq: l.seq,
            message_id: l.message_id.to_string(),
            payload_type: l.payload_type.clone(),
            status: l.status.as_str().to_owned(),
            attempts: l.attempts,
            last_error: l.last_error.clone(),
            created_at_ms: l.created_at_ms,
            failed_at_ms: l.failed_at_ms,
            completed_at_ms: l.completed_at_ms,
        }
    }
}

impl From<&Requeued> for RequeuedJson {
    fn from(r: &Requeued) -> Self {
        Self {
            dead_letter_id: r.dead_letter_id,
            queue: r.queue.clone(),
            partition: r.partition,
            message_id: r.message_id.to_string(),
        }
    }
}
