//! The MySQL and MariaDB backend of the outbox: one [`Dialect`](outbox_core::Dialect)
//! implementation, [`MySqlDialect`], and nothing else; every worker and API
//! lives in `outbox-core`.
//!
//! | what | value |
//! |---|---|
//! | isolation | READ COMMITTED for worker transactions (no gap locks), whatever the server default |
//! | partition lock | `FOR UPDATE SKIP LOCKED` on the partition row only; message rows are never skip-locked |
//! | wakeups | in-process after commit, plus polling |
//! | handler timeout | on the server too: the session's `innodb_lock_wait_timeout` (whole seconds) and MariaDB's `max_statement_time` around a transactional handler, restored after it (MySQL bounds lock waits only) |
//! | minimum version | MySQL 8.0.1, MariaDB 10.6 |
//! | statement limits | 65,535 placeholders, and `max_allowed_packet` (16 MiB by default on MariaDB): multi-row inserts are split at 8 MiB of data; one message must fit the packet |
//! | known limits | indexes are declared inside `CREATE TABLE` (MySQL has no `CREATE INDEX IF NOT EXISTS`) ; on Galera or multi-primary group replication, row locks are per node: run every instance against one writer node (`start()` warns when `wsrep_on=ON`) |
//!
//! ```no_run
//! # async fn example(db: outbox_core::DatabaseConnection) -> Result<(), outbox_core::OutboxError> {
//! use outbox_core::{Outbox, OutboxSchema, Queue};
//! use outbox_mysql::MySqlDialect;
//! OutboxSchema::new(MySqlDialect).migrate(&db).await?;
//! let handle = Outbox::builder(db, MySqlDialect)
//!     .queue(Queue::produce_only("orders", 8))
//!     .start()
//!     .await?;
//! # handle.stop().await;
//! # Ok(()) }
//! ```

mod dialect;
mod error_codes;

pub use dialect::MySqlDialect;
