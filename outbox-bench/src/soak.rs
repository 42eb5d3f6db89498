//! `--soak-seconds T --rate R`: a steady rate for T seconds (T × R
//! messages), with the outbox tables and this process's memory measured
//! after the first tenth of the run and at its end, so that growth under a
//! steady load shows (design guarantee 6, bounded storage).
//!
//! Rows are exact counts over every outbox table of the run. Bytes are
//! PostgreSQL `pg_total_relation_size` (heap, TOAST and indexes), MySQL and
//! MariaDB `data_length + index_length` from `information_schema.tables`
//! after `ANALYZE TABLE` (InnoDB's figures are approximate, in pages), and
//! on SQLite `page_count × page_size` of the run's file (free pages
//! included: SQLite does not give space back without `VACUUM`). Memory is
//! `VmRSS` of this process.

use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::BoxError;
use crate::db::BenchDb;

/// Every table the outbox schema creates.
const OUTBOX_TABLES: [&str; 6] = [
    "partition",
    "body",
    "incoming",
    "outgoing",
    "dead_letter",
    "instance",
];

/// The soak figures of the report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) table_rows_start: u64,
    pub(crate) table_rows_end: u64,
    pub(crate) table_bytes_start: u64,
    pub(crate) table_bytes_end: u64,
    pub(crate) rss_mib_start: Option<f64>,
    pub(crate) rss_mib_end: Option<f64>,
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rows: u64,
    bytes: u64,
    rss_mib: Option<f64>,
}

/// The number of messages a soak of `seconds` at `rate` sends.
pub(crate) fn messages(seconds: f64, rate: f64) -> u64 {
    (seconds * rate).round().max(1.0) as u64
}

/// Takes the first sample a tenth of `seconds` after [`Sampler::start`],
/// in the background, and the last one in [`Sampler::finish`].
pub(crate) struct Sampler {
    first: tokio::task::JoinHandle<Result<Sample, String>>,
}

impl Sampler {
    /// Starts the clock: call it when the producers start.
    pub(crate) fn start(bench: &BenchDb, seconds: f64) -> Self {
        let db = bench.db.clone();
        let prefix = bench.prefix.clone();
        let delay = Duration::from_secs_f64(seconds / 10.0);
        let first = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let sample = sample(&db, &prefix).await.map_err(|e| e.to_string())?;
            eprintln!(
                "outbox-bench: soak: after {:.1} s: {} rows, {} bytes in the outbox tables, rss {:?} MiB",
                delay.as_secs_f64(),
                sample.rows,
                sample.bytes,
                sample.rss_mib
            );
            Ok(sample)
        });
        Self { first }
    }

    /// Takes the last sample (call it when the producers are done, before
    /// the workers stop) and returns both.
    pub(crate) async fn finish(self, bench: &BenchDb) -> Result<Figures, BoxError> {
        let end = sample(&bench.db, &bench.prefix).await?;
        let start = self.first.await??;
        eprintln!(
            "outbox-bench: soak: at the end: {} rows, {} bytes in the outbox tables, rss {:?} MiB",
            end.rows, end.bytes, end.rss_mib
        );
        Ok(Figures {
            table_rows_start: start.rows,
            table_rows_end: end.rows,
            table_bytes_start: start.bytes,
            table_bytes_end: end.bytes,
            rss_mib_start: start.rss_mib,
            rss_mib_end: end.rss_mib,
        })
    }
}

async fn sample<C: ConnectionTrait>(db: &C, prefix: &str) -> Result<Sample, BoxError> {
    let backend = db.get_database_backend();
    let tables: Vec<String> = OUTBOX_TABLES
        .iter()
        .map(|t| format!("{prefix}{t}"))
        .collect();
    let mut rows = 0;
    for table in &tables {
        rows += integer(db, &format!("SELECT COUNT(*) AS n FROM {table}")).await?;
    }
    let bytes = match backend {
        DbBackend::Postgres => {
            let sum: Vec<String> = tables
                .iter()
                .map(|t| format!("pg_total_relation_size('{t}')"))
                .collect();
            integer(db, &format!("SELECT ({})::bigint AS n", sum.join(" + "))).await?
        }
        DbBackend::MySql => {
            for table in &tables {
                // Refreshes the size figures; returns a result set, read and dropped.
                db.query_all_raw(Statement::from_string(
                    backend,
                    format!("ANALYZE TABLE {table}"),
                ))
                .await?;
            }
            let names: Vec<String> = tables.iter().map(|t| format!("'{t}'")).collect();
            integer(
                db,
                &format!(
                    "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) AS n \
                     FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ({})",
                    names.join(", ")
                ),
            )
            .await?
        }
        DbBackend::Sqlite => {
            integer(
                db,
                "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()",
            )
            .await?
        }
        _ => 0,
    };
    Ok(Sample {
        rows,
        bytes,
        rss_mib: rss_mib(),
    })
}

async fn integer<C: ConnectionTrait>(db: &C, sql: &str) -> Result<u64, BoxError> {
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

/// This process's resident set size (`VmRSS`) in MiB; `None` off Linux.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soak_sends_seconds_times_rate() {
        assert_eq!(messages(120.0, 200.0), 24_000);
        assert_eq!(messages(0.001, 1.0), 1);
    }
}
