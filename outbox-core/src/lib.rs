//! A transactional outbox for [sea-orm]: write your rows and the messages that
//! announce them in one transaction; the outbox delivers every committed
//! message to a handler, in order per partition, and never loses one.
//!
//! # Quick start (SQLite, no server)
//!
//! ```no_run
//! use outbox_core::prelude::*;
//! # use outbox_core::dialect::Dialect;
//! # async fn example(db: sea_orm::DatabaseConnection, dialect: impl Dialect + Clone) -> Result<(), Box<dyn std::error::Error>> {
//! struct Print;
//! #[async_trait::async_trait]
//! impl LeasedHandler for Print {
//!     async fn handle(&self, batch: &Batch) -> BatchResult {
//!         for message in &batch.messages {
//!             println!("{} #{}: {}", batch.queue, message.seq, message.payload_type);
//!         }
//!         BatchResult::success()
//!     }
//! }
//!
//! // `dialect` is outbox_sqlite::SqliteDialect, outbox_postgres::PostgresDialect
//! // or outbox_mysql::MySqlDialect.
//! OutboxSchema::new(dialect.clone()).migrate(&db).await?;
//! let handle = Outbox::builder(db.clone(), dialect)
//!     .queue(Queue::leased("orders", 4, Print))
//!     .start()
//!     .await?;
//! handle
//!     .outbox()
//!     .transaction(|tx| {
//!         Box::pin(async move {
//!             // ... write your business rows with `tx` ...
//!             tx.enqueue("orders", "customer-7", Message::new("OrderPlaced", b"{}".to_vec())).await
//!         })
//!     })
//!     .await?;
//! handle.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! Each is proven by a case of the conformance suite in `tests/src/cases`, run
//! against SQLite, PostgreSQL and MariaDB/MySQL:
//!
//! 1. **Atomic enqueue**: a message exists iff its transaction committed
//!    (`rollback_leaves_no_message`).
//! 2. **No loss**: every committed message is delivered or dead-lettered
//!    (`no_loss_across_ten_thousand_messages`, `stop_then_restart_resumes_without_redelivery`).
//! 3. **Order per partition** (`order_per_partition_with_four_producers`,
//!    `retry_then_success_keeps_order`).
//! 4. **Transactional mode: exactly once within the database**
//!    (`transactional_handler_writes_commit_exactly_once`,
//!    `two_instances_share_partitions_without_duplicates`).
//! 5. **Leased mode: at least once, with fencing**
//!    (`leased_redelivers_after_lease_expiry_and_refuses_stale_ack`).
//! 6. **Bounded storage** (`vacuum_removes_processed_rows`).
//!
//! # Backends
//!
//! | backend | crate | minimum version |
//! |---|---|---|
//! | PostgreSQL | `outbox-postgres` | 12 |
//! | MySQL / MariaDB | `outbox-mysql` | 8.0.1 / 10.6 |
//! | SQLite | `outbox-sqlite` | 3.35 |
//!
//! # Where things are
//!
//! The types every user meets are at the root ([`Outbox`], [`OutboxHandle`],
//! [`Message`], [`PartitionKey`], [`OutboxError`] and its [`ConfigError`],
//! [`OutboxSchema`], and [`connect`] to open the pool) and in [`prelude`]. The rest is grouped as the guide reads: [`config`] (the
//! builder, queues, profiles, retry), [`handler`] (handler traits, what they
//! receive and return), [`admin`] (dead letters, stats, instances),
//! [`events`], [`dialect`] (what a backend crate implements) and [`trace`].
//!
//! [sea-orm]: https://www.sea-ql.org/SeaORM/

mod builder;
mod column;
mod connect;
mod dead_letter;
pub mod dialect;
mod error;
mod event;
mod handle;
pub mod handler;
mod instance;
mod message;
pub mod metric;
mod migration;
mod next_seq;
mod outbox;
mod outbox_admin;
mod partition;
mod profile;
mod queue;
mod reason;
mod redact;
mod repartition;
mod retry;
mod statement_limits;
mod stats;
mod table;
mod trace_context;
mod transaction;
mod wakeup;
mod worker;

// The public surface, grouped as the guide reads: the types every user
// meets at the root, the rest in `admin`, `config`, `events`, `handler`,
// `dialect` and `trace`, and the everyday ones again in `prelude`.
pub use connect::{DEFAULT_CONNECT_TIMEOUT, connect, connect_with};
pub use error::{ConfigError, DbErrorKind, OutboxError};
pub use handle::OutboxHandle;
pub use message::Message;
pub use migration::OutboxSchema;
pub use outbox::Outbox;
pub use partition::PartitionKey;
pub use redact::{redact_secrets, redact_url};
pub use transaction::OutboxTransaction;

