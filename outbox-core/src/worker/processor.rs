//! One task per partition: waits for work, hands batches to the handler,
//! advances the cursor. Transactional mode lives here; leased mode in `leased`.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::ConnectionTrait;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::dialect::TimeoutStatements;
use crate::error::OutboxError;
use crate::handler::TransactionalHandler;
use crate::message::Batch;
use crate::outbox::Shared;
use crate::queue::{Mode, Queue};
use crate::worker::config::WorkerConfig;
use crate::worker::guard::guarded;
use crate::worker::partition_row::HeldLease;
use crate::worker::partition_row::{self, Fence, PartitionState};
use crate::worker::settlement::Unsettled;
use crate::worker::settlement::{Narrowing, Settlement, settle, settle_lost_writes};
use crate::worker::shutdown::{Shutdown, error_backoff};

/// What one step of a processor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Settled at least one message: look again at once.
    Progressed,
    /// Nothing to do: sleep until woken.
    Idle,
    /// Another worker holds the partition: look again after a poll interval.
    Busy,
    /// The head message waits for a retry.
    Backoff(Duration),
}

/// The processor of one partition.
pub(crate) struct PartitionWorker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) queue: Queue,
    pub(crate) partition: u32,
    pub(crate) partition_id: i64,
    pub(crate) wake: Arc<Notify>,
    pub(crate) shutdown: Shutdown,
    pub(crate) config: WorkerConfig,
    pub(crate) lease: Option<HeldLease>,
    /// Smaller batches while a failed batch is re-run in pieces.
    pub(crate) narrowing: Narrowing,
    /// Leased mode: an outcome given by the handler whose write failed,
    /// kept to be written again rather than asking the handler again.
    pub(crate) unsettled: Option<Unsettled>,
    /// Consecutive failed attempts to write an outcome (both modes): the
    /// backoff before the next one doubles with it.
    pub(crate) unrecorded: u32,
}

impl PartitionWorker {
    /// The processor of partition `partition` (row `partition_id`) of
    /// `queue`, holding no lease yet.
    pub(crate) fn new(
        shared: Arc<Shared>,
        queue: Queue,
        partition: u32,
        partition_id: i64,
        wake: Arc<Notify>,
        shutdown: Shutdown,
        config: WorkerConfig,
    ) -> Self {
        Self {
            shared,
            queue,
            partition,
            partition_id,
            wake,
            shutdown,
            config,
            lease: None,
            narrowing: Narrowing::default(),
            unsettled: None,
            unrecorded: 0,
        }
    }

    /// Runs until stop; the batch in flight when stop is requested finishes.
    pub(crate) async fn run(mut self) {
        let mut errors = 0;
        while !self.shutdown.is_set() {
            let step = self.run_once().await;
            if matches!(step, Ok(Step::Progressed | Step::Idle))
                && let Err(err) = self.give_back_if_over_share().await
            {
                tracing::warn!(queue = %self.queue.name, partition = self.partition, error = %err, "outbox could not give a lease back");
            }
            match step {
                Ok(Step::Progressed) => errors = 0,
                Ok(Step::Idle) => {
                    errors = 0;
                    self.wait(None).await;
                }
                Ok(Step::Busy) => {
                    errors = 0;
                    self.wait(Some(self.config.poll_interval)).await;
                }
                Ok(Step::Backoff(delay)) => {
                    errors = 0;
                    self.shutdown.sleep(delay).await;
                }
                Err(err) => {
                    errors += 1;
                    tracing::warn!(queue = %self.queue.name, partition = self.partition, error = %err, "outbox processor step failed");
                    // What this worker remembers of the row may be stale (an
                    // acknowledgement can commit and its reply be lost): take
                    // the lease again, which re-reads the row.
                    self.set_lease(None);
                    self.shutdown.sleep(error_backoff(errors)).await;
                }
            }
        }
        if let Err(err) = self.release_lease().await {
            tracing::warn!(queue = %self.queue.name, partition = self.partition, error = %err, "outbox could not release a lease on stop");
        }
    }

