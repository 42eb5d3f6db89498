//! An outcome the database would not record: the write of a settlement
//! failed (a refused statement, a lost connection, a trigger). The partition
//! backs off, doubling, shows as blocked in stats with the error, and in
//! leased mode keeps the handler's outcome to write again instead of asking
//! the handler a second time.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

use crate::column::Column;
use crate::error::OutboxError;
use crate::message::Batch;
use crate::outbox::Shared;
use crate::reason::{error_chain, stored_reason};
use crate::worker::processor::{PartitionWorker, Step};
use crate::worker::shutdown::error_backoff;

impl PartitionWorker {
    /// After a failed write of `batch`'s outcome: counts the failure, writes
    /// the error and the time of the next try on the partition row (one
    /// small statement on its own, guarded by the cursor and the fencing
    /// token), and returns the backoff to wait.
    pub(crate) async fn outcome_unrecorded(
        &mut self,
        batch: &Batch,
        processed_before: i64,
        token: i64,
        err: &OutboxError,
    ) -> Step {
        self.unrecorded = self.unrecorded.saturating_add(1);
        let delay = error_backoff(self.unrecorded);
        let first = batch.messages.first().map_or(0, |m| m.seq);
        let last = batch.messages.last().map_or(0, |m| m.seq);
        let cause = error_chain(err);
        tracing::warn!(queue = %self.queue.name, partition = self.partition, seq = first, count = batch.messages.len(), failures = self.unrecorded, error = %cause, "outbox could not record a batch's outcome; trying again after {delay:?}");
        let text = format!(
            "could not record the outcome of seq {first}..={last} ({} failures, next try in {delay:?}): {cause}",
            self.unrecorded
        );
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        let update = Query::update()
            .table(self.shared.tables.partition.clone())
            .value(Column::LastError, stored_reason(&text))
            .value(
                Column::RetryAt,
                self.shared.dialect.now_millis().add(delay_ms),
            )
            .and_where(Expr::col(Column::Id).eq(self.partition_id))
            .and_where(Expr::col(Column::ProcessedSeq).eq(processed_before))
            .and_where(Expr::col(Column::LeaseToken).eq(token))
            .to_owned();
        let shared: &Shared = &self.shared;
        if let Err(e) = shared.db.execute(&update).await {
            tracing::warn!(queue = %self.queue.name, partition = self.partition, error = %e, "outbox could not record why the partition waits either");
        }
        Step::Backoff(delay)
    }
}
