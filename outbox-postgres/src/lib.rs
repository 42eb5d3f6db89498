//! The PostgreSQL backend of the outbox: one [`Dialect`](outbox_core::Dialect)
//! implementation, [`PostgresDialect`], and nothing else; every worker and API
//! lives in `outbox-core`.
//!
//! | what | value |
//! |---|---|
//! | isolation | READ COMMITTED (the server default) |
//! | partition lock | `FOR NO KEY UPDATE SKIP LOCKED` (does not block inserts' `KEY SHARE` locks) |
//! | wakeups | in-process after commit; across processes LISTEN/NOTIFY (a trigger on the outgoing table), plus polling |
//! | handler timeout | on the server too: `SET LOCAL statement_timeout` and `lock_timeout` in the transaction of a transactional handler |
//! | minimum version | PostgreSQL 12 |
//! | statement limits | 65,535 bind parameters; multi-row inserts are split to fit |
//! | known limits | none beyond the server's |
//!
//! ```no_run
//! # async fn example(db: outbox_core::DatabaseConnection) -> Result<(), outbox_core::OutboxError> {
//! use outbox_core::{Outbox, OutboxSchema, Queue};
//! use outbox_postgres::PostgresDialect;
//! OutboxSchema::new(PostgresDialect).migrate(&db).await?;
//! let handle = Outbox::builder(db, PostgresDialect)
//!     .queue(Queue::produce_only("orders", 8))
//!     .start()
//!     .await?;
//! # handle.stop().await;
//! # Ok(()) }
//! ```

mod dialect;
mod error_codes;
mod notify;

pub use dialect::PostgresDialect;
