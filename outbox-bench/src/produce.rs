//! Producers: K tasks, each writing its share of the messages in
//! transactions of B, optionally paced, recording when each commit returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outbox_core::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait, Value,
};
use outbox_core::{Message, Outbox, PartitionKey};

use crate::BoxError;
use crate::clock::Clock;
use crate::recorder::{Plan, payload};

/// Tries of one producer transaction before the run fails.
const TRIES: u32 = 5;
/// Rows per baseline INSERT statement, as the outbox's own enqueue_batch.
const BASELINE_ROWS_PER_STATEMENT: usize = 1000;

/// Where a producer's transaction writes its messages.
#[async_trait]
pub(crate) trait Sink: Send + Sync + 'static {
    /// Writes messages `seqs` of `producer` in `txn`.
    async fn write(
        &self,
        txn: &DatabaseTransaction,
        producer: u64,
        seqs: std::ops::Range<u64>,
    ) -> Result<(), BoxError>;

    /// Called after each commit.
    fn committed(&self) {}
}

/// Enqueues to the outbox queue `bench`.
pub(crate) struct OutboxSink {
    pub(crate) outbox: Outbox,
    pub(crate) payload_bytes: usize,
    /// Keys per producer (see [`keys_per_producer`]); `None` with
    /// `--hot-key`: every producer writes to the one key [`HOT_KEY`].
    pub(crate) keys: Option<u64>,
}

/// The key of every message with `--hot-key`.
pub(crate) const HOT_KEY: &str = "hot";

/// Keys each producer cycles through: 64, or the partition count if larger,
/// so that with many partitions every one of them gets messages (with 64
/// keys per producer, 4 producers would reach at most 256 of 1,024).
pub(crate) fn keys_per_producer(partitions: u32) -> u64 {
    u64::from(partitions).max(64)
}

/// The partition key of message `seq` of `producer`: `keys` keys per
/// producer, hashed to partitions like an application's aggregate ids, or
/// the hot key for all.
fn key(producer: u64, seq: u64, keys: Option<u64>) -> PartitionKey {
    match keys {
        Some(keys) => PartitionKey::Key(format!("p{producer}-{}", seq % keys.max(1))),
        None => PartitionKey::Key(HOT_KEY.to_owned()),
    }
}

#[async_trait]
impl Sink for OutboxSink {
    async fn write(
        &self,
        txn: &DatabaseTransaction,
        producer: u64,
        seqs: std::ops::Range<u64>,
    ) -> Result<(), BoxError> {
        let message =
            |seq| Message::new("BenchMessage", payload(producer, seq, self.payload_bytes));
        if seqs.end - seqs.start == 1 {
            self.outbox
                .enqueue(
                    txn,
                    "bench",
                    key(producer, seqs.start, self.keys),
                    message(seqs.start),
                )
                .await?;
        } else {
            self.outbox
                .enqueue_batch(
                    txn,
                    "bench",
                    seqs.map(|seq| (key(producer, seq, self.keys), message(seq))),
                )
                .await?;
        }
        Ok(())
    }

    fn committed(&self) {
        self.outbox.notify();
    }
}

/// Inserts into the plain table `<prefix>baseline (id, payload)`.
pub(crate) struct BaselineSink {
    pub(crate) table: String,
    pub(crate) backend: DbBackend,
    pub(crate) payload_bytes: usize,
}

#[async_trait]
impl Sink for BaselineSink {
    async fn write(
        &self,
        txn: &DatabaseTransaction,
        producer: u64,
        seqs: std::ops::Range<u64>,
    ) -> Result<(), BoxError> {
        let seqs: Vec<u64> = seqs.collect();
        for chunk in seqs.chunks(BASELINE_ROWS_PER_STATEMENT) {
            let placeholders: Vec<String> = (1..=chunk.len())
                .map(|n| match self.backend {
                    DbBackend::Postgres => format!("(${n})"),
                    _ => "(?)".to_owned(),
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} (payload) VALUES {}",
                self.table,
                placeholders.join(", ")
            );
            let values: Vec<Value> = chunk
                .iter()
                .map(|&seq| payload(producer, seq, self.payload_bytes).into())
                .collect();
            txn.execute_raw(Statement::from_sql_and_values(self.backend, sql, values))
                .await?;
        }
        Ok(())
    }
}

