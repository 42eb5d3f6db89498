//! What an idle outbox costs the database: statements per second with no traffic.

use std::time::{Duration, Instant};

use outbox_core::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::BoxError;
use crate::args::BackendArg;
use crate::db::{BenchDb, pool};

/// The server-side counter read before and after the idle window.
pub(crate) struct Probe {
    /// A connection of its own, so its statements are not the pool's.
    conn: DatabaseConnection,
    counter: Counter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// `SUM(calls)` of `pg_stat_statements` for the current database: real
    /// statements, updated at once.
    PgStatStatements,
    /// `xact_commit + xact_rollback` of `pg_stat_database` for the current
    /// database: transactions, not statements, and flushed by each backend
    /// at most once a second (an idle backend's last second may wait up to
    /// 10 s on PostgreSQL 15+).
    PgStatDatabase,
    /// `SHOW GLOBAL STATUS LIKE 'Questions'`: statements of every client of
    /// the server, this one's reads included.
    MysqlQuestions,
}

impl Counter {
    /// How the JSON names the counter.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::PgStatStatements => "pg_stat_statements.calls",
            Self::PgStatDatabase => "pg_stat_database.xact_commit+xact_rollback (transactions)",
            Self::MysqlQuestions => "global status Questions",
        }
    }

    /// How long after the window's edge to read it: pg_stat_database shows
    /// a backend's counts only after it flushes them, so both reads wait the
    /// same lag after their edge and the delta covers a window of the
    /// nominal length.
    fn lag(self) -> Duration {
        match self {
            Self::PgStatDatabase => Duration::from_millis(600),
            Self::PgStatStatements | Self::MysqlQuestions => Duration::ZERO,
        }
    }

    /// How long to let a freshly started outbox settle before the first
    /// read. pg_stat_database needs 11 s: a backend that went idle less than
    /// a second after its last flush keeps its counts until its 10 s idle
    /// timeout or its next use, so the start-up work of many partition
    /// workers would otherwise leak into the window (seen: 64 partitions,
    /// 5 s window, 1 s settle: 60-68 transactions/s against 22 at steady
    /// state).
    fn settle(self) -> Duration {
        match self {
            Self::PgStatDatabase => Duration::from_secs(11),
            Self::PgStatStatements | Self::MysqlQuestions => Duration::from_secs(1),
        }
    }

    /// The probe's own statements counted between two reads: the first read
    /// (pg_stat_statements records a statement when it ends), or the second
    /// read itself (MySQL counts a statement when it starts).
    /// pg_stat_database may or may not include the probe's own two or
    /// three transactions: that is within its noise.
    fn own_statements(self) -> i64 {
        match self {
            Self::PgStatStatements | Self::MysqlQuestions => 1,
            Self::PgStatDatabase => 0,
        }
    }
}

impl Probe {
    /// A probe for `bench`'s server; `None` for SQLite, which has no
    /// server-side count.
    pub(crate) async fn connect(bench: &BenchDb) -> Result<Option<Self>, BoxError> {
        let counter = match bench.backend {
            BackendArg::Sqlite => return Ok(None),
            BackendArg::Mysql => Counter::MysqlQuestions,
            BackendArg::Postgres => Counter::PgStatDatabase,
        };
        let conn = pool(&bench.url, 1, None).await?;
        let mut probe = Self { conn, counter };
        if counter == Counter::PgStatDatabase {
            let installed = probe
                .scalar(
                    "SELECT COUNT(*)::bigint AS n FROM pg_extension \
                     WHERE extname = 'pg_stat_statements'",
                )
                .await?;
            if installed > 0 {
                probe.counter = Counter::PgStatStatements;
                // Installed but not preloaded, the view errors: fall back.
                if let Err(err) = probe.read().await {
                    eprintln!(
                        "outbox-bench: pg_stat_statements unusable ({err}); using pg_stat_database"
                    );
                    probe.counter = Counter::PgStatDatabase;
                }
            }
        }
        Ok(Some(probe))
    }

    async fn scalar(&self, sql: &str) -> Result<i64, BoxError> {
        let backend: DbBackend = self.conn.get_database_backend();
        let row = self
            .conn
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await?
            .ok_or_else(|| format!("no row from {sql}"))?;
        Ok(row.try_get::<i64>("", "n")?)
    }

    async fn read(&self) -> Result<i64, BoxError> {
        match self.counter {
            Counter::PgStatStatements => {
                self.scalar(
                    "SELECT COALESCE(SUM(calls), 0)::bigint AS n FROM pg_stat_statements \
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .await
            }
            Counter::PgStatDatabase => {
                self.conn
                    .execute_unprepared("SELECT pg_stat_clear_snapshot()")
                    .await?;
                self.scalar(
                    "SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database \
                     WHERE datname = current_database()",
                )
                .await
            }
            Counter::MysqlQuestions => {
                let backend = self.conn.get_database_backend();
                let row = self
                    .conn
                    .query_one_raw(Statement::from_string(
                        backend,
                        "SHOW GLOBAL STATUS LIKE 'Questions'".to_owned(),
                    ))
                    .await?
                    .ok_or("no row from SHOW GLOBAL STATUS")?;
                let value: String = row.try_get("", "Value")?;
                Ok(value.trim().parse()?)
            }
        }
    }

    /// How long to wait after starting the outbox before measuring: 1 s, or
    /// longer for a counter that shows activity late.
    pub(crate) fn settle(probe: Option<&Self>) -> Duration {
        probe.map_or(Duration::from_secs(1), |probe| probe.counter.settle())
    }

    async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// Statements per second over an idle window.
#[derive(Debug)]
pub(crate) struct IdleCost {
    /// Server-side, from `counter`; `None` on SQLite.
    pub(crate) db_per_sec: Option<f64>,
    pub(crate) counter: Option<&'static str>,
    /// Sent through the bench's pool (sea-orm metric; no BEGIN/COMMIT).
    pub(crate) client_per_sec: f64,
}

/// Measures over `seconds`, the outbox already started and settled.
pub(crate) async fn measure(
    bench: &BenchDb,
    probe: Option<Probe>,
    seconds: f64,
) -> Result<IdleCost, BoxError> {
    let window = Duration::from_secs_f64(seconds);
    let lag = probe
        .as_ref()
        .map_or(Duration::ZERO, |probe| probe.counter.lag());
    let start = Instant::now();
    let client_before = bench.client_statements();
    tokio::time::sleep_until((start + lag).into()).await;
    let before = match &probe {
        Some(probe) => Some(probe.read().await?),
        None => None,
    };
    eprintln!("outbox-bench: idle: measuring for {seconds} s");
    tokio::time::sleep_until((start + window).into()).await;
    let client_after = bench.client_statements();
    tokio::time::sleep_until((start + window + lag).into()).await;
    let after = match &probe {
        Some(probe) => Some(probe.read().await?),
        None => None,
    };
    let (db_per_sec, counter) = match (probe, before, after) {
        (Some(probe), Some(before), Some(after)) => {
            let counter = probe.counter;
            probe.close().await;
            let delta = (after - before - counter.own_statements()).max(0);
            (Some(delta as f64 / seconds), Some(counter.describe()))
        }
        _ => (None, None),
    };
    Ok(IdleCost {
        db_per_sec,
        counter,
        client_per_sec: (client_after - client_before) as f64 / seconds,
    })
}
