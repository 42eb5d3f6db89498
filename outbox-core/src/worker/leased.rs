//! Leased mode: a partition is held by a lease with a fencing token; the
//! handler runs outside any transaction, and an acknowledgement is written
//! only while the token is unchanged.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use tokio::time::Instant;
use tracing::Instrument;

use crate::column::Column;
#[cfg(feature = "testing")]
use crate::error::ConfigError;
use crate::error::OutboxError;
use crate::handler::{BatchResult, LeasedHandler};
#[cfg(feature = "testing")]
use crate::outbox::Outbox;
use crate::outbox::Shared;
use crate::worker::guard::guarded;
use crate::worker::partition_row::{self, Fence, HeldLease, PartitionState};
use crate::worker::processor::{PartitionWorker, Step, step_after};
use crate::worker::settlement::Unsettled;
use crate::worker::settlement::settle;

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Takes the lease on a partition if it is free, expired, or already ours,
/// bumping the fencing token. Returns the token and the row, or `None` when
/// another owner holds a live lease.
async fn take(
    shared: &Shared,
    partition_id: i64,
    owner: &str,
    lease: Duration,
) -> Result<Option<PartitionState>, OutboxError> {
    let now = shared.dialect.now_millis();
    let update = Query::update()
        .table(shared.tables.partition.clone())
        .value(Column::LeaseOwner, owner)
        .value(Column::LeaseUntil, now.clone().add(millis(lease)))
        .value(Column::LeaseToken, Expr::col(Column::LeaseToken).add(1))
        .and_where(Expr::col(Column::Id).eq(partition_id))
        .and_where(
            Expr::col(Column::LeaseUntil)
                .lte(now)
                .or(Expr::col(Column::LeaseOwner).eq(owner)),
        )
        .to_owned();
    // Durable, unlike sequencing: a take lost in a database crash would let
    // the next taker get the same fencing token while this holder still
    // acts on it, and then both acknowledgements pass the fence.
    let txn = shared.begin_worker().await?;
    let taken = txn
        .execute(&update)
        .await
        .map_err(|e| shared.db_error(e))?
        .rows_affected()
        > 0;
    let state = if taken {
        partition_row::state(shared, &txn, partition_id, false).await?
    } else {
        None
    };
    txn.commit().await.map_err(|e| shared.db_error(e))?;
    Ok(state)
}

/// Extends a lease; `false` if the token changed (the lease was lost).
async fn renew<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    partition_id: i64,
    token: i64,
    lease: Duration,
) -> Result<bool, OutboxError> {
    let update = Query::update()
        .table(shared.tables.partition.clone())
        .value(
            Column::LeaseUntil,
            shared.dialect.now_millis().add(millis(lease)),
        )
        .and_where(Expr::col(Column::Id).eq(partition_id))
        .and_where(Expr::col(Column::LeaseToken).eq(token))
        .to_owned();
    let result = conn
        .execute(&update)
        .await
        .map_err(|e| shared.db_error(e))?;
    Ok(result.rows_affected() > 0)
}

/// Ends a lease early so another instance can take the partition at once.
async fn release<C: ConnectionTrait>(
    shared: &Shared,
    conn: &C,
    partition_id: i64,
    token: i64,
) -> Result<(), OutboxError> {
    let update = Query::update()
        .table(shared.tables.partition.clone())
        .value(Column::LeaseUntil, 0)
        .value(Column::LeaseOwner, Option::<String>::None)
        .and_where(Expr::col(Column::Id).eq(partition_id))
        .and_where(Expr::col(Column::LeaseToken).eq(token))
        .to_owned();
    conn.execute(&update)
        .await
        .map_err(|e| shared.db_error(e))?;
    Ok(())
}

impl PartitionWorker {
    /// Records the lease this worker holds, keeping the instance's count of
    /// held leases (for its fair share) in step.
    pub(crate) fn set_lease(&mut self, lease: Option<HeldLease>) {
        let ownership = &self.shared.ownership;
        match (self.lease.is_some(), lease.is_some()) {
            (false, true) => {
                ownership.taken(&self.queue.name);
                self.shared.metrics.lease_taken(&self.queue.name);
            }
            (true, false) => ownership.dropped(&self.queue.name),
            _ => {}
        }
        self.lease = lease;
    }