    /// Waits for a wakeup, `timeout`, or the end of the lease this worker
    /// holds, whichever is first. A lease that ran out while the partition
    /// was idle is forgotten, so it no longer counts towards the instance's
    /// fair share (another instance may have taken the partition since).
    async fn wait(&mut self, timeout: Option<Duration>) {
        let wake = self.wake.clone();
        let now = tokio::time::Instant::now();
        let until_expiry = self
            .lease
            .map(|held| held.expires.saturating_duration_since(now));
        let timeout = match (timeout, until_expiry) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(Duration::MAX),
        };
        tokio::select! {
            () = wake.notified() => {}
            () = self.shutdown.sleep(timeout) => {}
        }
        if self
            .lease
            .is_some_and(|held| held.expires <= tokio::time::Instant::now())
        {
            self.set_lease(None);
        }
    }

    /// One step: lock or lease the partition, hand one batch to the handler,
    /// record the outcome.
    pub(crate) async fn run_once(&mut self) -> Result<Step, OutboxError> {
        // The read below answers every wake that came before it: drop such a
        // wake's permit, so that the worker does not read again only to find
        // nothing. A wake that comes after this point leaves a permit, and
        // the next wait returns at once: no wake is lost.
        consume_pending_wake(&self.wake);
        let span = tracing::debug_span!("outbox.process", queue = %self.queue.name, partition = self.partition, seq = tracing::field::Empty, count = tracing::field::Empty);
        match self.queue.mode.clone() {
            Mode::Transactional(handler) => {
                self.run_once_transactional(handler.as_ref())
                    .instrument(span)
                    .await
            }
            Mode::Leased(handler) => {
                self.run_once_leased(handler.as_ref())
                    .instrument(span)
                    .await
            }
            Mode::ProduceOnly => Ok(Step::Idle),
        }
    }

    pub(crate) fn batch(
        &self,
        state: &PartitionState,
        messages: Vec<crate::message::Delivery>,
    ) -> Batch {
        let span = tracing::Span::current();
        if let Some(first) = messages.first() {
            span.record("seq", first.seq);
        }
        span.record("count", messages.len());
        Batch {
            queue: self.queue.name.clone(),
            partition: self.partition,
            attempt: state.attempts,
            messages,
        }
    }

    /// The span a handler runs in, linked to the trace context each message
    /// carries (see [`TracePropagator`](crate::TracePropagator)).
    pub(crate) fn handler_span(&self, batch: &Batch) -> tracing::Span {
        let span = tracing::info_span!(
            "outbox.handle",
            queue = %batch.queue,
            partition = batch.partition,
            seq = batch.messages.first().map_or(0, |m| m.seq),
            count = batch.messages.len(),
            attempt = batch.attempt,
        );
        if let Some(trace) = &self.shared.trace {
            for message in &batch.messages {
                trace.link(&span, &message.headers);
            }
        }
        span
    }

    async fn run_once_transactional(
        &mut self,
        handler: &dyn TransactionalHandler,
    ) -> Result<Step, OutboxError> {
        let shared = self.shared.clone();
        // The lease says which instance owns the partition; the row lock
        // below is what makes delivery exactly once.
        let Some((held, _)) = self.ensure_lease().await? else {
            return Ok(Step::Busy);
        };
        // The handler runs in this transaction: the turn lasts the whole step.
        let _turn = shared.processor_turn().await;
        let txn = shared.begin_worker().await?;
        let Some(state) = partition_row::state(&shared, &txn, self.partition_id, true).await?
        else {
            txn.rollback().await.map_err(|e| shared.db_error(e))?;
            return Ok(Step::Busy);
        };
        if let Some(delay) = state.backoff() {
            txn.rollback().await.map_err(|e| shared.db_error(e))?;
            return Ok(Step::Backoff(delay));
        }
        let messages = if state.has_work() {
            partition_row::read_batch(
                &shared,
                &txn,
                self.partition_id,
                (&self.queue.name, self.partition),
                state.processed_seq,
                self.narrowing
                    .limit(state.processed_seq, self.queue.batch_limit()),
            )
            .await?
        } else {
            Vec::new()
        };
        if messages.is_empty() {
            txn.commit().await.map_err(|e| shared.db_error(e))?;
            return Ok(Step::Idle);
        }
        let batch = self.batch(&state, messages);

        // The handler runs in a savepoint of the partition's transaction, so
        // its writes can be dropped while the outcome is kept. Its statements
        // get the handler timeout on the server too: one still waiting (on a
        // row lock, say) when the timeout fires would otherwise keep the
        // connection, and this transaction with its locks, until it ends on
        // its own. Setting the limits rides in the same round trip as the
        // savepoint, and restoring them in the same as its release, so the
        // timeout costs no extra round trip per batch.
        let limits = shared
            .dialect
            .handler_timeout_statements(self.queue.handler_timeout);
        let scope = HandlerScope::new(limits.as_ref());
        txn.execute_unprepared(&scope.enter)
            .await
            .map_err(|e| shared.db_error(e))?;
        let handler_started = tokio::time::Instant::now();
        let result = guarded(
            handler
                .handle(&txn, &batch)
                .instrument(self.handler_span(&batch)),
            self.queue.handler_timeout,
        )
        .await;
        shared.metrics.handled(&batch, handler_started.elapsed());
        let settlement = settle(
            &batch,
            state.processed_seq,
            result.clone(),
            &self.queue.retry,
        );
        let leave = if settlement.rollback_writes {
            &scope.roll_back
        } else {
            &scope.release
        };
        if let Err(err) = txn.execute_unprepared(leave).await {
            // The handler left the transaction unusable (on PostgreSQL a failed
            // statement aborts it): roll everything back and record the
            // attempt in a fresh transaction so the partition does not stall.
            // MySQL's limits are the session's and the connection goes back
            // to the pool: restore them whatever happened.
            if let Some(reset) = limits.as_ref().and_then(|l| l.reset.as_deref()) {
                let _ = txn.execute_unprepared(reset).await;
            }
            let _ = txn.rollback().await;
            let settlement = settle_lost_writes(
                &batch,
                state.processed_seq,
                result,
                &err.to_string(),
                &self.queue.retry,
            );
            return self.record_failure(&batch, &state, settlement).await;
        }
        if settlement.split.is_some() {
            txn.rollback().await.map_err(|e| shared.db_error(e))?;
            return Ok(self.narrow(&batch, &settlement));
        }
        let fence = Fence {
            token: held.token,
            processed_seq: state.processed_seq,
            lease: self.queue.lease,
        };
        let ack_started = tokio::time::Instant::now();
        let written = match partition_row::persist(
            &shared,
            &txn,
            self.partition_id,
            &batch,
            &settlement,
            Some(&fence),
        )
        .await
        {
            Ok(true) => txn.commit().await.map_err(|e| shared.db_error(e)),
            Ok(false) => {
                // Another instance took the partition after our lease ran out:
                // our handler's writes roll back with the batch, theirs count.
                txn.rollback().await.map_err(|e| shared.db_error(e))?;
                tracing::warn!(queue = %self.queue.name, partition = self.partition, "outbox lease was lost; the batch and the handler's writes were rolled back");
                shared.metrics.lease_lost(&self.queue.name);
                self.set_lease(None);
                return Ok(Step::Busy);
            }
            Err(err) => {
                let _ = txn.rollback().await;
                Err(err)
            }
        };
        if let Err(err) = written {
            // The handler's writes rolled back with the outcome: it runs
            // again, but only after a backoff, and the partition shows why.
            return Ok(self
                .outcome_unrecorded(&batch, state.processed_seq, held.token, &err)
                .await);
        }
        self.unrecorded = 0;
        if let Some(lease) = self.lease.as_mut() {
            lease.expires = ack_started + self.queue.lease;
        }
        shared.metrics.settled(&batch, &settlement);
        if shared.events.active() {
            shared.events.publish(settlement.events(&batch));
        }
        Ok(step_after(&settlement, state.processed_seq))
    }

    /// Records `settlement` of a batch whose transaction failed, in a
    /// fresh transaction.
    async fn record_failure(
        &mut self,
        batch: &Batch,
        state: &PartitionState,
        settlement: Settlement,
    ) -> Result<Step, OutboxError> {
        if settlement.split.is_some() {
            return Ok(self.narrow(batch, &settlement));
        }
        let shared = self.shared.clone();
        let txn = shared.begin_worker().await?;
        match partition_row::state(&shared, &txn, self.partition_id, true).await? {
            Some(now) if now.processed_seq == state.processed_seq => {
                partition_row::persist(&shared, &txn, self.partition_id, batch, &settlement, None)
                    .await?;
                txn.commit().await.map_err(|e| shared.db_error(e))?;
                shared.metrics.settled(batch, &settlement);
                Ok(step_after(&settlement, state.processed_seq))
            }
            _ => {
                txn.rollback().await.map_err(|e| shared.db_error(e))?;
                Ok(Step::Busy)
            }
        }
    }

    /// A batch failed without naming the message that caused it: nothing
    /// was written; its first messages run again on their own, at once.
    pub(crate) fn narrow(&mut self, batch: &Batch, settlement: &Settlement) -> Step {
        self.narrowing.settled(batch, settlement);
        tracing::debug!(
            queue = %self.queue.name,
            partition = self.partition,
            seq = batch.messages.first().map_or(0, |m| m.seq),
            count = batch.messages.len(),
            next = settlement.split,
            "outbox batch failed as a whole; running it again in smaller pieces to find the message that failed"
        );
        Step::Progressed
    }
}

