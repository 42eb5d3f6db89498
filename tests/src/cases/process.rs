use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox_core::sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use outbox_core::{Message, PartitionKey, Queue};

use crate::{Backend, TestDb};

/// The worker binary built beside the test executables.
fn worker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    dir.join(format!(
        "outbox-test-worker{}",
        std::env::consts::EXE_SUFFIX
    ))
}

/// Child processes killed when dropped, so a failing test leaves none behind.
pub(super) struct Workers(pub(super) Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_worker(db: &TestDb, name: &str, partitions: u32, poll_ms: u64) -> Child {
    spawn_worker_with(db, name, partitions, poll_ms, 2000, 5)
}

/// Starts `outbox-test-worker` as instance `name` with the given lease and
/// per-batch delay (the time a batch stays open after its side rows are
/// written), and waits for its `ready` line. Blocks the calling thread.
pub(super) fn spawn_worker_with(
    db: &TestDb,
    name: &str,
    partitions: u32,
    poll_ms: u64,
    lease_ms: u64,
    batch_delay_ms: u64,
) -> Child {
    // On PostgreSQL the worker's connections carry its name, so a case can
    // find them in pg_stat_activity.
    let url = match db.backend {
        Backend::Postgres => {
            let separator = if db.url().contains('?') { '&' } else { '?' };
            format!("{}{separator}application_name={name}", db.url())
        }
        Backend::MySql | Backend::Sqlite => db.url().to_owned(),
    };
    let mut child = Command::new(worker_binary())
        .env("OUTBOX_WORKER_URL", url)
        .env("OUTBOX_WORKER_PREFIX", &db.prefix)
        .env("OUTBOX_WORKER_NAME", name)
        .env("OUTBOX_WORKER_PARTITIONS", partitions.to_string())
        .env("OUTBOX_WORKER_LEASE_MS", lease_ms.to_string())
        .env("OUTBOX_WORKER_POLL_MS", poll_ms.to_string())
        .env("OUTBOX_WORKER_BATCH_DELAY_MS", batch_delay_ms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the worker process (built with the tests)");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("worker output");
    assert_eq!(line.trim(), "ready", "worker {name} did not start");
    child
}

/// Creates `<prefix>side`, the table the worker process (and the fault
/// cases' in-process handlers) write each delivery to; no unique key, so a
/// duplicate delivery shows as a second row.
pub(super) async fn create_side_table(db: &TestDb) {
    let (id, bytes) = match db.backend {
        Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
        Backend::MySql => ("BIGINT AUTO_INCREMENT PRIMARY KEY", "BINARY(16)"),
        Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
    };
    db.exec(&format!(
        "CREATE TABLE {} (id {id}, message_id {bytes} NOT NULL, partition_no BIGINT NOT NULL, seq BIGINT NOT NULL, \
         worker VARCHAR(64) NOT NULL, received_us BIGINT NOT NULL)",
        db.table("side")
    ))
    .await;
}

/// (partition, seq, worker, received_us, message_id) of every side row, in insert order.
pub(super) async fn side_rows(db: &TestDb) -> Vec<(i64, i64, String, i64, Vec<u8>)> {
    let sql = format!(
        "SELECT partition_no, seq, worker, received_us, message_id FROM {} ORDER BY id",
        db.table("side")
    );
    db.db
        .query_all_raw(Statement::from_string(db.db.get_database_backend(), sql))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row.try_get("", "partition_no").unwrap(),
                row.try_get("", "seq").unwrap(),
                row.try_get("", "worker").unwrap(),
                row.try_get("", "received_us").unwrap(),
                row.try_get("", "message_id").unwrap(),
            )
        })
        .collect()
}

