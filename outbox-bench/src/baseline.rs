//! `--baseline`: the same rows inserted into a plain table by the same
//! producers, the floor the pipeline is measured against.

use std::sync::Arc;

use outbox_core::sea_orm::ConnectionTrait;

use crate::BoxError;
use crate::args::{Args, BackendArg};
use crate::clock::{Clock, secs_between};
use crate::db::BenchDb;
use crate::produce::{self, BaselineSink};
use crate::progress::spawn_commit_progress;
use crate::recorder::Plan;
use crate::writes;

/// Inserts the same rows into a plain table with the same producers and
/// transaction size, then drops it. Returns rows per second. Not paced:
/// it measures what the database can take.
pub(crate) async fn run(
    args: &Args,
    bench: &BenchDb,
    plan: &Plan,
    payload_bytes: usize,
) -> Result<(f64, Option<f64>), BoxError> {
    let table = bench.table("baseline");
    let ddl = match args.backend {
        BackendArg::Postgres => {
            format!("CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)")
        }
        BackendArg::Mysql => format!(
            "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload LONGBLOB NOT NULL)"
        ),
        BackendArg::Sqlite => {
            format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        }
    };
    bench.db.execute_unprepared(&ddl).await?;
    let total = usize::try_from(args.messages)?;
    let (committed, progress) = spawn_commit_progress("baseline inserted", total, None);
    let sink = Arc::new(BaselineSink {
        table: table.clone(),
        backend: bench.db_backend(),
        payload_bytes,
    });
    let clock = Clock::monotonic();
    let wal_before = writes::wal_bytes(&bench.db).await?;
    let produced = produce::run(&bench.db, sink, plan, args.batch, None, committed, clock).await;
    progress.abort();
    let produced = produced?;
    let wal_per_row = writes::per_message(
        wal_before,
        writes::wal_bytes(&bench.db).await?,
        args.messages as f64,
    );
    let secs = secs_between(produced.start, produced.last_commit());
    bench
        .db
        .execute_unprepared(&format!("DROP TABLE {table}"))
        .await?;
    let rows_per_sec = if secs > 0.0 {
        args.messages as f64 / secs
    } else {
        0.0
    };
    eprintln!(
        "outbox-bench: baseline: {rows_per_sec:.0} rows/s, {wal_per_row:?} WAL bytes per row"
    );
    Ok((rows_per_sec, wal_per_row))
}
