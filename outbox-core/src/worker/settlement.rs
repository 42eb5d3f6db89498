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
    /// The batch failed without saying which of its messages caused it (a
    /// batch-level retry or reject, a panic, a timeout): nothing is written
    /// or charged, and the first this many messages run again, on their
    /// own, at once, until the failure is pinned on one message.
    pub(crate) split: Option<u32>,
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
        let event = |kind, message: &crate::message::Delivery| Event {
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
///
/// A failure is charged to the message that caused it. Per-message outcomes
/// name it. A batch-level [`Outcome::Retry`] or [`Outcome::Reject`] (and a
/// panic or a timeout, which the guard turns into a batch-level retry) does
/// not: in a batch of more than one message it charges nothing and splits
/// the batch in half (see [`Settlement::split`]); only when one message
/// alone fails is it charged, with the retry policy and the dead-letter
/// table. [`Outcome::Unavailable`] is never any message's fault.
pub(crate) fn settle(
    batch: &Batch,
    processed_seq: i64,
    result: BatchResult,
    policy: &RetryPolicy,
) -> Settlement {
    match result {
        BatchResult::All(Outcome::Success) => per_message(
            batch,
            processed_seq,
            vec![Outcome::Success; batch.messages.len()],
            policy,
            false,
        ),
        BatchResult::All(down @ Outcome::Unavailable { .. }) => {
            per_message(batch, processed_seq, vec![down], policy, true)
        }
        BatchResult::All(failure @ (Outcome::Retry { .. } | Outcome::Reject { .. })) => {
            batch_failure(batch, processed_seq, failure, policy)
        }
        BatchResult::PerMessage(outcomes) if outcomes.is_empty() => batch_failure(
            batch,
            processed_seq,
            Outcome::retry("the handler returned no outcome for the batch"),
            policy,
        ),
        BatchResult::PerMessage(outcomes) => {
            per_message(batch, processed_seq, outcomes, policy, false)
        }
    }
}

/// Decides how `result` settles `batch` when the handler's writes could not
/// be kept: releasing its savepoint failed (on PostgreSQL a failed
/// statement aborts the transaction, so nothing of it can commit). Nothing
/// of the batch can be acknowledged, and the first failure the handler
/// reported is what counts, with its own reason rather than the error of
/// the release (`error`, PostgreSQL's "current transaction is aborted"),
/// which is only used when the handler reported none.
pub(crate) fn settle_lost_writes(
    batch: &Batch,
    processed_seq: i64,
    result: BatchResult,
    error: &str,
    policy: &RetryPolicy,
) -> Settlement {
    let failed = match result {
        BatchResult::All(Outcome::Success) => None,
        all @ BatchResult::All(_) => return settle(batch, processed_seq, all, policy),
        BatchResult::PerMessage(outcomes) => outcomes
            .into_iter()
            .enumerate()
            .find(|(_, outcome)| *outcome != Outcome::Success),
    };
    let mut settlement = match failed {
        // The messages before the one that failed were handled, but their
        // writes are gone: run them again on their own first.
        Some((index, _)) if index > 0 => Settlement {
            split: Some(u32::try_from(index).unwrap_or(u32::MAX)),
            ..unchanged(processed_seq)
        },
        Some((_, outcome)) => per_message(batch, processed_seq, vec![outcome], policy, true),
        None => batch_failure(
            batch,
            processed_seq,
            Outcome::retry(format!("the handler left the transaction failed: {error}")),
            policy,
        ),
    };
    settlement.rollback_writes = true;
    settlement
}

/// Nothing written: the cursor stays, no dead letter, no retry.
fn unchanged(processed_seq: i64) -> Settlement {
    Settlement {
        processed_seq,
        dead_letters: Vec::new(),
        retry: None,
        rollback_writes: true,
        split: None,
    }
}

/// A failure of the whole batch, which does not say which message caused it.
fn batch_failure(
    batch: &Batch,
    processed_seq: i64,
    failure: Outcome,
    policy: &RetryPolicy,
) -> Settlement {
    let count = batch.messages.len();
    if count > 1 {
        return Settlement {
            split: Some(u32::try_from(count / 2).unwrap_or(u32::MAX)),
            ..unchanged(processed_seq)
        };
    }
    per_message(batch, processed_seq, vec![failure], policy, true)
}

/// Settles the messages in order, up to the first that stays at the head.
fn per_message(
    batch: &Batch,
    processed_seq: i64,
    outcomes: Vec<Outcome>,
    policy: &RetryPolicy,
    rollback_writes: bool,
) -> Settlement {
    let mut settlement = Settlement {
        rollback_writes,
        ..unchanged(processed_seq)
    };
    for (index, (outcome, message)) in outcomes.into_iter().zip(&batch.messages).enumerate() {
        // The stored attempts are the head message's: later ones start afresh.
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

/// A partition worker's batch limit while a failed batch is re-run in
/// pieces: narrowed by each [`Settlement::split`], back to normal once the
/// cursor has passed the last message of the batch that first failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Narrowing {
    /// The narrowed limit and the last seq of the failed batch.
    narrowed: Option<(u32, i64)>,
}

impl Narrowing {
    /// How many messages to read after `processed_seq`, given the queue's
    /// `normal` batch limit.
    pub(crate) fn limit(&mut self, processed_seq: i64, normal: u32) -> u32 {
        match self.narrowed {
            Some((limit, until)) if processed_seq < until => limit.clamp(1, normal),
            _ => {
                self.narrowed = None;
                normal
            }
        }
    }

    /// Takes `settlement` of `batch` into account.
    pub(crate) fn settled(&mut self, batch: &Batch, settlement: &Settlement) {
        if let Some(limit) = settlement.split {
            let last = batch.messages.last().map_or(0, |m| m.seq);
            let until = self.narrowed.map_or(last, |(_, until)| until.max(last));
            self.narrowed = Some((limit, until));
        }
    }
}

/// A leased handler's outcome whose write failed, waiting to be written.
pub(crate) struct Unsettled {
    pub(crate) batch: Batch,
    pub(crate) settlement: Settlement,
    /// The cursor the outcome was decided from.
    pub(crate) processed_before: i64,
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
                    queue: "q".into(),
                    partition: 0,
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
    fn batch_retry_of_one_message_keeps_the_cursor_and_counts_an_attempt() {
        let s = settle(&batch(5..=5, 1), 4, BatchResult::retry("down"), &policy());
        assert_eq!(s.processed_seq, 4);
        assert!(s.rollback_writes && s.split.is_none());
        let retry = s.retry.expect("the message waits");
        assert_eq!((retry.attempts, retry.error.as_str()), (2, "down"));
    }

    #[test]
    fn batch_failure_of_several_messages_splits_and_charges_nothing() {
        for result in [
            BatchResult::retry("down"),
            BatchResult::reject("bad"),
            BatchResult::PerMessage(Vec::new()),
        ] {
            let s = settle(&batch(5..=9, 2), 4, result.clone(), &policy());
            assert_eq!(
                s,
                Settlement {
                    processed_seq: 4,
                    dead_letters: Vec::new(),
                    retry: None,
                    rollback_writes: true,
                    split: Some(2),
                },
                "{result:?}"
            );
            assert!(s.events(&batch(5..=9, 2)).is_empty());
            assert_eq!(
                crate::worker::processor::step_after(&s, 4),
                crate::worker::processor::Step::Progressed
            );
        }
        let s = settle(&batch(5..=6, 0), 4, BatchResult::retry("down"), &policy());
        assert_eq!(s.split, Some(1));
    }

    #[test]
    fn batch_reject_of_one_message_dead_letters_it_with_its_reason() {
        let s = settle(&batch(5..=5, 0), 4, BatchResult::reject("bad"), &policy());
        assert_eq!(s.processed_seq, 5);
        assert_eq!(
            s.dead_letters,
            vec![DeadLetter {
                index: 0,
                reason: "bad".into(),
                attempts: 1
            }]
        );
        assert!(s.rollback_writes && s.retry.is_none() && s.split.is_none());
    }

    #[test]
    fn lost_writes_keep_the_handlers_own_reason() {
        let aborted = "current transaction is aborted";
        // The handler named the head: it is charged with its own reason.
        let outcomes = vec![Outcome::retry("duplicate key"), Outcome::Success];
        let s = settle_lost_writes(
            &batch(1..=2, 1),
            0,
            BatchResult::PerMessage(outcomes),
            aborted,
            &policy(),
        );
        let retry = s.retry.expect("the head waits");
        assert_eq!((retry.attempts, retry.error.as_str()), (2, "duplicate key"));
        assert_eq!(s.processed_seq, 0);
        // It named a later message: the ones before it lost their writes
        // and run again on their own, nothing charged.
        let outcomes = vec![Outcome::Success, Outcome::Success, Outcome::retry("dup")];
        let s = settle_lost_writes(
            &batch(1..=5, 0),
            0,
            BatchResult::PerMessage(outcomes),
            aborted,
            &policy(),
        );
        assert_eq!((s.split, s.processed_seq, s.retry), (Some(2), 0, None));
        // A rejected head is dead-lettered with its reason.
        let s = settle_lost_writes(
            &batch(1..=2, 0),
            0,
            BatchResult::PerMessage(vec![Outcome::reject("bad")]),
            aborted,
            &policy(),
        );
        assert_eq!(
            (s.processed_seq, s.dead_letters[0].reason.as_str()),
            (1, "bad")
        );
        // It reported success: only the release's error is known.
        let s = settle_lost_writes(
            &batch(1..=1, 0),
            0,
            BatchResult::success(),
            aborted,
            &policy(),
        );
        let error = s.retry.expect("the message waits").error;
        assert!(error.contains(aborted), "{error}");
        let s = settle_lost_writes(
            &batch(1..=3, 0),
            0,
            BatchResult::success(),
            aborted,
            &policy(),
        );
        assert_eq!(s.split, Some(1));
        // A batch-level outcome settles as it would have anyway.
        let s = settle_lost_writes(
            &batch(1..=1, 0),
            0,
            BatchResult::retry("timed out"),
            aborted,
            &policy(),
        );
        assert_eq!(s.retry.expect("waits").error, "timed out");
    }

    #[test]
    fn narrowing_shrinks_the_limit_until_the_failed_batch_is_passed() {
        let mut narrowing = Narrowing::default();
        assert_eq!(narrowing.limit(0, 10), 10);
        let failed = batch(1..=5, 0);
        narrowing.settled(
            &failed,
            &settle(&failed, 0, BatchResult::retry("x"), &policy()),
        );
        assert_eq!(narrowing.limit(0, 10), 2);
        let failed = batch(3..=4, 0);
        narrowing.settled(
            &failed,
            &settle(&failed, 2, BatchResult::retry("x"), &policy()),
        );
        assert_eq!(narrowing.limit(2, 10), 1);
        assert_eq!(narrowing.limit(4, 10), 1);
        // Past seq 5, the last of the batch that first failed: normal again.
        assert_eq!(narrowing.limit(5, 10), 10);
        assert_eq!(narrowing.limit(4, 10), 10);
        // Never above the queue's limit.
        narrowing.settled(
            &batch(1..=9, 0),
            &Settlement {
                split: Some(4),
                ..unchanged(0)
            },
        );
        assert_eq!(narrowing.limit(0, 3), 3);
    }

    /// What [`run_partition`] saw: the dead letters (seq, attempts, reason),
    /// the acknowledged seqs in order, and how often each message was
    /// handed to the handler.
    type Run = (Vec<(i64, u32, String)>, Vec<i64>, Vec<u32>);

    /// How a partition of five messages settles when every step is settled
    /// by `settle` and read with `Narrowing`, as the workers do.
    fn run_partition(handler: impl Fn(&Batch) -> BatchResult) -> Run {
        let (mut processed, mut attempts) = (0_i64, 0_u32);
        let mut narrowing = Narrowing::default();
        let (mut dead, mut acked, mut handled) = (Vec::new(), Vec::new(), vec![0_u32; 5]);
        for _ in 0..100 {
            if processed == 5 {
                return (dead, acked, handled);
            }
            let limit = i64::from(narrowing.limit(processed, 10));
            let read = batch(processed + 1..=(processed + limit).min(5), attempts);
            for m in &read.messages {
                handled[usize::try_from(m.seq - 1).unwrap()] += 1;
            }
            let s = settle(&read, processed, handler(&read), &policy());
            narrowing.settled(&read, &s);
            if s.split.is_some() {
                continue;
            }
            for (index, m) in read.messages.iter().enumerate() {
                if m.seq > s.processed_seq {
                    break;
                }
                match s.dead_letters.iter().find(|d| d.index == index) {
                    Some(d) => dead.push((m.seq, d.attempts, d.reason.clone())),
                    None => acked.push(m.seq),
                }
            }
            processed = s.processed_seq;
            attempts = s.retry.map_or(0, |r| r.attempts);
        }
        panic!("the partition never settled: dead {dead:?}, acked {acked:?}");
    }

    #[test]
    fn a_poison_message_in_a_batch_is_the_only_one_charged() {
        let has_poison = |b: &Batch| b.messages.iter().any(|m| m.seq == 3);
        let (dead, acked, handled) = run_partition(|b| {
            if has_poison(b) {
                BatchResult::retry("poison m3")
            } else {
                BatchResult::success()
            }
        });
        assert_eq!(
            dead,
            vec![(3, 3, "retries exhausted after 3 attempts: poison m3".into())]
        );
        assert_eq!(acked, vec![1, 2, 4, 5]);
        // 1..5 fails, 1..2 passes, 3..4 fails, then 3 alone three times.
        assert_eq!(handled, vec![2, 2, 5, 3, 2]);

        let (dead, acked, _) = run_partition(|b| {
            if has_poison(b) {
                BatchResult::reject("poison m3")
            } else {
                BatchResult::success()
            }
        });
        assert_eq!(dead, vec![(3, 1, "poison m3".into())]);
        assert_eq!(acked, vec![1, 2, 4, 5]);
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
            &batch(3..=3, 2),
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
