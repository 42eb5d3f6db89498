//! What handlers implement and what they return.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{DatabaseTransaction, TransactionTrait};

pub use crate::message::{Batch, Delivery};

/// The result of handling one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Handled: the message is acknowledged.
    Success,
    /// Not handled now: the message stays at the head of its partition and is
    /// tried again after `after` (or the queue's backoff when `None`).
    Retry {
        /// Why, recorded as the partition's last error.
        reason: String,
        /// How long to wait before the next try; `None` uses the retry
        /// policy. Capped at 24 hours.
        after: Option<Duration>,
    },
    /// Never going to work: the message moves to the dead-letter table and the
    /// partition goes on.
    Reject {
        /// Why, recorded in the dead letter.
        reason: String,
    },
    /// Something the handler depends on is down (a broker, an HTTP service):
    /// the message stays at the head of its partition and is tried again after
    /// `after`, **without using up an attempt** of the retry policy, so an
    /// outage of any length never dead-letters a message. The partition waits
    /// meanwhile. Use [`Outcome::Retry`] for failures caused by the message
    /// itself, which should end in the dead-letter table.
    Unavailable {
        /// Why, recorded as the partition's last error.
        reason: String,
        /// How long to wait; `None` waits 1 s (with the policy's jitter).
        /// Capped at 24 hours. A handler that knows the outage (a relay
        /// counting failed connects) passes its own backoff.
        after: Option<Duration>,
    },
}

impl Outcome {
    /// A retry with the policy's backoff.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// A rejection.
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Reject {
            reason: reason.into(),
        }
    }

    /// A dependency is down: wait 1 s and try again, without using an attempt.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            after: None,
        }
    }

    /// Whether the message stays at the head of its partition (a
    /// [`Retry`](Outcome::Retry) or an [`Unavailable`](Outcome::Unavailable)):
    /// a per-message handler stops at such an outcome.
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry { .. } | Self::Unavailable { .. })
    }
}

/// The result of handling a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchResult {
    /// One outcome for the whole batch. In transactional mode a `Retry`,
    /// `Unavailable` or `Reject` rolls back everything the handler wrote for
    /// the batch.
    ///
    /// A `Retry` or `Reject` of a batch of several messages does not say
    /// which of them failed, so none is charged for it: the batch runs again
    /// at once in halves, then quarters, down to one message, and only a
    /// message that fails on its own uses up attempts of the retry policy or
    /// is dead-lettered, with its own reason. Its neighbours go through
    /// (handled again at most once per halving; in transactional mode their
    /// writes commit once). A handler that panics or
    /// exceeds its timeout counts as a batch-level `Retry`. `Unavailable` is
    /// nobody's fault: the batch waits, nothing is split or charged. A
    /// handler that knows which message failed says so with
    /// [`BatchResult::PerMessage`], which settles at once.
    All(Outcome),
    /// One outcome per message, in order. Messages up to the first `Retry` (or
    /// `Unavailable`) are settled (acknowledged or dead-lettered); the `Retry` one becomes the head
    /// of the partition; messages after it, and messages beyond the end of the
    /// vector, are delivered again later. In transactional mode the handler's
    /// writes are kept: a handler must not write for a message it retries
    /// (the per-message adapter [`EachMessage`] uses a savepoint per message).
    /// When the transaction cannot keep the writes (on PostgreSQL a failed
    /// statement aborts it), the messages before the first failure run again
    /// on their own and the failure is recorded with its own reason. An
    /// empty vector counts as a batch-level `Retry`.
    PerMessage(Vec<Outcome>),
}

impl BatchResult {
    /// Every message handled.
    pub fn success() -> Self {
        Self::All(Outcome::Success)
    }

    /// The batch failed: a batch of one message is tried again after the
    /// policy's backoff (and dead-lettered when its attempts run out); a
    /// larger batch runs again at once in smaller pieces to find the message
    /// that failed (see [`BatchResult::All`]).
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::All(Outcome::retry(reason))
    }

    /// The batch cannot be handled: a batch of one message is dead-lettered
    /// with `reason`; a larger batch runs again at once in smaller pieces,
    /// so that only the message that causes the rejection is dead-lettered
    /// (see [`BatchResult::All`]). To dead-letter several messages at once,
    /// reject each in [`BatchResult::PerMessage`].
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::All(Outcome::reject(reason))
    }

    /// A dependency is down: try the batch again in 1 s without using an
    /// attempt (see [`Outcome::Unavailable`]).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::All(Outcome::unavailable(reason))
    }
}

/// A handler for transactional mode: it runs inside the transaction that holds
/// the partition, and its writes commit together with the acknowledgement.
#[async_trait]
pub trait TransactionalHandler: Send + Sync + 'static {
    /// Handles a batch with the partition's transaction.
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult;
}

/// A handler for leased mode: it runs outside any transaction while this
/// instance holds the partition's lease. Delivery is at least once: use the
/// message id to deduplicate.
#[async_trait]
pub trait LeasedHandler: Send + Sync + 'static {
    /// Handles a batch.
    async fn handle(&self, batch: &Batch) -> BatchResult;
}

/// A transactional handler that takes one message at a time.
#[async_trait]
pub trait TransactionalMessageHandler: Send + Sync + 'static {
    /// Handles one message with the partition's transaction (a savepoint of it).
    async fn handle(&self, txn: &DatabaseTransaction, message: &Delivery) -> Outcome;
}

/// A leased handler that takes one message at a time.
#[async_trait]
pub trait LeasedMessageHandler: Send + Sync + 'static {
    /// Handles one message.
    async fn handle(&self, message: &Delivery) -> Outcome;
}

/// Adapts a per-message handler to a batch handler: messages are handled in
/// order, each (in transactional mode) in its own savepoint, so a retried or
/// rejected message's writes roll back while earlier messages' writes stay.
/// Handling stops at the first `Retry` or `Unavailable`.
#[derive(Debug, Clone)]
pub struct EachMessage<H>(pub H);

#[async_trait]
impl<H: LeasedMessageHandler> LeasedHandler for EachMessage<H> {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let mut outcomes = Vec::with_capacity(batch.messages.len());
        for message in &batch.messages {
            let outcome = self.0.handle(message).await;
            let stop = outcome.is_retry();
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        BatchResult::PerMessage(outcomes)
    }
}

#[async_trait]
impl<H: TransactionalMessageHandler> TransactionalHandler for EachMessage<H> {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        let mut outcomes = Vec::with_capacity(batch.messages.len());
        for message in &batch.messages {
            let savepoint = match txn.begin().await {
                Ok(savepoint) => savepoint,
                Err(err) => {
                    outcomes.push(Outcome::retry(format!("savepoint failed: {err}")));
                    break;
                }
            };
            let outcome = self.0.handle(&savepoint, message).await;
            let settled = match outcome {
                Outcome::Success => savepoint.commit().await,
                _ => savepoint.rollback().await,
            };
            let outcome = match settled {
                Ok(()) => outcome,
                Err(err) => Outcome::retry(format!("savepoint release failed: {err}")),
            };
            let stop = outcome.is_retry();
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        BatchResult::PerMessage(outcomes)
    }
}
