//! The loop every relay runs over a batch: publish in order, stop at the
//! first failure.

use async_trait::async_trait;
use outbox_core::{Batch, BatchResult, Delivery, Outcome};
use tracing::Instrument;

use crate::backoff::FailureCounter;

/// Why one message could not be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The broker cannot be reached, or did not answer in time: wait and try
    /// again without using up an attempt.
    Unavailable(String),
    /// The broker refused this message (no route, no stream, a nack): try
    /// again later, counting an attempt.
    Retry(String),
    /// The message can never be published as it is (a header the broker
    /// cannot carry, a destination that is not a valid name).
    Reject(String),
}

/// A broker connection, as the loop sees it.
#[async_trait]
pub(crate) trait Sink: Send + Sync {
    /// What publishing one batch needs (a channel, say).
    type Session: Send + Sync;

    /// The sink's name, for traces (`"nats"`, `"rabbitmq"`).
    const NAME: &'static str;

    /// Gets ready to publish a batch, connecting if needed.
    async fn open(&self, batch: &Batch) -> Result<Self::Session, Failure>;

    /// Publishes one message and waits for the broker's acknowledgement.
    async fn publish(
        &self,
        session: &Self::Session,
        batch: &Batch,
        delivery: &Delivery,
    ) -> Result<(), Failure>;
}

/// Publishes `batch` through `sink` one message at a time, each acknowledged
/// by the broker before the next is sent, and returns one outcome per message
/// up to and including the first that must be tried again.
///
/// Messages are not pipelined on purpose: if message 2 of 3 failed after 3
/// had been accepted, the retry of 2 would land after 3 and the broker would
/// hold the partition out of order.
pub(crate) async fn relay_batch<S: Sink>(
    sink: &S,
    failures: &FailureCounter,
    batch: &Batch,
) -> BatchResult {
    let (first, last) = match (batch.messages.first(), batch.messages.last()) {
        (Some(first), Some(last)) => (first.seq, last.seq),
        _ => return BatchResult::PerMessage(Vec::new()),
    };
    let span = tracing::info_span!(
        "outbox.relay",
        sink = S::NAME,
        queue = %batch.queue,
        partition = batch.partition,
        seq = %format_args!("{first}..{last}"),
    );
    async move {
        let session = match sink.open(batch).await {
            Ok(session) => session,
            Err(failure) => return BatchResult::PerMessage(vec![outcome(failure, failures)]),
        };
        let mut outcomes = Vec::with_capacity(batch.messages.len());
        for delivery in &batch.messages {
            let span = tracing::debug_span!(
                "outbox.relay.message",
                message_id = %delivery.message_id,
                seq = delivery.seq,
            );
            let result = sink
                .publish(&session, batch, delivery)
                .instrument(span)
                .await;
            let outcome = match result {
                Ok(()) => {
                    failures.reset();
                    tracing::debug!(message_id = %delivery.message_id, seq = delivery.seq, "published");
                    Outcome::Success
                }
                Err(failure) => {
                    tracing::warn!(
                        message_id = %delivery.message_id,
                        seq = delivery.seq,
                        failure = ?failure,
                        "not published"
                    );
                    outcome(failure, failures)
                }
            };
            let stop = outcome.is_retry();
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        BatchResult::PerMessage(outcomes)
    }
    .instrument(span)
    .await
}

fn outcome(failure: Failure, failures: &FailureCounter) -> Outcome {
    match failure {
        Failure::Unavailable(reason) => Outcome::Unavailable {
            reason,
            after: Some(failures.failed()),
        },
        Failure::Retry(reason) => Outcome::retry(reason),
        Failure::Reject(reason) => Outcome::reject(reason),
    }
}
