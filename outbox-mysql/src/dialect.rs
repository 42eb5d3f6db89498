//! The MySQL and MariaDB dialect.

use outbox_core::sea_orm;
use outbox_core::{ColumnKind, DbErrorKind, Dialect, StatementLimits, WakeupListener};
use sea_orm::sea_query::{ColumnType, Expr, LockType, StringLen};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, IsolationLevel, TransactionOptions};

use crate::error_codes;

/// The outbox dialect for MySQL and MariaDB: hand it to `Outbox::builder` and
/// `OutboxSchema::new`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MySqlDialect;

#[async_trait::async_trait]
impl Dialect for MySqlDialect {
    fn backend(&self) -> DbBackend {
        DbBackend::MySql
    }

    fn name(&self) -> &'static str {
        "mysql"
    }

    fn column_type(&self, kind: ColumnKind) -> ColumnType {
        match kind {
            ColumnKind::BigInt => ColumnType::BigInteger,
            ColumnKind::Int => ColumnType::Integer,
            ColumnKind::Name => ColumnType::String(StringLen::N(128)),
            ColumnKind::Text => ColumnType::custom("MEDIUMTEXT"),
            ColumnKind::Bytes => ColumnType::custom("LONGBLOB"),
            ColumnKind::MessageId => ColumnType::Binary(16),
            _ => ColumnType::Text,
        }
    }

    fn indexes_inline(&self) -> bool {
        true
    }

    fn worker_transaction(&self) -> TransactionOptions {
        TransactionOptions {
            isolation_level: Some(IsolationLevel::ReadCommitted),
            ..TransactionOptions::default()
        }
    }

    fn partition_lock(&self) -> Option<LockType> {
        Some(LockType::Update)
    }

    fn now_millis(&self) -> Expr {
        Expr::cust("CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
    }

    fn classify(&self, code: Option<&str>, message: &str) -> DbErrorKind {
        error_codes::classify(code, message)
    }

    fn relaxed_commit(&self) -> Option<&'static str> {
        None
    }

    /// MySQL counts placeholders in 16 bits (65,535). A statement travels
    /// in one packet of at most `max_allowed_packet` bytes (16 MiB by
    /// default on MariaDB since 10.2.4, 64 MiB on MySQL 8.0): 8 MiB of
    /// parameters leaves room for the protocol under the smaller default.
    fn statement_limits(&self) -> StatementLimits {
        StatementLimits::new(65_535, 8 * 1024 * 1024)
    }

    fn startup_statements(&self) -> &'static [&'static str] {
        &[]
    }

    fn vacuum_bodies_sql(&self, body_table: &str, outgoing_table: &str) -> Option<String> {
        Some(format!(
            "DELETE b FROM `{body_table}` AS b INNER JOIN `{outgoing_table}` AS o ON b.message_id = o.message_id \
             WHERE o.partition_id = ? AND o.seq <= ?"
        ))
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
