//! A worker process for the multi-process cases of the suite: runs an
//! outbox with one transactional queue whose handler writes each message to
//! `<prefix>side` (no unique key, so duplicates would show), and prints
//! `ready` once started. It runs until killed.
//!
//! Configured by environment: `OUTBOX_WORKER_URL`, `OUTBOX_WORKER_PREFIX`,
//! `OUTBOX_WORKER_NAME`, `OUTBOX_WORKER_PARTITIONS`, `OUTBOX_WORKER_LEASE_MS`,
//! `OUTBOX_WORKER_POLL_MS`, `OUTBOX_WORKER_BATCH_DELAY_MS`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test tool: failing loudly is the point

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, Statement};
use outbox_core::{Batch, BatchResult, Dialect, OutboxBuilder, Queue, TransactionalHandler};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn env_u64(name: &str) -> u64 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

struct SideWriter {
    table: String,
    worker: String,
    postgres: bool,
    delay: Duration,
}

#[async_trait::async_trait]
impl TransactionalHandler for SideWriter {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        let received = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        for m in &batch.messages {
            let placeholders = if self.postgres {
                "$1, $2, $3, $4, $5"
            } else {
                "?, ?, ?, ?, ?"
            };
            let statement = Statement::from_sql_and_values(
                txn.get_database_backend(),
                format!(
                    "INSERT INTO {} (message_id, partition_no, seq, worker, received_us) VALUES ({placeholders})",
                    self.table
                ),
                [
                    m.message_id.as_bytes().to_vec().into(),
                    i64::from(batch.partition).into(),
                    m.seq.into(),
                    self.worker.clone().into(),
                    received.into(),
                ],
            );
            if let Err(err) = txn.execute_raw(statement).await {
                return BatchResult::retry(err.to_string());
            }
        }
        // Hold the batch open a moment, so that a kill lands mid-batch.
        tokio::time::sleep(self.delay).await;
        BatchResult::success()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = env("OUTBOX_WORKER_URL");
    let prefix = env("OUTBOX_WORKER_PREFIX");
    let name = env("OUTBOX_WORKER_NAME");
    let dialect: Arc<dyn Dialect> = if url.starts_with("postgres") {
        Arc::new(outbox_postgres::PostgresDialect)
    } else if url.starts_with("mysql") {
        Arc::new(outbox_mysql::MySqlDialect)
    } else {
        Arc::new(outbox_sqlite::SqliteDialect)
    };
    let db = outbox_core::sea_orm::Database::connect(url.as_str())
        .await
        .expect("connect");
    let lease = Duration::from_millis(env_u64("OUTBOX_WORKER_LEASE_MS"));
    let handler = SideWriter {
        table: format!("{prefix}side"),
        worker: name.clone(),
        postgres: url.starts_with("postgres"),
        delay: Duration::from_millis(env_u64("OUTBOX_WORKER_BATCH_DELAY_MS")),
    };
    let queue = Queue::transactional(
        "q",
        u32::try_from(env_u64("OUTBOX_WORKER_PARTITIONS")).expect("partitions"),
        handler,
    )
    .lease(lease)
    .handler_timeout(lease / 2)
    .lease_headroom(lease / 4)
    .batch_size(10);
    let _handle = OutboxBuilder::new(db, dialect)
        .table_prefix(prefix)
        .instance_name(name)
        .poll_interval(Duration::from_millis(env_u64("OUTBOX_WORKER_POLL_MS")))
        .queue(queue)
        .start()
        .await
        .expect("start");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    std::future::pending::<()>().await;
}
