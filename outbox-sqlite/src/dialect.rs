//! The SQLite dialect.

use std::time::Duration;

use outbox_core::sea_orm;
use outbox_core::{
    ColumnKind, DbErrorKind, Dialect, StatementLimits, TimeoutStatements, WakeupListener,
};
use sea_orm::sea_query::{ColumnType, Expr, LockType, StringLen};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, SqliteTransactionMode, TransactionOptions};

use crate::error_codes;

/// The outbox dialect for SQLite: hand it to `Outbox::builder` and
/// `OutboxSchema::new`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteDialect;

#[async_trait::async_trait]
impl Dialect for SqliteDialect {
    fn backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn column_type(&self, kind: ColumnKind) -> ColumnType {
        match kind {
            ColumnKind::BigInt => ColumnType::BigInteger,
            ColumnKind::Int => ColumnType::Integer,
            ColumnKind::Name => ColumnType::String(StringLen::N(128)),
            ColumnKind::Text => ColumnType::Text,
            ColumnKind::Bytes | ColumnKind::MessageId => ColumnType::Blob,
            _ => ColumnType::Text,
        }
    }

    fn indexes_inline(&self) -> bool {
        false
    }

    fn partial_indexes(&self) -> bool {
        true
    }

    fn worker_transaction(&self) -> TransactionOptions {
        TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        }
    }

    fn partition_lock(&self) -> Option<LockType> {
        None
    }

    fn now_millis(&self) -> Expr {
        Expr::cust("CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")
    }

    fn classify(&self, code: Option<&str>, message: &str) -> DbErrorKind {
        error_codes::classify(code, message)
    }

    fn relaxed_commit(&self) -> Option<&'static str> {
        None
    }

    fn handler_timeout_statements(&self, _timeout: Duration) -> Option<TimeoutStatements> {
        // The worker transaction begins IMMEDIATE: it holds the single write
        // lock before the handler runs, so the handler's statements never
        // wait for another transaction (the wait is at BEGIN, bounded by
        // the connection's busy timeout).
        None
    }

    /// SQLite allows 32,766 bind parameters since 3.32
    /// (`SQLITE_MAX_VARIABLE_NUMBER`); values are bound in process, so the
    /// byte budget only keeps statements reasonable.
    fn statement_limits(&self) -> StatementLimits {
        StatementLimits::new(32_766, 256 * 1024 * 1024)
    }

    fn startup_statements(&self) -> &'static [&'static str] {
        &["PRAGMA journal_mode=WAL"]
    }

    fn multi_primary_probe(&self) -> Option<&'static str> {
        None
    }

    fn notify_sql(&self) -> Option<&'static str> {
        None
    }

    fn wakeup_schema(&self, _prefix: &str, _channel: &str) -> Vec<String> {
        Vec::new()
    }

    fn drop_wakeup_schema(&self, _prefix: &str) -> Vec<String> {
        Vec::new()
    }

    async fn listen(
        &self,
        _db: &DatabaseConnection,
        _channel: &str,
    ) -> Result<Option<Box<dyn WakeupListener>>, DbErr> {
        Ok(None)
    }
}
