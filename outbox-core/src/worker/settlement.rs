//! What a handler's result does to a partition: the pure decision, before any SQL.

use std::time::Duration;

use crate::event::{Event, EventKind};
use crate::handler::{BatchResult, Outcome};
use crate::message::Batch;
use crate::retry::RetryPolicy;

/// Longest a partition waits for a retry, whatever the handler or the
/// policy asked for: the workers add the delay to clock instants, which an
/// absurd one (`Duration::MAX`) would overflow.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

/// How long a partition waits after [`Outcome::Unavailable`] without a delay.
const UNAVAILABLE_DELAY: Duration = Duration::from_secs(1);

/// A message moving to the dead-letter table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeadLetter {
    /// Index into the batch.
    pub(crate) index: usize,
    pub(crate) reason: String,
    pub(crate) attempts: u32,
}

/// The head message failing again and waiting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingRetry {
    pub(crate) attempts: u32,
    pub(crate) delay: Duration,
    pub(crate) error: String,
}

/// How a batch settles: the new cursor, dead letters, and a retry if the
/// partition must wait.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settlement {
    pub(crate) processed_seq: i64,
    pub(crate) dead_letters: Vec<DeadLetter>,
    pub(crate) retry: Option<PendingRetry>,
    /// Transactional mode: roll back the handler's writes for the batch.
    pub(crate) rollback_writes: bool,
}

impl Settlement {
    /// Whether the cursor moved or anything was dead-lettered.
    pub(crate) fn progressed(&self, processed_before: i64) -> bool {
        self.processed_seq > processed_before
    }
}

impl Settlement {
    /// The events this settlement stands for, once written.
    pub(crate) fn events(&self, batch: &Batch) -> Vec<Event> {
        let event = |kind, message: &crate::Delivery| Event {
            kind,
            queue: batch.queue.clone(),
            partition: batch.partition,
            seq: message.seq,
            message_id: message.message_id,
        };
        let mut events = Vec::new();
        for (index, message) in batch.messages.iter().enumerate() {
            if message.seq <= self.processed_seq {
                let dead = self.dead_letters.iter().any(|d| d.index == index);
                events.push(event(
                    if dead {
                        EventKind::DeadLettered
                    } else {
                        EventKind::Delivered
                    },
                    message,
                ));
            } else {
                if self.retry.is_some() {
                    events.push(event(EventKind::Retried, message));
                }
                break;
            }
        }
        events
    }
}