/// Wall-clock microseconds since the Unix epoch.
pub(super) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Three consumer processes share 16 partitions in transactional mode; one
/// is killed with SIGKILL mid-stream. Every message is delivered, in order
/// per partition, none twice, and the partitions spread over the processes.
pub async fn three_processes_share_partitions_and_survive_a_kill(db: TestDb) {
    create_side_table(&db).await;
    let partitions = 16;
    let mut workers = Workers(vec![
        spawn_worker(&db, "worker-1", partitions, 100),
        spawn_worker(&db, "worker-2", partitions, 100),
        spawn_worker(&db, "worker-3", partitions, 100),
    ]);
    let producer = db
        .builder()
        .run_workers(false)
        .queue(Queue::produce_only("q", partitions))
        .start()
        .await
        .unwrap();
    let total = 2400;
    let mut killed = false;
    for chunk in 0..(total / 20) {
        let txn = db.db.begin().await.unwrap();
        let batch = (0..20).map(|i| {
            let n = chunk * 20 + i;
            (
                format!("k{}", n % 97),
                Message::new("t", n.to_string().into_bytes()),
            )
        });
        producer
            .outbox()
            .enqueue_batch(&txn, "q", batch)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
        // Kill worker 2 once it is busy with partitions of its own (or at
        // two thirds of the stream at the latest).
        let busy = chunk % 10 == 0
            && side_rows(&db)
                .await
                .iter()
                .filter(|r| r.2 == "worker-2")
                .count()
                >= 20;
        if !killed && (busy || chunk == total / 20 * 2 / 3) {
            // SIGKILL: no drain, no lease release, a batch likely in flight.
            workers.0[1].kill().unwrap();
            workers.0[1].wait().unwrap();
            killed = true;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let rows = side_rows(&db).await;
        let distinct: std::collections::HashSet<_> = rows.iter().map(|r| r.4.clone()).collect();
        if distinct.len() == total {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let sql = format!(
                "SELECT id, next_seq, processed_seq, lease_owner, lease_until, lease_token, attempts, last_error FROM {} ORDER BY id",
                db.table("partition")
            );
            let dump = db
                .db
                .query_all_raw(Statement::from_string(db.db.get_database_backend(), sql))
                .await
                .unwrap();
            for row in dump {
                eprintln!(
                    "partition {:?} next {:?} processed {:?} owner {:?} until {:?} token {:?} attempts {:?} error {:?}",
                    row.try_get::<i64>("", "id"),
                    row.try_get::<i64>("", "next_seq"),
                    row.try_get::<i64>("", "processed_seq"),
                    row.try_get::<Option<String>>("", "lease_owner"),
                    row.try_get::<i64>("", "lease_until"),
                    row.try_get::<i64>("", "lease_token"),
                    row.try_get::<i32>("", "attempts"),
                    row.try_get::<Option<String>>("", "last_error"),
                );
            }
            let instances = db
                .scalar(&format!(
                    "SELECT COUNT(*) AS n FROM {}",
                    db.table("instance")
                ))
                .await;
            eprintln!(
                "instance rows: {instances}, unsequenced: {}",
                db.unsequenced().await
            );
            panic!(
                "delivered {} of {total} after a worker was killed",
                distinct.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.stop().await;
    drop(workers);

    let rows = side_rows(&db).await;
    let mut next: HashMap<i64, i64> = HashMap::new();
    let mut order_violations = 0;
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for (partition, seq, worker, _, _) in &rows {
        let expected = next.entry(*partition).or_insert(1);
        if *seq != *expected {
            order_violations += 1;
        }
        *expected = seq + 1;
        *per_worker.entry(worker.clone()).or_default() += 1;
    }
    eprintln!(
        "three_processes_share_partitions_and_survive_a_kill on {:?}: sent {total}, delivered {}, duplicates {}, order violations {order_violations}, per worker {per_worker:?}",
        db.backend,
        rows.len(),
        rows.len() - total
    );
    assert_eq!(
        rows.len(),
        total,
        "duplicate deliveries in transactional mode"
    );
    assert_eq!(order_violations, 0);
    assert_eq!(
        per_worker.len(),
        3,
        "the partitions did not spread over the processes: {per_worker:?}"
    );
    assert!(
        per_worker.get("worker-2").is_some_and(|n| *n < total),
        "the killed worker took everything"
    );
}

/// A producer process's commit reaches a handler in a consumer process
/// (PostgreSQL through NOTIFY; elsewhere through the consumer's poll).
/// Prints the commit-to-handler latencies it saw.
pub async fn producer_and_consumer_processes(db: TestDb) {
    create_side_table(&db).await;
    // An hour's poll on PostgreSQL: only a notification can wake the consumer.
    let poll_ms = if db.backend == Backend::Postgres {
        3_600_000
    } else {
        50
    };
    let workers = Workers(vec![spawn_worker(&db, "consumer", 4, poll_ms)]);
    let producer = db
        .builder()
        .run_workers(false)
        .queue(Queue::produce_only("q", 4))
        .start()
        .await
        .unwrap();
    let mut committed = Vec::new();
    for i in 0..50u32 {
        let txn = db.db.begin().await.unwrap();
        producer
            .outbox()
            .enqueue(
                &txn,
                "q",
                PartitionKey::index(i % 4),
                Message::new("t", i.to_string().into_bytes()),
            )
            .await
            .unwrap();
        txn.commit().await.unwrap();
        committed.push(now_us());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while side_rows(&db).await.len() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer process did not get every message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    producer.stop().await;
    drop(workers);
    let rows = side_rows(&db).await;
    assert_eq!(rows.len(), 50);
    let mut latencies: Vec<f64> = rows
        .iter()
        .map(|(partition, seq, _, received, _)| {
            // Message i went to partition i % 4 as that partition's seq (i / 4) + 1.
            let i = usize::try_from((seq - 1) * 4 + partition).unwrap();
            (received - committed[i]).max(0) as f64 / 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "producer_and_consumer_processes on {:?}: commit-to-handler latency p50 {:.2} ms, max {:.2} ms",
        db.backend,
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}
