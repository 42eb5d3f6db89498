//! The sequencer: moves committed incoming rows to outgoing, giving each a
//! dense per-partition sequence number, one transaction per pass.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, CaseStatement, Expr, ExprTrait, LockBehavior, Order, Query};
use tracing::Instrument;

use crate::error::OutboxError;
use crate::outbox::{ROWS_PER_STATEMENT, Shared};
use crate::worker::{Shutdown, WorkerConfig, error_backoff};

/// What one sequencer pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Sequenced this many messages.
    Sequenced(usize),
    /// Incoming rows exist but every partition they belong to is held by
    /// another sequencer.
    Contended,
    /// Nothing waiting.
    Empty,
}

/// The sequencer of one outbox instance.
pub(crate) struct Sequencer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: WorkerConfig,
    pub(crate) shutdown: Shutdown,
}

impl Sequencer {
    /// Runs until stop. Woken after commits; polls every `poll_interval`, and
    /// on each poll also wakes the processors of partitions with work (which
    /// covers messages sequenced by other instances and lost wakeups).
    pub(crate) async fn run(mut self) {
        let mut errors = 0;
        while !self.shutdown.is_set() {
            match self.run_once().await {
                Ok(Pass::Sequenced(n)) => {
                    errors = 0;
                    if n < self.config.sequencer_batch as usize {
                        self.idle().await;
                    }
                }
                Ok(Pass::Contended) => {
                    errors = 0;
                    self.shutdown.sleep(Duration::from_millis(5)).await;
                }
                Ok(Pass::Empty) => {
                    errors = 0;
                    self.idle().await;
                }
                Err(err) => {
                    errors += 1;
                    tracing::warn!(error = %err, "outbox sequencer pass failed");
                    self.shutdown.sleep(error_backoff(errors)).await;
                }
            }
        }
    }

    /// Waits for a wakeup or the poll interval; on a poll, wakes processors
    /// whose partitions have sequenced messages waiting.
    async fn idle(&mut self) {
        let shared = self.shared.clone();
        let polled = tokio::select! {
            () = shared.sequencer_wake.notified() => false,
            () = tokio::time::sleep(self.config.poll_interval) => true,
            () = self.shutdown.wait() => false,
        };
        if polled && let Err(err) = wake_partitions_with_work(&shared).await {
            tracing::warn!(error = %err, "outbox poll for pending partitions failed");
        }
    }

    /// One pass: claim the oldest incoming rows, lock their partitions (skip
    /// those held elsewhere), number the rows, move them, commit, then wake
    /// the processors of the partitions filled.
    pub(crate) async fn run_once(&self) -> Result<Pass, OutboxError> {
        let span = tracing::debug_span!("outbox.sequence", count = tracing::field::Empty);
        async {
            let filled = self.sequence_batch().await?;
            match &filled {
                Pass::Sequenced(n) => tracing::Span::current().record("count", n),
                _ => tracing::Span::current().record("count", 0),
            };
            Ok(filled)
        }
        .instrument(span)
        .await
    }