/// The outcome of all producers. Times are microseconds of the run's clock.
#[derive(Debug)]
pub(crate) struct Produced {
    /// When the first producer was started.
    pub(crate) start: u32,
    /// `commits[p][seq]`: when the commit that wrote message `seq` of
    /// producer `p` returned to the producer (4 bytes a message).
    pub(crate) commits: Vec<Vec<u32>>,
    /// Transactions that failed and were tried again.
    pub(crate) retries: u64,
}

impl Produced {
    /// When the last commit returned (`start` if there was none).
    pub(crate) fn last_commit(&self) -> u32 {
        self.commits
            .iter()
            .filter_map(|c| c.last())
            .copied()
            .max()
            .unwrap_or(self.start)
    }

    /// Bytes of the commit-time table.
    pub(crate) fn tracking_bytes(&self) -> u64 {
        self.commits
            .iter()
            .map(|c| (c.capacity() * std::mem::size_of::<u32>()) as u64)
            .sum()
    }
}

/// Runs one producer task per entry of `plan.counts`, `batch` messages per
/// transaction, at `rate` messages per second in total if given. `committed`
/// counts messages whose transaction committed; `clock` times the commits.
pub(crate) async fn run(
    db: &DatabaseConnection,
    sink: Arc<dyn Sink>,
    plan: &Plan,
    batch: u32,
    rate: Option<f64>,
    committed: Arc<AtomicUsize>,
    clock: Clock,
) -> Result<Produced, BoxError> {
    let producers = plan.counts.len();
    // Open-loop pacing: producer p's transaction k is due at
    // start + (p / K + k) * interval, each producer doing rate / K messages
    // per second; a producer that falls behind catches up without sleeping.
    let interval =
        rate.map(|rate| Duration::from_secs_f64(f64::from(batch) * producers as f64 / rate));
    let start_us = clock.now();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(producers);
    for (p, &count) in plan.counts.iter().enumerate() {
        let db = db.clone();
        let sink = sink.clone();
        let committed = committed.clone();
        let offset = interval.map(|i| i.mul_f64(p as f64 / producers as f64));
        tasks.push(tokio::spawn(async move {
            let producer = p as u64;
            let mut commits = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            let mut retries = 0;
            let mut seq = 0;
            let mut k: u32 = 0;
            while seq < count {
                if let (Some(interval), Some(offset)) = (interval, offset) {
                    let due = start + offset + interval * k;
                    tokio::time::sleep_until(due.into()).await;
                }
                let end = (seq + u64::from(batch)).min(count);
                let mut tries = 0;
                loop {
                    tries += 1;
                    match transaction(&db, sink.as_ref(), producer, seq..end).await {
                        Ok(()) => break,
                        Err(err) if tries < TRIES => {
                            retries += 1;
                            eprintln!(
                                "outbox-bench: producer {p}: transaction failed, trying again: {err}"
                            );
                            tokio::time::sleep(Duration::from_millis(20 * u64::from(tries))).await;
                        }
                        Err(err) => {
                            return Err::<_, BoxError>(
                                format!("producer {p}: transaction failed {TRIES} times: {err}")
                                    .into(),
                            );
                        }
                    }
                }
                let now = clock.now();
                sink.committed();
                commits.extend(std::iter::repeat_n(now, usize::try_from(end - seq)?));
                committed.fetch_add(usize::try_from(end - seq)?, Ordering::Relaxed);
                seq = end;
                k += 1;
            }
            Ok((commits, retries))
        }));
    }
    let mut commits = Vec::with_capacity(producers);
    let mut retries = 0;
    for task in tasks {
        let (c, r) = task.await??;
        commits.push(c);
        retries += r;
    }
    Ok(Produced {
        start: start_us,
        commits,
        retries,
    })
}

/// One producer transaction: begin, write, commit.
async fn transaction(
    db: &DatabaseConnection,
    sink: &dyn Sink,
    producer: u64,
    seqs: std::ops::Range<u64>,
) -> Result<(), BoxError> {
    let txn = db.begin().await?;
    // On error the transaction is dropped, which rolls it back.
    sink.write(&txn, producer, seqs).await?;
    txn.commit().await?;
    Ok(())
}