    /// The lease on this partition: the one held while it has more than half
    /// its life left, else taken (or re-taken) now, unless the instance is
    /// at its fair share or another instance holds a live lease. Returns the
    /// partition row too when it was read while taking.
    pub(crate) async fn ensure_lease(
        &mut self,
    ) -> Result<Option<(HeldLease, Option<PartitionState>)>, OutboxError> {
        if self.shared.ownership.name_taken() {
            // Another instance runs under this one's name and would take
            // these leases as its own: stand down until the name is free.
            if let Some(held) = self.lease {
                self.set_lease(None);
                release(&self.shared, &self.shared.db, self.partition_id, held.token).await?;
            }
            return Ok(None);
        }
        let lease_len = self.queue.lease;
        let started = Instant::now();
        match self.lease {
            Some(held) if held.expires.saturating_duration_since(started) > lease_len / 2 => {
                return Ok(Some((held, None)));
            }
            None if !self
                .shared
                .ownership
                .may_take(&self.queue.name, self.queue.partitions) =>
            {
                return Ok(None);
            }
            _ => {}
        }
        match take(
            &self.shared,
            self.partition_id,
            &self.config.owner,
            lease_len,
        )
        .await?
        {
            Some(state) => {
                let held = HeldLease::from_state(&state, started, lease_len);
                self.set_lease(Some(held));
                Ok(Some((held, Some(state))))
            }
            None => {
                if self.lease.is_some() {
                    // Held, and another instance has it now.
                    self.shared.metrics.lease_lost(&self.queue.name);
                }
                self.set_lease(None);
                Ok(None)
            }
        }
    }

    /// After a step: an instance over its fair share gives this partition's
    /// lease back, so a newly started instance gets partitions while the
    /// old ones are busy.
    pub(crate) async fn give_back_if_over_share(&mut self) -> Result<(), OutboxError> {
        let Some(held) = self.lease else {
            return Ok(());
        };
        if self
            .shared
            .ownership
            .claim_give_back(&self.queue.name, self.queue.partitions)
        {
            // The count was already lowered by the claim.
            self.lease = None;
            release(&self.shared, &self.shared.db, self.partition_id, held.token).await?;
            tracing::debug!(queue = %self.queue.name, partition = self.partition, "outbox gave a partition back to even out instances");
        }
        Ok(())
    }

    pub(crate) async fn run_once_leased(
        &mut self,
        handler: &dyn LeasedHandler,
    ) -> Result<Step, OutboxError> {
        if let Some(unsettled) = self.unsettled.take() {
            return self.record_unsettled(unsettled).await;
        }
        let shared = self.shared.clone();

        // While the lease is held, what we last wrote is the partition's state.
        let started = Instant::now();
        let held = match self.ensure_lease().await? {
            None => return Ok(Step::Busy),
            Some((_, Some(state))) if !state.has_work() => return Ok(Step::Idle),
            Some((held, _)) => held,
        };
        if let Some(until) = held.retry_until
            && until > started
        {
            return Ok(Step::Backoff(until - started));
        }
        // Waiting for the turn is what makes batches grow under load: the
        // messages sequenced meanwhile come in this read.
        let turn = shared.processor_turn().await;
        let messages = partition_row::read_batch(
            &shared,
            &shared.db,
            self.partition_id,
            (&self.queue.name, self.partition),
            held.processed_seq,
            self.narrowing
                .limit(held.processed_seq, self.queue.batch_limit()),
        )
        .await?;
        drop(turn);
        if messages.is_empty() {
            return Ok(Step::Idle);
        }
        if shared.ownership.name_taken() {
            // Stood down since the lease was checked: hand nothing over;
            // the next step gives the lease back.
            return Ok(Step::Busy);
        }
        let state = PartitionState {
            processed_seq: held.processed_seq,
            next_seq: 0,
            attempts: held.attempts,
            retry_at: 0,
            lease_token: held.token,
            now: 0,
        };
        let batch = self.batch(&state, messages);

        let Some(result) = self.run_under_lease(handler, &batch, held).await? else {
            // The lease was lost or about to expire: not the batch's fault,
            // nothing is charged; it runs again under a new lease.
            return Ok(Step::Busy);
        };
        let settlement = settle(&batch, state.processed_seq, result, &self.queue.retry);
        if settlement.split.is_some() {
            return Ok(self.narrow(&batch, &settlement));
        }
        let unsettled = Unsettled {
            batch,
            settlement,
            processed_before: state.processed_seq,
        };
        self.record_leased(unsettled, held.token).await
    }

