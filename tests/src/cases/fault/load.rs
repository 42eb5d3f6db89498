//! The steady load of the fault cases: producer transactions that write a
//! ledger row to `<prefix>sent` together with each message (so the ledger
//! is the truth of what committed, even when a commit's reply was lost), and
//! a handler that writes each delivery to `<prefix>side` in the partition's
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outbox_core::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};
use outbox_core::{
    Batch, BatchResult, Delivery, Message, Outbox, PartitionKey, TransactionalHandler,
};
use uuid::Uuid;

use crate::cases::process::now_us;
use crate::{Backend, TestDb};

/// `(…), (…)` with `rows` groups of `cols` placeholders in the backend's style.
pub(crate) fn values_sql(backend: DbBackend, rows: usize, cols: usize) -> String {
    let mut n = 0;
    let groups: Vec<String> = (0..rows)
        .map(|_| {
            let group: Vec<String> = (0..cols)
                .map(|_| {
                    n += 1;
                    match backend {
                        DbBackend::Postgres => format!("${n}"),
                        _ => "?".to_owned(),
                    }
                })
                .collect();
            format!("({})", group.join(", "))
        })
        .collect();
    groups.join(", ")
}

/// Creates `<prefix>sent`: one row per message, written in the enqueuing
/// transaction.
pub(crate) async fn create_ledger(db: &TestDb) {
    let bytes = match db.backend {
        Backend::Postgres => "BYTEA",
        Backend::MySql => "BINARY(16)",
        Backend::Sqlite => "BLOB",
    };
    db.exec(&format!(
        "CREATE TABLE {} (message_id {bytes} NOT NULL PRIMARY KEY, queue_name VARCHAR(64) NOT NULL, \
         partition_no BIGINT NOT NULL, poison INT NOT NULL)",
        db.table("sent")
    ))
    .await;
}

/// Drops the ledger and any extra tables of a case (the harness drops the
/// outbox tables and `<prefix>side`; SQLite's file goes as a whole).
pub(crate) async fn drop_tables(db: &TestDb, names: &[&str]) {
    if db.backend == Backend::Sqlite {
        return;
    }
    for name in names {
        let _ = db
            .db
            .execute_unprepared(&format!("DROP TABLE IF EXISTS {}", db.table(name)))
            .await;
    }
}

/// One message of the load: its id, partition and whether it is poison
/// (payload type `poison`, which the poison case's handler never accepts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub(crate) id: Uuid,
    pub(crate) partition: u32,
    pub(crate) poison: bool,
}

/// Writes `rows` to the ledger and enqueues them, in `txn`.
pub(crate) async fn enqueue_with_ledger(
    db: &TestDb,
    txn: &DatabaseTransaction,
    outbox: &Outbox,
    queue: &str,
    rows: &[Planned],
) -> Result<(), String> {
    let backend = txn.get_database_backend();
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 4);
    for row in rows {
        values.push(row.id.as_bytes().to_vec().into());
        values.push(queue.to_owned().into());
        values.push(i64::from(row.partition).into());
        values.push(i32::from(row.poison).into());
    }
    let ledger = Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO {} (message_id, queue_name, partition_no, poison) VALUES {}",
            db.table("sent"),
            values_sql(backend, rows.len(), 4)
        ),
        values,
    );
    txn.execute_raw(ledger).await.map_err(|e| e.to_string())?;
    let messages = rows.iter().map(|row| {
        let kind = if row.poison { "poison" } else { "t" };
        (
            PartitionKey::index(row.partition),
            Message::new(kind, row.id.simple().to_string().into_bytes())
                .message_id(row.id)
                .header("partition", row.partition.to_string()),
        )
    });
    outbox
        .enqueue_batch(txn, queue, messages)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// What a load generator sends.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    /// Queues, one per transaction in turn.
    pub(crate) queues: Vec<&'static str>,
    /// Partitions of every queue; message `n` goes to partition `n % partitions`.
    pub(crate) partitions: u32,
    /// Messages per second, all queues together.
    pub(crate) rate: f64,
    /// Messages per producer transaction.
    pub(crate) per_txn: usize,
    /// Every this many messages one is poison.
    pub(crate) poison_every: Option<u64>,
}

