//! The SQLite backend of the outbox: one [`Dialect`](outbox_core::Dialect)
//! implementation, [`SqliteDialect`], and nothing else; every worker and API
//! lives in `outbox-core`.
//!
//! | what | value |
//! |---|---|
//! | isolation | serializable: one writer; worker transactions begin with `BEGIN IMMEDIATE` |
//! | partition lock | none: the database's single writer lock serializes workers |
//! | wakeups | in-process after commit, plus polling |
//! | handler timeout | in the process only: a transactional handler's statements never wait for another transaction (its worker transaction holds the write lock) |
//! | minimum version | SQLite 3.35 |
//! | statement limits | 32,766 bind parameters; multi-row inserts are split to fit |
//! | known limits | one process; use a database file (an in-memory database is one per connection), WAL is switched on at start, writers wait up to the connection's busy timeout (sqlx default 5 s; raise it with `ConnectOptions::map_sqlx_sqlite_opts`); begin your own transactions that read before they write with `BEGIN IMMEDIATE` (`Outbox::transaction` does), or they fail at once with "database is locked"; a transactional handler holds the write lock while it runs |
//!
//! ```no_run
//! # async fn example(db: outbox_core::DatabaseConnection) -> Result<(), outbox_core::OutboxError> {
//! use outbox_core::{Outbox, OutboxSchema, Queue};
//! use outbox_sqlite::SqliteDialect;
//! OutboxSchema::new(SqliteDialect).migrate(&db).await?;
//! let handle = Outbox::builder(db, SqliteDialect)
//!     .queue(Queue::produce_only("orders", 8))
//!     .start()
//!     .await?;
//! # handle.stop().await;
//! # Ok(()) }
//! ```

mod dialect;
mod error_codes;

pub use dialect::SqliteDialect;
