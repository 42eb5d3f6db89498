//! The seam between the backend-independent core and one database backend.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sea_query::{ColumnType, Expr, LockType};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, TransactionOptions};

use crate::error::DbErrorKind;
pub use crate::statement_limits::StatementLimits;
pub use crate::wakeup::{WakeupListener, channel as wakeup_channel};

/// The kinds of column the outbox schema uses; the dialect maps each to its
/// backend's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnKind {
    /// A 64-bit signed integer (ids, sequence numbers, epoch milliseconds).
    BigInt,
    /// A 32-bit signed integer (partition numbers, attempts).
    Int,
    /// A short name (queue names, owners, statuses): up to 128 characters.
    Name,
    /// Unbounded text (errors, JSON headers).
    Text,
    /// Unbounded bytes (payloads).
    Bytes,
    /// A 16-byte message id.
    MessageId,
}

/// Statements that bound a transactional handler's own statements on the
/// server, built by [`Dialect::handler_timeout_statements`].
///
/// Core sends each in one round trip with the handler's savepoint
/// (`set; SAVEPOINT ...` and `RELEASE SAVEPOINT ...; reset`), so each must be
/// valid in a multi-statement simple query and must not return rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutStatements {
    /// Run in the worker transaction right before the handler.
    pub set: String,
    /// Run in the same transaction right after the handler (also after a
    /// failed one), restoring what `set` changed; `None` where the end of
    /// the transaction restores it anyway (PostgreSQL's `SET LOCAL`), which
    /// saves a round trip per batch.
    pub reset: Option<String>,
}