/// Takes the permit a [`Notify`] holds, if any, without waiting.
fn consume_pending_wake(wake: &Notify) {
    // `enable` on a fresh `Notified` consumes a stored permit. Without one
    // it registers the future, and dropping it deregisters it; tokio hands a
    // wake that reached it in between on to the next waiter, so none is lost.
    std::pin::pin!(wake.notified()).enable();
}

/// The step a written settlement leads to.
pub(crate) fn step_after(settlement: &Settlement, processed_before: i64) -> Step {
    match &settlement.retry {
        Some(retry) if !settlement.progressed(processed_before) => Step::Backoff(retry.delay),
        // Progress first, then the retried message waits its turn on the
        // next step, which reads the stored retry time.
        _ => Step::Progressed,
    }
}

/// The statements around a transactional handler: a savepoint, with the
/// dialect's handler-timeout limits set on the way in and restored on the
/// way out, each way in one round trip.
struct HandlerScope {
    enter: String,
    release: String,
    roll_back: String,
}

impl HandlerScope {
    const SAVEPOINT: &'static str = "outbox_handler";

    fn new(limits: Option<&TimeoutStatements>) -> Self {
        let savepoint = Self::SAVEPOINT;
        let enter = match limits {
            Some(limits) => format!("{}; SAVEPOINT {savepoint}", limits.set),
            None => format!("SAVEPOINT {savepoint}"),
        };
        let reset = limits
            .and_then(|l| l.reset.as_deref())
            .map(|reset| format!("; {reset}"))
            .unwrap_or_default();
        Self {
            enter,
            release: format!("RELEASE SAVEPOINT {savepoint}{reset}"),
            roll_back: format!("ROLLBACK TO SAVEPOINT {savepoint}{reset}"),
        }
    }
}
