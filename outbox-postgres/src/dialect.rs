//! The PostgreSQL dialect.

use std::time::Duration;

use outbox_core::sea_orm;
use outbox_core::{
    ColumnKind, DbErrorKind, Dialect, StatementLimits, TimeoutStatements, WakeupListener,
};
use sea_orm::sea_query::{ColumnType, Expr, LockType, StringLen};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, TransactionOptions};

use crate::error_codes;
use crate::notify;

/// The outbox dialect for PostgreSQL: hand it to `Outbox::builder` and
/// `OutboxSchema::new`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresDialect;

#[async_trait::async_trait]
impl Dialect for PostgresDialect {
    fn backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    fn name(&self) -> &'static str {
        "postgres"
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

    fn message_table_options(&self) -> Option<&'static str> {
        Some("WITH (fillfactor = 50)")
    }

    fn sequencer_settings(&self) -> Option<&'static str> {
        Some("SET LOCAL enable_bitmapscan = off")
    }

    fn worker_transaction(&self) -> TransactionOptions {
        TransactionOptions::default()
    }

    fn partition_lock(&self) -> Option<LockType> {
        Some(LockType::NoKeyUpdate)
    }

    fn now_millis(&self) -> Expr {
        Expr::cust("(extract(epoch from clock_timestamp()) * 1000)::bigint")
    }

    fn classify(&self, code: Option<&str>, message: &str) -> DbErrorKind {
        error_codes::classify(code, message)
    }

    fn relaxed_commit(&self) -> Option<&'static str> {
        Some("SET LOCAL synchronous_commit = off")
    }

    fn handler_timeout_statements(&self, timeout: Duration) -> Option<TimeoutStatements> {
        // Whole milliseconds, rounded up: 0 would mean no limit.
        let ms = timeout
            .as_micros()
            .div_ceil(1000)
            .clamp(1, i32::MAX as u128);
        Some(TimeoutStatements {
            set: format!("SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}"),
            // `SET LOCAL` ends with the transaction; the outbox's own
            // statements after the handler (the acknowledgement) are fast
            // and run under the same limits, so no reset round trip.
            reset: None,
        })
    }

    /// PostgreSQL counts bind parameters in 16 bits (65,535); a message may
    /// be up to 1 GiB, so the byte budget only keeps statements reasonable.
    fn statement_limits(&self) -> StatementLimits {
        StatementLimits::new(65_535, 256 * 1024 * 1024)
    }

    fn startup_statements(&self) -> &'static [&'static str] {
        &[]
    }

    fn multi_primary_probe(&self) -> Option<&'static str> {
        None
    }

    fn notify_sql(&self) -> Option<&'static str> {
        Some(notify::NOTIFY_SQL)
    }

    fn wakeup_schema(&self, prefix: &str, channel: &str) -> Vec<String> {
        notify::triggers(prefix, channel)
    }

    fn drop_wakeup_schema(&self, prefix: &str) -> Vec<String> {
        // Schema v1's function too: the v2 migration drops v1's tables, and
        // with them its trigger, but not the function.
        vec![
            format!("DROP FUNCTION IF EXISTS {prefix}notify_outgoing() CASCADE"),
            format!("DROP FUNCTION IF EXISTS {prefix}notify_sequenced() CASCADE"),
        ]
    }

    async fn listen(
        &self,
        db: &DatabaseConnection,
        channel: &str,
    ) -> Result<Option<Box<dyn WakeupListener>>, DbErr> {
        notify::listen(db, channel).await
    }
}