/// What one backend does differently, and nothing else.
///
/// Implemented by `outbox-postgres`, `outbox-mysql` and `outbox-sqlite`. Every
/// worker, policy and API lives once in `outbox-core`; a dialect only names
/// types, lock clauses, transaction modes, the database clock and how to read
/// the backend's errors. Its methods build values; they never loop, sleep,
/// spawn or retry.
#[async_trait]
pub trait Dialect: Send + Sync + Debug + 'static {
    /// The backend this dialect speaks; `start()` refuses a connection to another.
    fn backend(&self) -> DbBackend;

    /// A short, lowercase name for messages and spans (`"postgres"`).
    fn name(&self) -> &'static str;

    /// The SQL type of a schema column of this kind.
    fn column_type(&self, kind: ColumnKind) -> ColumnType;

    /// Whether secondary indexes must be declared inside `CREATE TABLE`
    /// (MySQL has no `CREATE INDEX IF NOT EXISTS`, so a re-run would fail).
    fn indexes_inline(&self) -> bool;

    /// Whether the backend has partial indexes (`CREATE INDEX ... WHERE`).
    /// With them, the index of unsequenced messages holds only those, and
    /// the index of sequence numbers only sequenced ones; without (MySQL),
    /// both index every message, `seq` NULL or not. Defaults to `false`.
    fn partial_indexes(&self) -> bool {
        false
    }

    /// Storage options appended to the message table's `CREATE TABLE`
    /// (PostgreSQL: `WITH (fillfactor = 50)`). A message row is updated once,
    /// right after it is written, when the sequencer numbers it; with room
    /// left on its page the new version stays there, and PostgreSQL then
    /// logs only the bytes that changed rather than the whole row. `None`
    /// (the default) where the backend updates rows in place anyway.
    fn message_table_options(&self) -> Option<&'static str> {
        None
    }

    /// A statement run at the start of each sequencer pass, in its
    /// transaction (PostgreSQL: `SET LOCAL enable_bitmapscan = off`). The
    /// pass reads the oldest unsequenced messages in id order with a
    /// `LIMIT`; with row estimates from before a backlog built up, the
    /// PostgreSQL planner would rather fetch every unsequenced message and
    /// sort them (60,000 rows, 50 ms, measured) than walk the index in id
    /// order. `None` (the default) where no such setting is needed. Sent in
    /// one round trip with [`Dialect::relaxed_commit`], joined by `; `.
    fn sequencer_settings(&self) -> Option<&'static str> {
        None
    }

    /// How worker transactions (sequencing, processing, acknowledging) begin:
    /// READ COMMITTED on MySQL to avoid gap locks, `BEGIN IMMEDIATE` on SQLite
    /// to take the single writer lock up front.
    fn worker_transaction(&self) -> TransactionOptions;

    /// The row lock that serializes workers on a partition row, taken with
    /// `SKIP LOCKED`; `None` where the backend has a single writer instead.
    ///
    /// PostgreSQL must use `FOR NO KEY UPDATE`, which does not conflict with
    /// the `KEY SHARE` locks that inserts referencing the row take.
    fn partition_lock(&self) -> Option<LockType>;

    /// An expression for the database clock in milliseconds since the Unix
    /// epoch; leases and retry times are compared on one clock, the server's.
    fn now_millis(&self) -> Expr;

    /// Classifies a backend error from its code (SQLSTATE, or SQLite's
    /// extended result code) and message.
    fn classify(&self, code: Option<&str>, message: &str) -> DbErrorKind;

    /// A statement that lets the current transaction commit without waiting
    /// for its log flush (PostgreSQL: `SET LOCAL synchronous_commit = off`),
    /// used only for sequencer passes, whose loss in a crash means redoing
    /// work, never losing a message; `None` where the backend has no
    /// per-transaction setting. Sent in one round trip with
    /// [`Dialect::sequencer_settings`], joined by `; `.
    fn relaxed_commit(&self) -> Option<&'static str>;

    /// Statements that make the server cut off any statement of a
    /// transactional handler that runs, or waits for a lock, longer than
    /// `timeout` (PostgreSQL: `SET LOCAL statement_timeout` and
    /// `lock_timeout`; MySQL/MariaDB: the session's `innodb_lock_wait_timeout`
    /// and MariaDB's `max_statement_time`, saved and restored since the
    /// connection is pooled). Without them a statement still waiting when
    /// the handler times out would hold the connection, the transaction and
    /// its locks until it ends on its own. `None` where a handler's
    /// statements cannot wait on another transaction (SQLite: the worker
    /// transaction already holds the single write lock).
    fn handler_timeout_statements(&self, timeout: Duration) -> Option<TimeoutStatements>;

    /// The most one statement may carry: bind parameters and bytes. The
    /// outbox splits its multi-row statements to stay within both.
    fn statement_limits(&self) -> StatementLimits;

    /// Statements run once when the outbox starts (SQLite: WAL journal).
    fn startup_statements(&self) -> &'static [&'static str];

    /// A query run at start that returns one row (`Variable_name`, `Value`)
    /// for each server setting saying this server is one of several
    /// primaries whose row locks do not see each other (MySQL/MariaDB:
    /// Galera's `wsrep_on=ON`, group replication's
    /// `group_replication_single_primary_mode=OFF`); `start()` logs a
    /// warning for each. `None` where the backend has no such mode.
    fn multi_primary_probe(&self) -> Option<&'static str>;

    /// A statement that sends a notification inside the current transaction,
    /// delivered on commit, with the channel bound as the first parameter and
    /// the payload as the second (PostgreSQL: `SELECT pg_notify($1, $2)`);
    /// `None` where the backend has no notifications.
    fn notify_sql(&self) -> Option<&'static str>;

    /// Extra DDL, after the tables, that makes committed writes notify
    /// other processes (PostgreSQL: statement triggers calling `pg_notify`
    /// on `channel` with the payloads the `wakeup` module documents: `p<id>,<id>,...` or `p*`). Empty
    /// where the backend has no notifications. Each statement must be safe
    /// to re-run.
    fn wakeup_schema(&self, prefix: &str, channel: &str) -> Vec<String>;

    /// DDL that removes what [`Dialect::wakeup_schema`] created, for
    /// dropping the schema (PostgreSQL: the trigger functions; the triggers
    /// go with their tables).
    fn drop_wakeup_schema(&self, prefix: &str) -> Vec<String>;

    /// Opens a listener on `channel`, or `None` where the backend has no
    /// notifications and workers rely on in-process wakeups and polling.
    async fn listen(
        &self,
        db: &DatabaseConnection,
        channel: &str,
    ) -> Result<Option<Box<dyn WakeupListener>>, DbErr>;
}