/// What a load generator did.
#[derive(Debug, Default)]
pub(crate) struct LoadReport {
    /// Messages whose transaction's commit returned success.
    pub(crate) committed: usize,
    /// Transactions that failed (the ledger says whether a failed commit
    /// landed anyway).
    pub(crate) failed_txns: usize,
    /// The first few errors, for the log.
    pub(crate) errors: Vec<String>,
    /// Wall-clock microseconds at which each message's commit returned.
    pub(crate) commit_us: HashMap<Uuid, i64>,
}

/// A producer task sending at a steady rate until stopped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<LoadReport>,
}

impl Load {
    /// Starts producing through `outbox` on `pool`.
    pub(crate) fn start(
        db: &TestDb,
        pool: DatabaseConnection,
        outbox: Outbox,
        plan: LoadPlan,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(produce(db.clone(), pool, outbox, plan, stop.clone()));
        Self { stop, task }
    }

    /// Stops after the transaction in flight and returns the report.
    pub(crate) async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task")
    }
}

async fn produce(
    db: TestDb,
    pool: DatabaseConnection,
    outbox: Outbox,
    plan: LoadPlan,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let period = Duration::from_secs_f64(plan.per_txn as f64 / plan.rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = LoadReport::default();
    let mut n: u64 = 0;
    let mut txn_no = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let queue = plan.queues[txn_no % plan.queues.len()];
        txn_no += 1;
        let rows: Vec<Planned> = (0..plan.per_txn)
            .map(|_| {
                n += 1;
                Planned {
                    id: Uuid::now_v7(),
                    partition: u32::try_from(n % u64::from(plan.partitions)).unwrap(),
                    poison: plan.poison_every.is_some_and(|k| n.is_multiple_of(k)),
                }
            })
            .collect();
        let result = match pool.begin().await {
            Ok(txn) => match enqueue_with_ledger(&db, &txn, &outbox, queue, &rows).await {
                Ok(()) => txn.commit().await.map_err(|e| e.to_string()),
                Err(err) => {
                    let _ = txn.rollback().await;
                    Err(err)
                }
            },
            Err(err) => Err(err.to_string()),
        };
        match result {
            Ok(()) => {
                let at = now_us();
                for row in &rows {
                    report.commit_us.insert(row.id, at);
                }
                report.committed += rows.len();
                outbox.notify();
            }
            Err(err) => {
                report.failed_txns += 1;
                if report.errors.len() < 5 {
                    report.errors.push(err);
                }
            }
        }
    }
    report
}

/// A transactional handler that writes each delivery to `<prefix>side` (the
/// table of `process.rs`: no unique key, so a duplicate shows as a row).
#[derive(Debug, Clone)]
pub(crate) struct SideWriter {
    table: String,
    worker: String,
}

impl SideWriter {
    /// Writes as `worker`.
    pub(crate) fn new(db: &TestDb, worker: &str) -> Self {
        Self {
            table: db.table("side"),
            worker: worker.to_owned(),
        }
    }

    /// Inserts one side row per message, in one statement.
    pub(crate) async fn write<C: ConnectionTrait>(
        &self,
        conn: &C,
        partition: u32,
        messages: &[Delivery],
    ) -> Result<(), DbErr> {
        if messages.is_empty() {
            return Ok(());
        }
        let backend = conn.get_database_backend();
        let received = now_us();
        let mut values: Vec<Value> = Vec::with_capacity(messages.len() * 5);
        for m in messages {
            values.push(m.message_id.as_bytes().to_vec().into());
            values.push(i64::from(partition).into());
            values.push(m.seq.into());
            values.push(self.worker.clone().into());
            values.push(received.into());
        }
        let statement = Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO {} (message_id, partition_no, seq, worker, received_us) VALUES {}",
                self.table,
                values_sql(backend, messages.len(), 5)
            ),
            values,
        );
        conn.execute_raw(statement).await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl TransactionalHandler for SideWriter {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        match self.write(txn, batch.partition, &batch.messages).await {
            Ok(()) => BatchResult::success(),
            Err(err) => BatchResult::retry(err.to_string()),
        }
    }
}
