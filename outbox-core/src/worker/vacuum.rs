//! Vacuum: deletes the messages at or below each partition's cursor, in
//! bounded batches, only where the cursor moved since last time.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use tracing::Instrument;

use crate::column::Column;
use crate::error::OutboxError;
use crate::outbox::Shared;
use crate::worker::config::WorkerConfig;
use crate::worker::shutdown::{Shutdown, error_backoff};

/// The vacuum of one outbox instance.
pub(crate) struct Vacuum {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: WorkerConfig,
    pub(crate) shutdown: Shutdown,
    /// Partition row id → cursor up to which rows are already deleted.
    pub(crate) vacuumed: HashMap<i64, i64>,
}

impl Vacuum {
    pub(crate) fn new(shared: Arc<Shared>, config: WorkerConfig, shutdown: Shutdown) -> Self {
        Self {
            shared,
            config,
            shutdown,
            vacuumed: HashMap::new(),
        }
    }

    /// Runs a pass every `vacuum_interval` until stop.
    pub(crate) async fn run(mut self) {
        let mut errors = 0;
        while !self.shutdown.is_set() {
            let pause = match self.run_once().await {
                Ok(_) => {
                    errors = 0;
                    self.config.vacuum_interval
                }
                Err(err) => {
                    errors += 1;
                    tracing::warn!(error = %err, "outbox vacuum pass failed");
                    error_backoff(errors).max(self.config.vacuum_interval)
                }
            };
            self.shutdown.sleep(pause).await;
        }
    }

    /// One pass over this instance's queues. Returns how many messages it deleted.
    pub(crate) async fn run_once(&mut self) -> Result<u64, OutboxError> {
        let shared = self.shared.clone();
        let err = |e| shared.db_error(e);
        let select = Query::select()
            .columns([
                Column::Id,
                Column::ProcessedSeq,
                Column::QueueName,
                Column::PartitionNo,
            ])
            .from(shared.tables.partition.clone())
            .and_where(Expr::col(Column::QueueName).is_in(shared.queues.keys().cloned()))
            .to_owned();
        let mut deleted = 0;
        for row in shared.db.query_all(&select).await.map_err(err)? {
            let id: i64 = row.try_get("", Column::Id.name()).map_err(err)?;
            let processed: i64 = row.try_get("", Column::ProcessedSeq.name()).map_err(err)?;
            if self
                .vacuumed
                .get(&id)
                .is_some_and(|done| *done >= processed)
            {
                continue;
            }
            let queue: String = row.try_get("", Column::QueueName.name()).map_err(err)?;
            let partition: i32 = row.try_get("", Column::PartitionNo.name()).map_err(err)?;
            let span =
                tracing::debug_span!("outbox.vacuum", queue = %queue, partition, seq = processed);
            deleted += self
                .vacuum_partition(id, processed)
                .instrument(span)
                .await?;
            self.vacuumed.insert(id, processed);
        }
        Ok(deleted)
    }

    async fn vacuum_partition(
        &self,
        partition_id: i64,
        processed: i64,
    ) -> Result<u64, OutboxError> {
        let mut deleted = 0;
        loop {
            let (rows, batch_deleted) = self.vacuum_batch(partition_id, processed).await?;
            deleted += batch_deleted;
            if rows < self.config.vacuum_batch as usize {
                return Ok(deleted);
            }
        }
    }

    /// Deletes one batch of a partition's messages at or below the cursor:
    /// reads their ids, then deletes those rows. A message at or
    /// below the cursor is never read again and nothing else refers to it:
    /// a requeue writes a new row (its own id, `seq` NULL until numbered
    /// above the cursor) after deleting the original's, so the two deletes
    /// can only meet on the same row, and either finds it gone. No row lock
    /// is needed. The delete goes by primary key, in the dialect's worker
    /// transaction (READ COMMITTED on MySQL, so no gap locks). Returns the
    /// rows read and the rows deleted.
    async fn vacuum_batch(
        &self,
        partition_id: i64,
        processed: i64,
    ) -> Result<(usize, u64), OutboxError> {
        let shared = &self.shared;
        let t = &shared.tables;
        let err = |e| shared.db_error(e);
        let select = Query::select()
            .column(Column::Id)
            .from(t.message.clone())
            .and_where(Expr::col(Column::PartitionId).eq(partition_id))
            .and_where(Expr::col(Column::Seq).lte(processed))
            .order_by(Column::Seq, Order::Asc)
            .limit(u64::from(self.config.vacuum_batch))
            .to_owned();
        let rows = shared.db.query_all(&select).await.map_err(err)?;
        if rows.is_empty() {
            return Ok((0, 0));
        }
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get::<i64>("", Column::Id.name()).map_err(err)?);
        }
        // By primary key: a range delete over `(partition_id, seq)` locks
        // that index from where producers' new rows (NULL `seq`, first in
        // it) go, and InnoDB deadlocked it with their inserts.
        let delete = Query::delete()
            .from_table(t.message.clone())
            .and_where(Expr::col(Column::Id).is_in(ids))
            .to_owned();
        let txn = shared.begin_worker().await?;
        let deleted = txn.execute(&delete).await.map_err(err)?.rows_affected();
        txn.commit().await.map_err(err)?;
        Ok((rows.len(), deleted))
    }
}