    /// Writes a leased handler's outcome under the fencing token. When the
    /// write fails the outcome is kept, and written again after a backoff
    /// (by [`PartitionWorker::record_unsettled`]) without calling the
    /// handler again.
    async fn record_leased(
        &mut self,
        unsettled: Unsettled,
        token: i64,
    ) -> Result<Step, OutboxError> {
        let shared = self.shared.clone();
        let lease_len = self.queue.lease;
        let Unsettled {
            batch,
            settlement,
            processed_before,
        } = &unsettled;
        let fence = Fence {
            token,
            processed_seq: *processed_before,
            lease: lease_len,
        };
        let _turn = shared.processor_turn().await;
        let ack_started = Instant::now();
        let written = if settlement.dead_letters.is_empty() {
            // The fenced UPDATE is the whole acknowledgement: one statement,
            // its own transaction.
            partition_row::persist(
                &shared,
                &shared.db,
                self.partition_id,
                batch,
                settlement,
                Some(&fence),
            )
            .await
        } else {
            self.persist_in_transaction(batch, settlement, &fence).await
        };
        let accepted = match written {
            Ok(accepted) => accepted,
            Err(err) => {
                let step = self
                    .outcome_unrecorded(batch, *processed_before, token, &err)
                    .await;
                self.unsettled = Some(unsettled);
                return Ok(step);
            }
        };
        if !accepted {
            tracing::warn!(queue = %self.queue.name, partition = self.partition, token, "outbox lease was lost; acknowledgement refused, the batch will be delivered again");
            self.shared.metrics.lease_lost(&self.queue.name);
            self.set_lease(None);
            return Ok(Step::Busy);
        }
        self.unrecorded = 0;
        shared.metrics.settled(batch, settlement);
        if shared.events.active() {
            shared.events.publish(settlement.events(batch));
        }
        if let Some(lease) = self.lease.as_mut() {
            lease.expires = ack_started + lease_len;
            lease.processed_seq = settlement.processed_seq;
            lease.attempts = settlement.retry.as_ref().map_or(0, |retry| retry.attempts);
            lease.retry_until = settlement
                .retry
                .as_ref()
                .map(|retry| ack_started + retry.delay);
        }
        Ok(step_after(settlement, *processed_before))
    }

    async fn persist_in_transaction(
        &self,
        batch: &crate::message::Batch,
        settlement: &crate::worker::settlement::Settlement,
        fence: &Fence,
    ) -> Result<bool, OutboxError> {
        let shared = &self.shared;
        // Durable: the dead letters are the only record of their messages.
        let txn = shared.begin_worker().await?;
        let accepted = match partition_row::persist(
            shared,
            &txn,
            self.partition_id,
            batch,
            settlement,
            Some(fence),
        )
        .await
        {
            Ok(accepted) => accepted,
            Err(err) => {
                let _ = txn.rollback().await;
                return Err(err);
            }
        };
        if accepted {
            txn.commit().await.map_err(|e| shared.db_error(e))?;
        } else {
            txn.rollback().await.map_err(|e| shared.db_error(e))?;
        }
        Ok(accepted)
    }

