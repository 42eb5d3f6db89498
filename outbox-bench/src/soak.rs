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
use crate::writes::{self, integer};

/// Every table the outbox schema creates.
pub(crate) const OUTBOX_TABLES: [&str; 4] = ["partition", "message", "dead_letter", "instance"];

/// The soak figures of the report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) table_rows_start: u64,
    pub(crate) table_rows_end: u64,
    pub(crate) table_bytes_start: u64,
    pub(crate) table_bytes_end: u64,
    pub(crate) rss_mib_start: Option<f64>,
    pub(crate) rss_mib_end: Option<f64>,
    /// Rows written to the outbox tables between the samples, per message
    /// sent meanwhile (see `writes.rs`).
    pub(crate) row_writes_per_msg: Option<f64>,
    /// PostgreSQL: WAL bytes between the samples, per message sent meanwhile.
    pub(crate) wal_bytes_per_msg: Option<f64>,
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rows: u64,
    bytes: u64,
    rss_mib: Option<f64>,
    row_writes: Option<u64>,
    wal_bytes: Option<u64>,
    at: std::time::Instant,
}

/// The number of messages a soak of `seconds` at `rate` sends.
pub(crate) fn messages(seconds: f64, rate: f64) -> u64 {
    (seconds * rate).round().max(1.0) as u64
}

/// Takes the first sample a tenth of `seconds` after [`Sampler::start`],
/// in the background, and the last one in [`Sampler::finish`].
pub(crate) struct Sampler {
    first: tokio::task::JoinHandle<Result<Sample, String>>,
    rate: f64,
}

impl Sampler {
    /// Starts the clock: call it when the producers start.
    pub(crate) fn start(bench: &BenchDb, seconds: f64, rate: f64) -> Self {
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
        Self { first, rate }
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
        // A steady state: as many messages are sent as are delivered and
        // vacuumed, `rate` a second.
        let messages = self.rate * end.at.duration_since(start.at).as_secs_f64();
        let row_writes_per_msg = writes::per_message(start.row_writes, end.row_writes, messages);
        let wal_bytes_per_msg = writes::per_message(start.wal_bytes, end.wal_bytes, messages);
        eprintln!(
            "outbox-bench: soak: {messages:.0} messages between the samples: \
             {row_writes_per_msg:?} row writes and {wal_bytes_per_msg:?} WAL bytes per message"
        );
        Ok(Figures {
            row_writes_per_msg,
            wal_bytes_per_msg,
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
        row_writes: writes::row_writes(db, prefix).await?,
        wal_bytes: writes::wal_bytes(db).await?,
        at: std::time::Instant::now(),
    })
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
