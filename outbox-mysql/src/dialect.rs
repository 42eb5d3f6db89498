//! The MySQL and MariaDB dialect.

use std::time::Duration;

use outbox_core::sea_orm;
use outbox_core::{
    ColumnKind, DbErrorKind, Dialect, StatementLimits, TimeoutStatements, WakeupListener,
};
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

    fn handler_timeout_statements(&self, timeout: Duration) -> Option<TimeoutStatements> {
        // Session settings on a pooled connection: save them in user
        // variables and restore them after the handler. Lock waits are
        // bounded in whole seconds (at least 1); MariaDB also bounds a
        // statement's whole run (`max_statement_time`, in a comment only
        // MariaDB 10.1+ executes; MySQL has no such setting for writes).
        let lock_wait = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let lock_wait = lock_wait.max(1);
        let statement = timeout.as_secs_f64().max(0.001);
        Some(TimeoutStatements {
            set: format!(
                "SET @outbox_lock_wait = @@SESSION.innodb_lock_wait_timeout, \
                 SESSION innodb_lock_wait_timeout = {lock_wait} \
                 /*M!100100 , @outbox_statement_time = @@SESSION.max_statement_time, \
                 SESSION max_statement_time = {statement:.3} */"
            ),
            reset: Some(
                "SET SESSION innodb_lock_wait_timeout = @outbox_lock_wait \
                    /*M!100100 , SESSION max_statement_time = @outbox_statement_time */"
                    .to_owned(),
            ),
        })
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

    fn multi_primary_probe(&self) -> Option<&'static str> {
        Some(
            "SHOW GLOBAL VARIABLES WHERE (Variable_name = 'wsrep_on' AND Value = 'ON') \
             OR (Variable_name = 'group_replication_single_primary_mode' AND Value = 'OFF')",
        )
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
