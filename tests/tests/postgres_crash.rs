//! Fencing after a database crash (PostgreSQL): a private cluster, so it can
//! be killed with `pg_ctl stop -m immediate` (no shutdown checkpoint, WAL
//! not yet flushed is lost) without disturbing the shared server.
//!
//! The cluster runs with `wal_writer_delay = 10s`, so a commit that did not
//! wait for its WAL flush (`synchronous_commit = off`) is still unflushed
//! when the test crashes the server right after it: what the outbox relies
//! on must have been committed durably.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, Statement,
    TransactionTrait,
};
use outbox_core::{
    Batch, BatchResult, Message, Outbox, OutboxBuilder, OutboxSchema, Queue, TransactionalHandler,
};
use outbox_postgres::PostgresDialect;
use outbox_tests::private_postgres::PrivateCluster;
use outbox_tests::{Recorder, poll_until};

const SETTINGS: &[&str] = &[
    "wal_writer_delay=10000ms",
    "autovacuum=off",
    "max_connections=200",
];

async fn pool(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(24)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options).await.expect("connect")
}

fn builder(db: &DatabaseConnection) -> OutboxBuilder {
    Outbox::builder(db.clone(), PostgresDialect)
        .poll_interval(Duration::from_millis(50))
        .vacuum_interval(Duration::from_millis(200))
}

async fn migrate(db: &DatabaseConnection) {
    OutboxSchema::new(PostgresDialect)
        .migrate(db)
        .await
        .expect("migrate");
}

/// A lease taken just before the crash must not be handed out again with
/// the same fencing token after it: two holders of one token could both
/// acknowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_token_is_never_handed_out_twice_across_a_crash() {
    let Some(cluster) = PrivateCluster::start(
        "lease_token_is_never_handed_out_twice_across_a_crash",
        SETTINGS,
    ) else {
        return;
    };
    let db = pool(&cluster.url()).await;
    migrate(&db).await;
    // Producer-only: no heartbeat or worker commits that would flush the
    // WAL between the take and the crash.
    let handle = builder(&db)
        .queue(Queue::produce_only("q", 1))
        .run_workers(false)
        .start()
        .await
        .expect("start");
    let first = handle
        .outbox()
        .take_lease("q", 0, "a", Duration::from_secs(600))
        .await
        .unwrap()
        .expect("the partition is free");
    cluster.crash().expect("crash");
    cluster.up().expect("restart");
    drop(handle);
    db.close().await.ok();

    let db = pool(&cluster.url()).await;
    let handle = builder(&db)
        .queue(Queue::produce_only("q", 1))
        .run_workers(false)
        .start()
        .await
        .expect("start after the crash");
    let second = handle
        .outbox()
        .take_lease("q", 0, "b", Duration::from_secs(600))
        .await
        .unwrap();
    if let Some(second) = second {
        assert!(
            second.token > first.token,
            "fencing token {} was handed out twice: to `a` before the crash and to `b` after it",
            first.token
        );
    }
    // `None` is right too: the lease `a` took survived the crash.
    handle.stop().await;
}

/// Writes one side row per message in the partition's transaction.
#[derive(Clone)]
struct SideWriter;

#[async_trait::async_trait]
impl TransactionalHandler for SideWriter {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        for m in &batch.messages {
            let insert = Statement::from_sql_and_values(
                txn.get_database_backend(),
                "INSERT INTO crash_side (partition_no, seq, message_id) VALUES ($1, $2, $3)",
                [
                    i64::from(batch.partition).into(),
                    m.seq.into(),
                    m.message_id.as_bytes().to_vec().into(),
                ],
            );
            if let Err(err) = txn.execute_raw(insert).await {
                return BatchResult::unavailable(err.to_string());
            }
        }
        BatchResult::success()
    }
}

/// Recording leased handler.
#[derive(Clone)]
struct Record(Recorder);

#[async_trait::async_trait]
impl outbox_core::LeasedHandler for Record {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        self.0.record(batch);
        BatchResult::success()
    }
}

