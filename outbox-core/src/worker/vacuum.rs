//! Vacuum: deletes outgoing and body rows at or below each partition's
//! cursor, in bounded batches, only where the cursor moved since last time.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, Statement};
use tracing::Instrument;

use crate::error::OutboxError;
use crate::outbox::Shared;
use crate::worker::{Shutdown, WorkerConfig, error_backoff};

/// The vacuum of one outbox instance.
pub(crate) struct Vacuum {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: WorkerConfig,
    pub(crate) shutdown: Shutdown,
    /// Partition row id → cursor up to which rows are already deleted.
    pub(crate) vacuumed: HashMap<i64, i64>,
}

impl Vacuum {
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
            .columns(["id", "processed_seq", "queue_name", "partition_no"])
            .from(shared.tables.partition.clone())
            .and_where(Expr::col("queue_name").is_in(shared.queues.keys().cloned()))
            .to_owned();
        let mut deleted = 0;
        for row in shared.db.query_all(&select).await.map_err(err)? {
            let id: i64 = row.try_get("", "id").map_err(err)?;
            let processed: i64 = row.try_get("", "processed_seq").map_err(err)?;
            if self
                .vacuumed
                .get(&id)
                .is_some_and(|done| *done >= processed)
            {
                continue;
            }
            let queue: String = row.try_get("", "queue_name").map_err(err)?;
            let partition: i32 = row.try_get("", "partition_no").map_err(err)?;
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
        let shared = &self.shared;
        let t = &shared.tables;
        let err = |e| shared.db_error(e);
        let mut deleted = 0;
        loop {
            let select = Query::select()
                .column("seq")
                .from(t.outgoing.clone())
                .and_where(Expr::col("partition_id").eq(partition_id))
                .and_where(Expr::col("seq").lte(processed))
                .order_by("seq", Order::Asc)
                .limit(u64::from(self.config.vacuum_batch))
                .to_owned();
            let rows = shared.db.query_all(&select).await.map_err(err)?;
            let Some(last) = rows.last() else {
                return Ok(deleted);
            };
            let last_seq: i64 = last.try_get("", "seq").map_err(err)?;
            // Bodies first: a crash between the two statements leaves outgoing
            // rows below the cursor, which nothing reads and the next pass
            // deletes. The bodies are chosen by a subquery on outgoing in the
            // same statement, not by ids read before: a dead letter requeued
            // meanwhile deletes its old outgoing row and writes a new body
            // with the same id in one transaction, and this statement then
            // either sees the old row (and deletes the old body, which the
            // requeue replaces) or does not see it (and leaves the new body).
            let backend = shared.dialect.backend();
            let bodies = match shared
                .dialect
                .vacuum_bodies_sql(&t.name("body"), &t.name("outgoing"))
            {
                Some(sql) => Statement::from_sql_and_values(
                    backend,
                    sql,
                    [partition_id.into(), last_seq.into()],
                ),
                None => {
                    let old_rows = Query::select()
                        .column("message_id")
                        .from(t.outgoing.clone())
                        .and_where(Expr::col("partition_id").eq(partition_id))
                        .and_where(Expr::col("seq").lte(last_seq))
                        .to_owned();
                    backend.build(
                        &Query::delete()
                            .from_table(t.body.clone())
                            .and_where(Expr::col("message_id").in_subquery(old_rows))
                            .to_owned(),
                    )
                }
            };
            shared.db.execute_raw(bodies).await.map_err(err)?;
            let outgoing = Query::delete()
                .from_table(t.outgoing.clone())
                .and_where(Expr::col("partition_id").eq(partition_id))
                .and_where(Expr::col("seq").lte(last_seq))
                .to_owned();
            deleted += shared
                .db
                .execute(&outgoing)
                .await
                .map_err(err)?
                .rows_affected();
            if rows.len() < self.config.vacuum_batch as usize {
                return Ok(deleted);
            }
        }
    }
}