    /// Writes again an outcome whose write failed, once the lease is still
    /// (or again) ours and the partition row shows it was not written after
    /// all (a commit whose reply was lost may have landed).
    async fn record_unsettled(&mut self, unsettled: Unsettled) -> Result<Step, OutboxError> {
        let found = match self.lease_and_row().await {
            Ok(found) => found,
            Err(err) => {
                // Kept through a database error too: the next step tries again.
                self.unsettled = Some(unsettled);
                return Err(err);
            }
        };
        match found {
            Some((token, state))
                if state.lease_token == token
                    && state.processed_seq == unsettled.processed_before =>
            {
                self.record_leased(unsettled, token).await
            }
            // Another instance holds the partition: it delivers the batch again.
            None => Ok(Step::Busy),
            Some(_) => {
                // Written after all, or the partition changed hands: start
                // again from the row as it is.
                self.set_lease(None);
                Ok(Step::Progressed)
            }
        }
    }

    /// The lease (taken again if it ran low) and the partition row as the
    /// database has it; `None` when another instance holds the partition.
    async fn lease_and_row(&mut self) -> Result<Option<(i64, PartitionState)>, OutboxError> {
        let Some((held, taken)) = self.ensure_lease().await? else {
            return Ok(None);
        };
        let state = match taken {
            Some(state) => Some(state),
            None => {
                partition_row::state(&self.shared, &self.shared.db, self.partition_id, false)
                    .await?
            }
        };
        Ok(state.map(|state| (held.token, state)))
    }

    /// Runs the handler while renewing the lease every third of its length;
    /// cancels the handler before the lease could expire unrenewed, or as
    /// soon as a renewal finds the lease lost, and then returns `None`.
    async fn run_under_lease(
        &mut self,
        handler: &dyn LeasedHandler,
        batch: &crate::message::Batch,
        mut held: HeldLease,
    ) -> Result<Option<BatchResult>, OutboxError> {
        let shared = self.shared.clone();
        let lease_len = self.queue.lease;
        let headroom = self.queue.lease_headroom;
        let handler_started = Instant::now();
        let handler = guarded(
            handler.handle(batch).instrument(self.handler_span(batch)),
            self.queue.handler_timeout,
        );
        tokio::pin!(handler);
        let mut renew_at = Instant::now() + lease_len / 3;
        loop {
            let cancel_at = held
                .expires
                .checked_sub(headroom)
                .unwrap_or_else(Instant::now);
            tokio::select! {
                result = &mut handler => {
                    shared.metrics.handled(batch, handler_started.elapsed());
                    self.set_lease(Some(held));
                    return Ok(Some(result));
                }
                () = tokio::time::sleep_until(renew_at) => {
                    let renew_started = Instant::now();
                    match renew(&shared, &shared.db, self.partition_id, held.token, lease_len).await {
                        Ok(true) => held.expires = renew_started + lease_len,
                        Ok(false) => {
                            self.set_lease(None);
                            tracing::warn!(queue = %self.queue.name, partition = self.partition, "outbox lease was lost while the handler ran; the batch will be delivered again");
                            self.shared.metrics.lease_lost(&self.queue.name);
                            return Ok(None);
                        }
                        Err(err) => tracing::warn!(error = %err, "outbox could not renew a lease; will try again"),
                    }
                    renew_at = Instant::now() + lease_len / 3;
                }
                () = tokio::time::sleep_until(cancel_at) => {
                    self.set_lease(None);
                    tracing::warn!(queue = %self.queue.name, partition = self.partition, "outbox cancelled a handler: its lease could not be renewed and was about to expire");
                    self.shared.metrics.lease_lost(&self.queue.name);
                    return Ok(None);
                }
            }
        }
    }

    /// Gives the lease back on stop.
    pub(crate) async fn release_lease(&mut self) -> Result<(), OutboxError> {
        if let Some(held) = self.lease {
            self.set_lease(None);
            release(&self.shared, &self.shared.db, self.partition_id, held.token).await?;
        }
        Ok(())
    }
}

