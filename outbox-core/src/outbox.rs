//! The producer side: enqueue inside the caller's transaction, then wake the workers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

use crate::column::Column;
use crate::dialect::Dialect;
use crate::error::{DbErrorKind, OutboxError};
use crate::message::Message;
use crate::partition::PartitionKey;
use crate::queue::Queue;
use crate::statement_limits::{ROWS_PER_STATEMENT, statement_chunks};
use crate::table::Tables;

/// A registered queue and the database ids of its partition rows.
pub(crate) struct QueueRuntime {
    pub(crate) config: Queue,
    /// `partition_ids[n]` is the row id of partition `n`.
    pub(crate) partition_ids: Vec<i64>,
}

/// State shared by the producer API and every worker of one outbox instance.
pub(crate) struct Shared {
    pub(crate) db: DatabaseConnection,
    pub(crate) dialect: Arc<dyn Dialect>,
    pub(crate) tables: Tables,
    pub(crate) queues: HashMap<String, QueueRuntime>,
    pub(crate) max_payload_bytes: usize,
    pub(crate) sequencer_wake: Notify,
    /// Set once a listener relays other processes' notifications: the
    /// sequencer then needs no quick polls after activity.
    pub(crate) listening: std::sync::atomic::AtomicBool,
    /// Producer-only instances on a backend with notifications tell other
    /// instances' sequencers about each enqueue, inside the transaction.
    pub(crate) notify_on_enqueue: Option<sea_orm::Statement>,
    /// One waker per partition row this instance processes.
    pub(crate) partition_wakers: HashMap<i64, Arc<Notify>>,
    /// Partition row id → (queue, partition number), for every registered queue.
    pub(crate) partition_names: HashMap<i64, (String, u32)>,
    /// Live instances and the leases this one holds, per queue.
    pub(crate) ownership: crate::worker::ownership::Ownership,
    /// Lifecycle event subscribers.
    pub(crate) events: crate::event::EventHub,
    /// Metric handles per queue.
    pub(crate) metrics: crate::metric::Metrics,
    /// Carries trace context from enqueue to the handler's span, if set.
    pub(crate) trace: Option<Arc<dyn crate::trace_context::TracePropagator>>,
    /// Turns for processors to use a connection (see
    /// [`OutboxBuilder::processor_connections`](crate::OutboxBuilder::processor_connections)).
    pub(crate) processor_permits: tokio::sync::Semaphore,
}