/// Decides how `result` settles `batch`, whose cursor was `processed_seq`.
pub(crate) fn settle(
    batch: &Batch,
    processed_seq: i64,
    result: BatchResult,
    policy: &RetryPolicy,
) -> Settlement {
    let (outcomes, rollback_writes) = match result {
        BatchResult::All(Outcome::Success) => (vec![Outcome::Success; batch.messages.len()], false),
        BatchResult::All(Outcome::Reject { reason }) => {
            (vec![Outcome::Reject { reason }; batch.messages.len()], true)
        }
        BatchResult::All(retry @ (Outcome::Retry { .. } | Outcome::Unavailable { .. })) => {
            (vec![retry], true)
        }
        BatchResult::PerMessage(outcomes) if outcomes.is_empty() => (
            vec![Outcome::retry(
                "the handler returned no outcome for the batch",
            )],
            false,
        ),
        BatchResult::PerMessage(outcomes) => (outcomes, false),
    };

    let mut settlement = Settlement {
        processed_seq,
        dead_letters: Vec::new(),
        retry: None,
        rollback_writes,
    };
    for (index, (outcome, message)) in outcomes.into_iter().zip(&batch.messages).enumerate() {
        // Attempts count for the head message only: later ones start afresh.
        let attempts = if index == 0 { batch.attempt } else { 0 } + 1;
        match outcome {
            Outcome::Success => settlement.processed_seq = message.seq,
            Outcome::Reject { reason } => {
                settlement.dead_letters.push(DeadLetter {
                    index,
                    reason,
                    attempts,
                });
                settlement.processed_seq = message.seq;
            }
            Outcome::Retry { reason, after } => {
                if policy.exhausted(attempts) {
                    settlement.dead_letters.push(DeadLetter {
                        index,
                        reason: format!("retries exhausted after {attempts} attempts: {reason}"),
                        attempts,
                    });
                    settlement.processed_seq = message.seq;
                } else {
                    settlement.retry = Some(PendingRetry {
                        attempts,
                        delay: after
                            .unwrap_or_else(|| policy.delay(attempts))
                            .min(MAX_RETRY_DELAY),
                        error: reason,
                    });
                }
                break;
            }
            Outcome::Unavailable { reason, after } => {
                // The attempt is not the message's fault: the count stays
                // where it was and the policy never gives up on it.
                let delay = after.unwrap_or_else(|| {
                    RetryPolicy {
                        base: UNAVAILABLE_DELAY,
                        cap: UNAVAILABLE_DELAY,
                        ..policy.clone()
                    }
                    .delay(1)
                });
                settlement.retry = Some(PendingRetry {
                    attempts: attempts - 1,
                    delay: delay.min(MAX_RETRY_DELAY),
                    error: reason,
                });
                break;
            }
        }
    }
    settlement
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Delivery;

    fn batch(seqs: std::ops::RangeInclusive<i64>, attempt: u32) -> Batch {
        Batch {
            queue: "q".into(),
            partition: 0,
            attempt,
            messages: seqs
                .map(|seq| Delivery {
                    seq,
                    message_id: uuid::Uuid::nil(),
                    payload: Vec::new(),
                    payload_type: "t".into(),
                    headers: Default::default(),
                    enqueued_at_ms: 0,
                })
                .collect(),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::exponential(Duration::from_millis(10), Duration::from_millis(10))
            .jitter(0.0)
            .max_attempts(Some(3))
    }

    #[test]
    fn success_acknowledges_the_whole_batch() {
        let s = settle(&batch(5..=7, 0), 4, BatchResult::success(), &policy());
        assert_eq!(s.processed_seq, 7);
        assert!(s.retry.is_none() && s.dead_letters.is_empty() && !s.rollback_writes);
    }

    #[test]
    fn batch_retry_keeps_the_cursor_and_counts_an_attempt() {
        let s = settle(&batch(5..=7, 1), 4, BatchResult::retry("down"), &policy());
        assert_eq!(s.processed_seq, 4);
        assert!(s.rollback_writes);
        assert_eq!(s.retry.map(|r| r.attempts), Some(2));
    }

    #[test]
    fn per_message_retry_settles_the_prefix() {
        let outcomes = vec![
            Outcome::Success,
            Outcome::reject("bad"),
            Outcome::retry("later"),
            Outcome::Success,
        ];
        let s = settle(
            &batch(1..=4, 2),
            0,
            BatchResult::PerMessage(outcomes),
            &policy(),
        );
        assert_eq!(s.processed_seq, 2);
        assert_eq!(s.dead_letters.len(), 1);
        assert_eq!(s.dead_letters[0].index, 1);
        // The retried message was not the head, so its attempts start at one.
        assert_eq!(s.retry.map(|r| r.attempts), Some(1));
    }

    #[test]
    fn exhausted_retries_dead_letter_the_head() {
        let s = settle(
            &batch(3..=4, 2),
            2,
            BatchResult::retry("still down"),
            &policy(),
        );
        assert_eq!(s.processed_seq, 3);
        assert_eq!(s.dead_letters.len(), 1);
        assert!(s.retry.is_none());
    }

    #[test]
    fn unavailable_waits_without_using_an_attempt() {
        // The head has failed twice of three: a Retry would dead-letter it.
        let down = Outcome::Unavailable {
            reason: "broker down".into(),
            after: Some(Duration::from_millis(250)),
        };
        let s = settle(&batch(3..=4, 2), 2, BatchResult::All(down), &policy());
        assert_eq!(s.processed_seq, 2);
        assert!(s.dead_letters.is_empty());
        let retry = s.retry.expect("the partition waits");
        assert_eq!(retry.attempts, 2);
        assert_eq!(retry.delay, Duration::from_millis(250));
        assert_eq!(retry.error, "broker down");

        let outcomes = vec![Outcome::Success, Outcome::unavailable("down")];
        let s = settle(
            &batch(1..=3, 0),
            0,
            BatchResult::PerMessage(outcomes),
            &policy(),
        );
        assert_eq!(s.processed_seq, 1);
        let retry = s.retry.expect("the partition waits");
        assert_eq!(retry.attempts, 0);
        assert_eq!(retry.delay, UNAVAILABLE_DELAY);
    }

    #[test]
    fn short_outcome_vector_leaves_the_rest() {
        let s = settle(
            &batch(1..=3, 0),
            0,
            BatchResult::PerMessage(vec![Outcome::Success]),
            &policy(),
        );
        assert_eq!(s.processed_seq, 1);
        assert!(s.retry.is_none());
    }

    #[test]
    fn absurd_retry_delays_are_capped() {
        let forever = BatchResult::All(Outcome::Retry {
            reason: "later".into(),
            after: Some(Duration::MAX),
        });
        let s = settle(&batch(1..=1, 0), 0, forever, &policy());
        assert_eq!(s.retry.map(|r| r.delay), Some(MAX_RETRY_DELAY));
        let huge = RetryPolicy::exponential(Duration::from_secs(1), Duration::MAX)
            .jitter(0.0)
            .max_attempts(None);
        let s = settle(&batch(1..=1, 40), 0, BatchResult::retry("x"), &huge);
        assert_eq!(s.retry.map(|r| r.delay), Some(MAX_RETRY_DELAY));
    }
}