/// Load on a transactional and a leased queue; the server is killed in
/// immediate mode in the middle of it and restarted. The instance keeps
/// running through it. Afterwards: every message whose enqueue committed
/// was delivered, none twice in transactional mode, and each partition's
/// deliveries are in sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_mid_load_duplicates_and_reorders_nothing() {
    let case = "crash_mid_load_duplicates_and_reorders_nothing";
    let Some(cluster) = PrivateCluster::start(case, SETTINGS) else {
        return;
    };
    let db = pool(&cluster.url()).await;
    migrate(&db).await;
    db.execute_unprepared(
        "CREATE TABLE crash_side (id BIGSERIAL PRIMARY KEY, partition_no INT NOT NULL, \
         seq BIGINT NOT NULL, message_id BYTEA NOT NULL)",
    )
    .await
    .unwrap();
    let recorder = Recorder::default();
    let handle = builder(&db)
        .queue(Queue::transactional("tx", 4, SideWriter).batch_size(20))
        .queue(
            Queue::leased("ls", 4, Record(recorder.clone()))
                .batch_size(20)
                .handler_timeout(Duration::from_secs(2))
                .lease(Duration::from_secs(5)),
        )
        .start()
        .await
        .expect("start");
    let outbox = handle.outbox().clone();

    // Producers: commits that returned Ok are certain; the rest may or may
    // not have happened.
    let committed: Arc<Mutex<HashMap<&'static str, HashSet<uuid::Uuid>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for queue in ["tx", "ls"] {
        let (db, outbox, committed, stop) =
            (db.clone(), outbox.clone(), committed.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n < 300 && !stop.load(Ordering::SeqCst) {
                let attempt = async {
                    let txn = db.begin().await?;
                    let ids = outbox
                        .enqueue_batch(
                            &txn,
                            queue,
                            (0..10u64).map(|i| {
                                (format!("k{}", (n * 10 + i) % 7), Message::new("t", vec![1]))
                            }),
                        )
                        .await
                        .map_err(|e| outbox_core::DbErr::Custom(e.to_string()))?;
                    txn.commit().await?;
                    Ok::<_, outbox_core::DbErr>(ids)
                };
                match attempt.await {
                    Ok(ids) => {
                        committed
                            .lock()
                            .unwrap()
                            .entry(queue)
                            .or_default()
                            .extend(ids);
                        outbox.notify();
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // Crash once a good part was delivered.
    let side_rows = |db: DatabaseConnection| async move {
        db.query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM crash_side".to_owned(),
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get::<i64>("", "n").ok())
        .unwrap_or(0)
    };
    poll_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move { side_rows(db).await >= 600 }
    })
    .await
    .then_some(())
    .expect("600 messages delivered before the crash");
    cluster.crash().expect("crash");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.up().expect("restart");
    for producer in producers {
        producer.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);

    let committed = committed.lock().unwrap().clone();
    let tx_ids = committed.get("tx").cloned().unwrap_or_default();
    let ls_ids = committed.get("ls").cloned().unwrap_or_default();
    let delivered_tx = || {
        let db = db.clone();
        async move {
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT partition_no, seq, message_id FROM crash_side ORDER BY id".to_owned(),
                ))
                .await
                .unwrap_or_default();
            rows.iter()
                .map(|r| {
                    let id: Vec<u8> = r.try_get("", "message_id").unwrap();
                    (
                        r.try_get::<i32>("", "partition_no").unwrap(),
                        r.try_get::<i64>("", "seq").unwrap(),
                        uuid::Uuid::from_slice(&id).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let all_arrived = poll_until(Duration::from_secs(120), || {
        let (recorder, tx_ids, ls_ids) = (recorder.clone(), tx_ids.clone(), ls_ids.clone());
        async move {
            let got: HashSet<_> = delivered_tx()
                .await
                .into_iter()
                .map(|(_, _, id)| id)
                .collect();
            let leased: HashSet<_> = recorder.all().into_iter().map(|r| r.message_id).collect();
            tx_ids.is_subset(&got) && ls_ids.is_subset(&leased)
        }
    })
    .await;
    handle.stop().await;

    let rows = delivered_tx().await;
    let mut seen = HashSet::new();
    let duplicates: Vec<_> = rows.iter().filter(|(_, _, id)| !seen.insert(*id)).collect();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut reordered = Vec::new();
    for (partition, seq, _) in &rows {
        let expected = next.entry(*partition).or_insert(1);
        if *seq != *expected {
            reordered.push((*partition, *seq, *expected));
        }
        *expected = seq + 1;
    }
    eprintln!(
        "{case}: transactional {} committed, {} side rows; leased {} committed, {} deliveries",
        tx_ids.len(),
        rows.len(),
        ls_ids.len(),
        recorder.len()
    );
    assert!(
        duplicates.is_empty(),
        "transactional mode delivered {} messages twice: {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)]
    );
    assert!(
        reordered.is_empty(),
        "transactional deliveries out of sequence (partition, seq, expected): {:?}",
        &reordered[..reordered.len().min(5)]
    );
    assert_eq!(
        recorder.order_violations(),
        0,
        "leased deliveries out of order"
    );
    assert!(all_arrived, "committed messages were lost across the crash");
}