impl Shared {
    /// Waits for a processor's turn to use a connection. The semaphore is
    /// never closed, so the permit is only absent if it were.
    pub(crate) async fn processor_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.processor_permits.acquire().await.ok()
    }

    pub(crate) fn db_error(&self, err: sea_orm::DbErr) -> OutboxError {
        crate::error::classify::db_error(self.dialect.as_ref(), err)
    }

    /// Begins a worker transaction that carries a handler's writes: it
    /// commits durably.
    pub(crate) async fn begin_worker(&self) -> Result<DatabaseTransaction, OutboxError> {
        self.db
            .begin_with_options(self.dialect.worker_transaction())
            .await
            .map_err(|e| self.db_error(e))
    }

    /// Begins a sequencer pass's transaction, whose loss in a crash only
    /// means work is done again: where the dialect allows, it commits
    /// without waiting for its log flush. Any later durable commit flushes
    /// it anyway, and every acknowledgement of a message it sequenced is
    /// such a commit. Lease takes and acknowledgements are durable: fencing
    /// rests on them. The dialect's settings for a pass go in the same round
    /// trip (a pass at B = 1 is one message's).
    pub(crate) async fn begin_sequencing(&self) -> Result<DatabaseTransaction, OutboxError> {
        let txn = self.begin_worker().await?;
        let settings: Vec<&str> = [
            self.dialect.relaxed_commit(),
            self.dialect.sequencer_settings(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !settings.is_empty() {
            txn.execute_unprepared(&settings.join("; "))
                .await
                .map_err(|e| self.db_error(e))?;
        }
        Ok(txn)
    }
}

/// The notification a producer-only instance sends with each enqueue.
pub(crate) fn notify_on_enqueue(
    dialect: &dyn Dialect,
    prefix: &str,
    run_workers: bool,
) -> Option<sea_orm::Statement> {
    if run_workers {
        return None;
    }
    let sql = dialect.notify_sql()?;
    Some(sea_orm::Statement::from_sql_and_values(
        dialect.backend(),
        sql,
        [crate::wakeup::channel(prefix).into(), "i".into()],
    ))
}

/// The producer API: enqueue messages inside your own transactions.
///
/// Cheap to clone; get one from [`OutboxHandle::outbox`](crate::OutboxHandle::outbox).
#[derive(Clone)]
pub struct Outbox {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dialect", &self.shared.dialect.name())
            .field("prefix", &self.shared.tables.prefix)
            .field("queues", &self.shared.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Outbox {
    /// Enqueues one message in `conn`'s transaction (or on its own, given a
    /// plain connection). The message exists if and only if that transaction
    /// commits. Returns the message id.
    ///
    /// After committing, call [`Outbox::notify`] (or use
    /// [`Outbox::transaction`]) so the sequencer picks the message up at once
    /// rather than at its next poll.
    ///
    /// # Errors
    /// [`OutboxError::UnknownQueue`], [`OutboxError::PartitionOutOfRange`],
    /// [`OutboxError::PayloadTooLarge`], [`OutboxError::InvalidHeader`],
    /// [`OutboxError::InvalidPayloadType`] before anything is written;
    /// [`OutboxError::DuplicateMessageId`] or [`OutboxError::Database`] from
    /// the insert (the caller's transaction should then be rolled back).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future may leave the statement half done
    /// in the caller's transaction; roll that transaction back.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        queue: &str,
        key: impl Into<PartitionKey>,
        message: Message,
    ) -> Result<Uuid, OutboxError> {
        let ids = self
            .enqueue_batch(conn, queue, [(key.into(), message)])
            .await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| OutboxError::internal("enqueue wrote no message"))
    }

    /// Enqueues several messages to one queue with one multi-row INSERT
    /// (per 1,000 messages, or fewer where large payloads would exceed
    /// the backend's statement size). Messages to one partition keep the order
    /// they have here. Returns their ids in the same order.
    ///
    /// # Errors
    /// As [`Outbox::enqueue`]; every message is checked before anything is
    /// written, so a bad one leaves the transaction untouched.
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Outbox::enqueue`].
    pub async fn enqueue_batch<C, I, K>(
        &self,
        conn: &C,
        queue: &str,
        messages: I,
    ) -> Result<Vec<Uuid>, OutboxError>
    where
        C: ConnectionTrait,
        I: IntoIterator<Item = (K, Message)>,
        K: Into<PartitionKey>,
    {
        let shared = &self.shared;
        let runtime = shared
            .queues
            .get(queue)
            .ok_or_else(|| OutboxError::UnknownQueue {
                queue: queue.to_owned(),
            })?;
        let partitions = runtime.config.partitions;

        let mut rows = Vec::new();
        let mut given_ids = HashSet::new();
        // Every message of one call is enqueued in the same span: its trace
        // context is read once, not once per message.
        let trace_headers = shared.trace.as_ref().map(|trace| {
            let mut headers = std::collections::BTreeMap::new();
            trace.inject(&mut headers);
            headers
        });
        for (key, mut message) in messages {
            if let Some(trace_headers) = &trace_headers
                && !message.headers.contains_key(crate::TRACEPARENT_HEADER)
            {
                message.headers.extend(trace_headers.clone());
            }
            let partition = key.into().resolve(partitions);
            let partition_id = *runtime
                .partition_ids
                .get(partition as usize)
                .ok_or_else(|| OutboxError::PartitionOutOfRange {
                    queue: queue.to_owned(),
                    partition,
                    partitions,
                })?;
            message.validate(shared.max_payload_bytes)?;
            if let Some(id) = message.message_id
                && !given_ids.insert(id)
            {
                return Err(OutboxError::DuplicateMessageId { message_id: id });
            }
            let id = message.message_id.unwrap_or_else(Uuid::now_v7);
            let headers = serde_json::to_string(&message.headers).map_err(OutboxError::Json)?;
            rows.push((id, partition_id, message, headers));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }

        let span = tracing::debug_span!("outbox.enqueue", queue, count = rows.len());
        async {
            // Within the backend's parameter and packet limits: many
            // messages, or a few large ones, take several statements.
            let chunks = statement_chunks(
                &rows,
                shared.dialect.statement_limits(),
                ROWS_PER_STATEMENT,
                6,
                |(_, _, message, headers)| {
                    message.payload.len() + message.payload_type.len() + headers.len()
                },
            );
            for chunk in chunks {
                // One row per message, `seq` NULL until the sequencer numbers it.
                let mut insert = Query::insert();
                insert.into_table(shared.tables.message.clone()).columns([
                    Column::PartitionId,
                    Column::MessageId,
                    Column::Payload,
                    Column::PayloadType,
                    Column::Headers,
                    Column::CreatedAt,
                ]);
                for (id, partition_id, message, headers) in chunk {
                    insert
                        .values([
                            Expr::val(*partition_id),
                            Expr::val(id.as_bytes().to_vec()),
                            Expr::val(message.payload.clone()),
                            Expr::val(message.payload_type.clone()),
                            Expr::val(headers.clone()),
                            shared.dialect.now_millis(),
                        ])
                        .map_err(OutboxError::internal)?;
                }
                conn.execute(&insert)
                    .await
                    .map_err(|err| self.insert_error(err, &given_ids))?;
            }
            if let Some(notify) = &shared.notify_on_enqueue {
                conn.execute_raw(notify.clone())
                    .await
                    .map_err(|e| shared.db_error(e))?;
            }
            shared.metrics.enqueued(queue, rows.len());
            Ok(rows.iter().map(|(id, ..)| *id).collect())
        }
        .instrument(span)
        .await
    }

    fn insert_error(&self, err: sea_orm::DbErr, given_ids: &HashSet<Uuid>) -> OutboxError {
        let err = self.shared.db_error(err);
        match err {
            OutboxError::Database {
                kind: DbErrorKind::UniqueViolation,
                ..
            } if given_ids.len() == 1 => OutboxError::DuplicateMessageId {
                message_id: given_ids.iter().copied().next().unwrap_or_default(),
            },
            other => other,
        }
    }
    /// Wakes the sequencer. Call it after committing a transaction that
    /// enqueued, never before: woken early it would find nothing and sleep
    /// until its next poll.
    pub fn notify(&self) {
        self.shared.sequencer_wake.notify_one();
    }

    /// The names of the registered queues.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.shared.queues.keys().map(String::as_str)
    }
}
