//! Row writes over the outbox tables and, on PostgreSQL, WAL bytes: what
//! each delivered message costs the database (`row_writes_per_msg`,
//! `wal_bytes_per_msg`), read at the soak's two samples so that vacuum's
//! deletes of a steady state are counted too.
//!
//! - PostgreSQL: `n_tup_ins + n_tup_upd + n_tup_del` of the run's tables in
//!   `pg_stat_user_tables`; WAL from `pg_current_wal_lsn()`, which counts
//!   the whole server (run it on a quiet one). A busy backend reports its
//!   table counts at most once a second, so each end is late by up to a
//!   second's worth: small against a soak of a minute or more.
//! - MySQL/MariaDB: `rows_changed` of `information_schema.table_statistics`
//!   (MariaDB's user statistics, switched on here with `userstat = 1`;
//!   inserted, updated and deleted rows per table).
//! - SQLite: no server counters, and `changes()` belongs to one connection
//!   of the pool. A trigger per table and operation counts rows into a
//!   one-row table of the run instead. It adds a write per row write, which
//!   a soak at a fixed rate absorbs; do not compare throughput of such runs.

use outbox_core::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::BoxError;
use crate::db::BenchDb;
use crate::soak::OUTBOX_TABLES;

/// The SQLite counter table's name, after the run's prefix.
const SQLITE_COUNTER: &str = "bench_row_writes";

/// Makes the row-write counters readable: MariaDB's user statistics on,
/// SQLite's counting triggers in place. Call after the migration.
pub(crate) async fn prepare(bench: &BenchDb) -> Result<(), BoxError> {
    match bench.db_backend() {
        DbBackend::MySql => {
            bench
                .db
                .execute_unprepared("SET GLOBAL userstat = 1")
                .await?;
        }
        DbBackend::Sqlite => {
            let counter = bench.table(SQLITE_COUNTER);
            bench
                .db
                .execute_unprepared(&format!("CREATE TABLE {counter} (n INTEGER NOT NULL)"))
                .await?;
            bench
                .db
                .execute_unprepared(&format!("INSERT INTO {counter} (n) VALUES (0)"))
                .await?;
            for table in OUTBOX_TABLES {
                for op in ["INSERT", "UPDATE", "DELETE"] {
                    let name = bench.table(&format!("count_{table}_{}", op.to_lowercase()));
                    let on = bench.table(table);
                    bench
                        .db
                        .execute_unprepared(&format!(
                            "CREATE TRIGGER {name} AFTER {op} ON {on} \
                             BEGIN UPDATE {counter} SET n = n + 1; END"
                        ))
                        .await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rows inserted, updated and deleted in the run's outbox tables so far.
pub(crate) async fn row_writes<C: ConnectionTrait>(
    db: &C,
    prefix: &str,
) -> Result<Option<u64>, BoxError> {
    let names: Vec<String> = OUTBOX_TABLES
        .iter()
        .map(|t| format!("'{prefix}{t}'"))
        .collect();
    let names = names.join(", ");
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => format!(
            "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint AS n \
             FROM pg_stat_user_tables WHERE relname IN ({names})"
        ),
        DbBackend::MySql => format!(
            "SELECT CAST(COALESCE(SUM(rows_changed), 0) AS SIGNED) AS n \
             FROM information_schema.table_statistics \
             WHERE table_schema = DATABASE() AND table_name IN ({names})"
        ),
        DbBackend::Sqlite => format!("SELECT n FROM {prefix}{SQLITE_COUNTER}"),
        _ => return Ok(None),
    };
    integer(db, &sql).await.map(Some)
}

/// The server's WAL position in bytes (PostgreSQL only).
pub(crate) async fn wal_bytes<C: ConnectionTrait>(db: &C) -> Result<Option<u64>, BoxError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    integer(
        db,
        "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS n",
    )
    .await
    .map(Some)
}

/// The difference of two readings per message, if both were taken.
pub(crate) fn per_message(start: Option<u64>, end: Option<u64>, messages: f64) -> Option<f64> {
    let (start, end) = (start?, end?);
    (messages > 0.0).then(|| end.saturating_sub(start) as f64 / messages)
}

pub(crate) async fn integer<C: ConnectionTrait>(db: &C, sql: &str) -> Result<u64, BoxError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .ok_or_else(|| format!("no row from {sql}"))?;
    let n: i64 = row.try_get("", "n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_message_divides_the_difference() {
        assert_eq!(per_message(Some(100), Some(700), 100.0), Some(6.0));
        assert_eq!(per_message(None, Some(700), 100.0), None);
        assert_eq!(per_message(Some(1), Some(2), 0.0), None);
    }
}