/// A lease taken through [`Outbox::take_lease`]: how tests play a custom or
/// stalled worker. Only with the `testing` cargo feature.
#[cfg(feature = "testing")]
#[derive(Debug, Clone)]
pub struct Lease {
    /// The queue.
    pub queue: String,
    /// The partition number.
    pub partition: u32,
    /// The fencing token this lease holds.
    pub token: i64,
    /// The cursor when the lease was taken.
    pub processed_seq: i64,
    partition_id: i64,
}

#[cfg(feature = "testing")]
impl Outbox {
    /// Takes the lease on a partition as `owner`, if it is free, expired, or
    /// already `owner`'s. Workers take their leases themselves; this is a
    /// test hook (the `testing` cargo feature), outside the semver promise.
    ///
    /// # Errors
    /// [`OutboxError::UnknownQueue`], [`OutboxError::PartitionOutOfRange`],
    /// [`OutboxError::Config`] ([`ConfigError::LeaseOwner`],
    /// [`ConfigError::LeaseDuration`]) for an owner outside 1 to 128 bytes
    /// or a lease outside 1 ms to 24 h, or a database error.
    pub async fn take_lease(
        &self,
        queue: &str,
        partition: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Lease>, OutboxError> {
        let partition_id = self.partition_id(queue, partition)?;
        if owner.is_empty() || owner.len() > 128 {
            return Err(ConfigError::LeaseOwner {
                owner: owner.to_owned(),
            }
            .into());
        }
        if lease < Duration::from_millis(1) || lease > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::LeaseDuration { lease }.into());
        }
        let state = take(&self.shared, partition_id, owner, lease).await?;
        Ok(state.map(|state| Lease {
            queue: queue.to_owned(),
            partition,
            token: state.lease_token,
            processed_seq: state.processed_seq,
            partition_id,
        }))
    }

    /// Acknowledges the messages of `lease`'s partition up to `seq`: moves
    /// the cursor there. Returns `false`, and changes nothing, when the
    /// fencing token changed since the lease was taken: the acknowledgement
    /// of a worker that lost its lease is refused. A test hook (the
    /// `testing` cargo feature), outside the semver promise.
    ///
    /// # Errors
    /// [`OutboxError::AcknowledgeOutOfRange`], writing nothing, when `seq`
    /// is not after the partition's cursor or is beyond its highest
    /// sequenced message; a database error.
    pub async fn acknowledge(&self, lease: &Lease, seq: i64) -> Result<bool, OutboxError> {
        let shared = &self.shared;
        let err = |e| shared.db_error(e);
        let update = Query::update()
            .table(shared.tables.partition.clone())
            .value(Column::ProcessedSeq, seq)
            .value(Column::Attempts, 0)
            .and_where(Expr::col(Column::Id).eq(lease.partition_id))
            .and_where(Expr::col(Column::LeaseToken).eq(lease.token))
            .and_where(Expr::col(Column::ProcessedSeq).lt(seq))
            .and_where(crate::next_seq::next_seq(&shared.tables, &shared.tables.partition).gt(seq))
            .to_owned();
        if shared
            .db
            .execute(&update)
            .await
            .map_err(err)?
            .rows_affected()
            > 0
        {
            return Ok(true);
        }
        // Nothing written: say why.
        let Some(state) =
            partition_row::state(shared, &shared.db, lease.partition_id, false).await?
        else {
            return Ok(false);
        };
        if state.lease_token != lease.token {
            return Ok(false);
        }
        Err(OutboxError::AcknowledgeOutOfRange {
            queue: lease.queue.clone(),
            partition: lease.partition,
            seq,
            processed_seq: state.processed_seq,
            highest_seq: state.next_seq - 1,
        })
    }

    fn partition_id(&self, queue: &str, partition: u32) -> Result<i64, OutboxError> {
        let runtime = self
            .shared
            .queues
            .get(queue)
            .ok_or_else(|| OutboxError::UnknownQueue {
                queue: queue.to_owned(),
            })?;
        runtime
            .partition_ids
            .get(partition as usize)
            .copied()
            .ok_or_else(|| OutboxError::PartitionOutOfRange {
                queue: queue.to_owned(),
                partition,
                partitions: runtime.config.partitions,
            })
    }
}