/// Administration: dead letters (list, requeue, discard), stats of queues
/// and partitions, and the live instances, through [`OutboxAdmin`]
/// (from [`OutboxHandle::admin`] or on a bare connection).
pub mod admin {
    pub use crate::dead_letter::{
        DeadLetter, DeadLetterList, DeadLetterPage, DeadLetterScope, DeadLetterStatus,
        DeadLetterSummary, DeadLetters, MAX_DEAD_LETTER_BATCH, Requeued,
    };
    pub use crate::instance::InstanceInfo;
    pub use crate::outbox_admin::OutboxAdmin;
    pub use crate::stats::{DeadLetterCounts, OutboxStats, PartitionStats, QueueStats};
}

/// Building and configuring an outbox: the builder, queues, worker
/// profiles, the retry policy and the limits they are checked against.
pub mod config {
    pub use crate::builder::{DEFAULT_PROCESSOR_CONNECTIONS, OutboxBuilder};
    pub use crate::profile::Profile;
    pub use crate::queue::{MAX_PARTITIONS, MAX_QUEUE_NAME_LEN, Queue};
    pub use crate::retry::RetryPolicy;
    pub use crate::table::DEFAULT_TABLE_PREFIX;
}

/// Lifecycle events: a lossy, in-process broadcast for dashboards and tests
/// ([`OutboxHandle::events`]).
pub mod events {
    pub use crate::event::{Event, EventFilter, EventKind, EventStream};
}

/// The everyday types, for a glob import:
/// `use outbox_core::prelude::*;`.
pub mod prelude {
    pub use crate::config::{OutboxBuilder, Queue, RetryPolicy};
    pub use crate::handler::{
        Batch, BatchResult, Delivery, LeasedHandler, LeasedMessageHandler, Outcome,
        TransactionalHandler, TransactionalMessageHandler,
    };
    pub use crate::{
        Message, Outbox, OutboxError, OutboxHandle, OutboxSchema, OutboxTransaction, PartitionKey,
    };
}

/// Trace context carried from the producer to the handler through headers.
pub mod trace {
    #[cfg(feature = "opentelemetry")]
    pub use crate::trace_context::W3cTraceContext;
    pub use crate::trace_context::{TRACEPARENT_HEADER, TRACESTATE_HEADER, TracePropagator};
}

// The flat paths of 0.1, kept so that existing code compiles; the modules
// above are where the documentation lists them.
#[doc(hidden)]
pub use admin::OutboxAdmin;
#[doc(hidden)]
pub use config::{
    DEFAULT_PROCESSOR_CONNECTIONS, DEFAULT_TABLE_PREFIX, MAX_PARTITIONS, MAX_QUEUE_NAME_LEN,
    OutboxBuilder, Profile, Queue, RetryPolicy,
};
#[doc(hidden)]
pub use dead_letter::{
    DeadLetter, DeadLetterList, DeadLetterPage, DeadLetterScope, DeadLetterStatus,
    DeadLetterSummary, DeadLetters, MAX_DEAD_LETTER_BATCH, Requeued,
};
#[doc(hidden)]
pub use dialect::{ColumnKind, Dialect, TimeoutStatements};
#[doc(hidden)]
pub use events::{Event, EventFilter, EventKind, EventStream};
#[doc(hidden)]
pub use handler::{
    BatchResult, EachMessage, LeasedHandler, LeasedMessageHandler, Outcome, TransactionalHandler,
    TransactionalMessageHandler,
};
#[doc(hidden)]
pub use instance::InstanceInfo;
#[doc(hidden)]
pub use message::{Batch, Delivery};
#[doc(hidden)]
pub use partition::fnv1a_64;
#[doc(hidden)]
pub use statement_limits::StatementLimits;
#[doc(hidden)]
pub use stats::{DeadLetterCounts, OutboxStats, PartitionStats, QueueStats};
#[doc(hidden)]
pub use trace::*;
#[doc(hidden)]
pub use wakeup::{WakeupListener, channel as wakeup_channel};
#[cfg(feature = "testing")]
pub use worker::leased::Lease;

pub use sea_orm;
pub use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionError};