    async fn sequence_batch(&self) -> Result<Pass, OutboxError> {
        let shared = &self.shared;
        let t = &shared.tables;
        let limit = u64::from(self.config.sequencer_batch);
        let err = |e| shared.db_error(e);
        let txn = shared.begin_bookkeeping().await?;

        // 1. Which partitions the oldest waiting rows belong to.
        let candidates = Query::select()
            .column("partition_id")
            .from(t.incoming.clone())
            .order_by("id", Order::Asc)
            .limit(limit)
            .to_owned();
        let mut partitions: Vec<i64> = Vec::new();
        let mut seen = HashSet::new();
        for row in txn.query_all(&candidates).await.map_err(err)? {
            let id: i64 = row.try_get("", "partition_id").map_err(err)?;
            if seen.insert(id) {
                partitions.push(id);
            }
        }
        if partitions.is_empty() {
            txn.commit().await.map_err(err)?;
            return Ok(Pass::Empty);
        }

        // 2. Lock those partition rows; one held by another sequencer is
        //    skipped whole, never some of its rows.
        let mut lock = Query::select();
        lock.columns(["id", "next_seq"])
            .from(t.partition.clone())
            .and_where(Expr::col("id").is_in(partitions.iter().copied()))
            .order_by("id", Order::Asc);
        if let Some(lock_type) = shared.dialect.partition_lock() {
            lock.lock_with_behavior(lock_type, LockBehavior::SkipLocked);
        }
        let mut next_seq: BTreeMap<i64, i64> = BTreeMap::new();
        for row in txn.query_all(&lock).await.map_err(err)? {
            next_seq.insert(
                row.try_get("", "id").map_err(err)?,
                row.try_get("", "next_seq").map_err(err)?,
            );
        }
        if next_seq.is_empty() {
            txn.rollback().await.map_err(err)?;
            return Ok(Pass::Contended);
        }

        // 3. Read the locked partitions' rows in id order: committed rows only,
        //    so a row committed late is simply taken by a later pass.
        let rows = Query::select()
            .columns(["id", "partition_id", "message_id"])
            .from(t.incoming.clone())
            .and_where(Expr::col("partition_id").is_in(next_seq.keys().copied()))
            .order_by("id", Order::Asc)
            .limit(limit)
            .to_owned();
        let mut moved = Vec::new();
        for row in txn.query_all(&rows).await.map_err(err)? {
            let id: i64 = row.try_get("", "id").map_err(err)?;
            let partition_id: i64 = row.try_get("", "partition_id").map_err(err)?;
            let message_id: Vec<u8> = row.try_get("", "message_id").map_err(err)?;
            let Some(seq) = next_seq.get_mut(&partition_id) else {
                continue;
            };
            moved.push((id, partition_id, *seq, message_id));
            *seq += 1;
        }
        if moved.is_empty() {
            txn.commit().await.map_err(err)?;
            return Ok(Pass::Empty);
        }

        // 4. Write outgoing rows, delete the incoming ones, advance counters.
        for chunk in moved.chunks(ROWS_PER_STATEMENT) {
            let mut insert = Query::insert();
            insert
                .into_table(t.outgoing.clone())
                .columns(["partition_id", "seq", "message_id"]);
            for (_, partition_id, seq, message_id) in chunk {
                insert
                    .values([
                        Expr::val(*partition_id),
                        Expr::val(*seq),
                        Expr::val(message_id.clone()),
                    ])
                    .map_err(|e| OutboxError::InvalidConfig(e.to_string()))?;
            }
            txn.execute(&insert).await.map_err(err)?;
            let delete = Query::delete()
                .from_table(t.incoming.clone())
                .and_where(Expr::col("id").is_in(chunk.iter().map(|(id, ..)| *id)))
                .to_owned();
            let deleted = txn.execute(&delete).await.map_err(err)?.rows_affected();
            if deleted != chunk.len() as u64 {
                // Another transaction deleted some of these rows after step 3
                // read them: whoever did owns those messages, and writing
                // their outgoing rows too would deliver them twice. Nothing
                // of this pass is kept; the next pass sees what is left.
                tracing::warn!(
                    read = chunk.len(),
                    deleted,
                    "outbox sequencer found incoming rows taken by another transaction; pass rolled back"
                );
                txn.rollback().await.map_err(err)?;
                return Ok(Pass::Contended);
            }
        }
        let touched: Vec<i64> = moved
            .iter()
            .map(|(_, p, ..)| *p)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut case = CaseStatement::new();
        for partition_id in &touched {
            case = case.case(
                Expr::col("id").eq(*partition_id),
                Expr::val(next_seq[partition_id]),
            );
        }
        let case = case.finally(Expr::col("next_seq"));
        let update = Query::update()
            .table(t.partition.clone())
            .value(Alias::new("next_seq"), case)
            .and_where(Expr::col("id").is_in(touched.iter().copied()))
            .to_owned();
        txn.execute(&update).await.map_err(err)?;
        txn.commit().await.map_err(err)?;

        // 5. Only now, after commit, wake the processors of filled partitions.
        if shared.events.active() {
            shared.events.publish(
                moved
                    .iter()
                    .filter_map(|(_, partition_id, seq, message_id)| {
                        let (queue, partition) = shared.partition_names.get(partition_id)?;
                        Some(crate::Event {
                            kind: crate::EventKind::Sequenced,
                            queue: queue.clone(),
                            partition: *partition,
                            seq: *seq,
                            message_id: uuid::Uuid::from_slice(message_id).ok()?,
                        })
                    }),
            );
        }
        for partition_id in &touched {
            if let Some(wake) = shared.partition_wakers.get(partition_id) {
                wake.notify_one();
            }
        }
        Ok(Pass::Sequenced(moved.len()))
    }
}

/// One statement for all of this instance's partitions: which have sequenced
/// messages beyond their cursor. Wakes their processors.
pub(crate) async fn wake_partitions_with_work(shared: &Shared) -> Result<(), OutboxError> {
    if shared.partition_wakers.is_empty() {
        return Ok(());
    }
    let select = Query::select()
        .column("id")
        .from(shared.tables.partition.clone())
        .and_where(Expr::col("queue_name").is_in(shared.queues.keys().cloned()))
        .and_where(Expr::col("next_seq").sub(1).gt(Expr::col("processed_seq")))
        .to_owned();
    let rows = shared
        .db
        .query_all(&select)
        .await
        .map_err(|e| shared.db_error(e))?;
    for row in rows {
        let id: i64 = row.try_get("", "id").map_err(|e| shared.db_error(e))?;
        if let Some(wake) = shared.partition_wakers.get(&id) {
            wake.notify_one();
        }
    }
    Ok(())
}
