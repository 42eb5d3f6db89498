//! Hostile or odd input, and what is left behind: a flood of notifications
//! on the wake channel, heartbeat rows of instances that are gone, incoming
//! rows taken by another transaction under the sequencer, and servers that
//! are one of several primaries.

use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use outbox_core::{Message, PartitionKey, Queue};

use crate::{Backend, Recorder, TestDb, wait_until};

fn skip(case: &str, backend: Backend, why: &str) {
    eprintln!("!!! SKIPPING {case} on {backend:?}: not applicable: {why}");
}

/// Index and table scans of this test's partition table so far, which is
/// what each look for partitions with work costs (PostgreSQL's statistics
/// lag by up to a few seconds: a lower bound).
async fn partition_scans(db: &TestDb) -> i64 {
    db.scalar(&format!(
        "SELECT CAST(COALESCE(SUM(seq_scan + COALESCE(idx_scan, 0)), 0) AS BIGINT) AS n \
         FROM pg_stat_user_tables WHERE relname = '{}'",
        db.table("partition")
    ))
    .await
}

/// PostgreSQL: anyone who can connect can NOTIFY the wake channel. 200,000
/// notifications of junk are sent from another connection while an outbox
/// listens (a payload the outbox did not write means "look everywhere").
/// The flood may cost only a bounded number of looks at the tables (one at
/// a time, at most one every 10 ms: at most about 400 in the 4 s after it
/// starts), not one per notification, and a wakeup queued on the server
/// behind the flood (a producer-only instance's enqueue) must still reach
/// the consumer, whose poll interval is an hour, within 15 s. Memory: the
/// notifications wait in the server's queue and the socket until read; the
/// process holds at most one pending wake per partition, one for the
/// sequencer and one look. MySQL/MariaDB and SQLite have no notifications.
pub async fn notify_flood_is_coalesced_and_wakeups_stay_prompt(db: TestDb) {
    const CASE: &str = "notify_flood_is_coalesced_and_wakeups_stay_prompt";
    const FLOOD: i64 = 200_000;
    const WINDOW: Duration = Duration::from_secs(4);
    match db.backend {
        Backend::Postgres => {}
        Backend::MySql | Backend::Sqlite => {
            skip(
                CASE,
                db.backend,
                "no LISTEN/NOTIFY: wakeups are in-process, which nobody else can send",
            );
            return;
        }
    }
    let rec = Recorder::default();
    let consumer = db
        .builder()
        .poll_interval(Duration::from_secs(3600))
        // Vacuum reads the partition table too: out of the count.
        .vacuum_interval(Duration::from_secs(3600))
        .queue(Queue::leased("q", 4, rec.clone()))
        .start()
        .await
        .unwrap();
    let other = db.another_pool().await;
    let producer = db
        .builder_on(other.clone())
        .run_workers(false)
        .queue(Queue::produce_only("q", 4))
        .start()
        .await
        .unwrap();
    let send = |text: &'static str| {
        let (pool, outbox) = (other.clone(), producer.outbox().clone());
        async move {
            let txn = pool.begin().await.unwrap();
            outbox
                .enqueue(
                    &txn,
                    "q",
                    PartitionKey::index(1),
                    Message::new("t", text.as_bytes().to_vec()),
                )
                .await
                .unwrap();
            txn.commit().await.unwrap();
        }
    };
    let listening = format!(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN%{}wake%'",
        db.prefix
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while db.scalar(&listening).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no listener");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send("before").await;
    assert!(
        wait_until(Duration::from_secs(10), || rec.len() == 1).await,
        "no wakeup across instances before the flood"
    );
    // The statistics of the work done so far reach the server within a
    // second or so; they are counted before the flood, not in it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let scans_before = partition_scans(&db).await;
    let channel = outbox_core::wakeup_channel(&db.prefix);
    let flooded_at = tokio::time::Instant::now();
    // Four transactions of distinct payloads (the server folds identical
    // ones within a transaction into one).
    for part in 0..4 {
        other
            .execute_unprepared(&format!(
                "SELECT COUNT(pg_notify('{channel}', 'junk {part} ' || g)) FROM generate_series(1, {}) g",
                FLOOD / 4
            ))
            .await
            .unwrap();
    }
    let flood_took = flooded_at.elapsed();
    send("after").await;
    let sent_at = tokio::time::Instant::now();
    let woke = wait_until(Duration::from_secs(15), || rec.len() == 2).await;
    let latency = sent_at.elapsed();
    // A measuring window, not a wait for a condition: the looks made in the
    // first 4 s (statistics lag, so this is a lower bound of the looks).
    tokio::time::sleep_until(flooded_at + WINDOW).await;
    let looks = partition_scans(&db).await - scans_before;
    eprintln!(
        "{CASE}: {FLOOD} notifications sent in {} ms; the next wakeup delivered: {woke}, after {} ms; \
         partition table scans in the {} s from the flood's start: {looks}",
        flood_took.as_millis(),
        latency.as_millis(),
        WINDOW.as_secs()
    );
    producer.stop().await;
    consumer.stop().await;
    other.close().await.ok();
    assert!(
        woke,
        "a wakeup queued behind {FLOOD} junk notifications did not arrive within 15 s"
    );
    assert!(
        looks < 1_000,
        "{FLOOD} junk notifications cost {looks} scans of the partition table in {} s: \
         one look per notification, not coalesced",
        WINDOW.as_secs()
    );
    let payloads: Vec<String> = rec.all().into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, ["before", "after"]);
}

/// A heartbeat row whose instance is gone (killed, never stopped) is
/// deleted by the next instance's heartbeats once it ran out more than a
/// minute ago; a row that ran out only recently is kept (its instance may
/// just be slow), and so is the live instance's own.
pub async fn heartbeat_rows_of_gone_instances_are_deleted(db: TestDb) {
    let instance = db.table("instance");
    db.exec(&format!(
        "INSERT INTO {instance} (owner, heartbeat_until) VALUES ('gone-long-ago', 1)"
    ))
    .await;
    let recently = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 5_000) as i64;
    db.exec(&format!(
        "INSERT INTO {instance} (owner, heartbeat_until) VALUES ('gone-just-now', {recently})"
    ))
    .await;
    let handle = db
        .builder()
        .instance_name("alive")
        .queue(Queue::leased("q", 1, Recorder::default()))
        .start()
        .await
        .unwrap();
    let count = |owner: &'static str| {
        let (db, instance) = (db.clone(), instance.clone());
        async move {
            db.scalar(&format!(
                "SELECT COUNT(*) AS n FROM {instance} WHERE owner = '{owner}'"
            ))
            .await
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count("gone-long-ago").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the heartbeat row of an instance gone long ago is still there after 15 s of heartbeats"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count("gone-just-now").await, 1, "a recent row was deleted");
    assert_eq!(
        count("alive").await,
        1,
        "the live instance's row is missing"
    );
    handle.stop().await;
}

/// Another transaction (standing in for a sequencer that ignored the
/// partition lock, or an operator's cleanup) deletes one of three
/// unsequenced messages after the sequencer read them and before its own
/// UPDATE, which waits for that row's lock. The sequencer must notice that
/// it numbered fewer rows than it read and roll the pass back: the message
/// taken by the other transaction is not sequenced by this one (numbering
/// around it would leave a gap), and the other two are, with seqs 1 and 2.
/// SQLite has one writer: no other transaction can change the rows during a
/// sequencer's transaction.
pub async fn sequencer_rolls_back_when_incoming_rows_were_taken(db: TestDb) {
    const CASE: &str = "sequencer_rolls_back_when_incoming_rows_were_taken";
    let waiting_delete = match db.backend {
        Backend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE 'UPDATE \"{}\"%'",
            db.table("message")
        ),
        Backend::MySql => format!(
            "SELECT COUNT(*) AS n FROM information_schema.processlist \
             WHERE info LIKE 'UPDATE `{}`%'",
            db.table("message")
        ),
        Backend::Sqlite => {
            skip(
                CASE,
                db.backend,
                "one writer: no transaction can delete messages during a sequencer's",
            );
            return;
        }
    };
    let producer = db.producer("q", 2).await;
    let txn = db.db.begin().await.unwrap();
    let mut ids = Vec::new();
    for text in ["first", "taken", "third"] {
        ids.push(
            producer
                .outbox()
                .enqueue(
                    &txn,
                    "q",
                    PartitionKey::index(0),
                    Message::new("t", text.as_bytes().to_vec()),
                )
                .await
                .unwrap(),
        );
    }
    txn.commit().await.unwrap();
    producer.stop().await;
    let incoming: Vec<i64> = db
        .db
        .query_all_raw(Statement::from_string(
            db.db.get_database_backend(),
            format!(
                "SELECT id FROM {} WHERE seq IS NULL ORDER BY id",
                db.table("message")
            ),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<i64>("", "id").unwrap())
        .collect();
    assert_eq!(incoming.len(), 3);

    // The other transaction deletes the middle row and holds its lock.
    let other = db.another_pool().await;
    let taker = other.begin().await.unwrap();
    taker
        .execute_unprepared(&format!(
            "DELETE FROM {} WHERE id = {}",
            db.table("message"),
            incoming[1]
        ))
        .await
        .unwrap();
    let rec = Recorder::default();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while db.scalar(&waiting_delete).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sequencer never reached its UPDATE of the messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    taker.commit().await.unwrap();
    other.close().await.ok();
    assert!(
        wait_until(Duration::from_secs(30), || rec
            .all()
            .iter()
            .any(|r| r.message_id == ids[2]))
        .await,
        "the third message was not delivered"
    );
    let next_seq = handle
        .outbox()
        .admin()
        .queue_stats("q")
        .await
        .unwrap()
        .queue("q")
        .and_then(|q| q.partition(0))
        .map(|p| p.next_seq)
        .unwrap_or_default();
    handle.stop().await;
    let got: Vec<(String, i64)> = rec.all().into_iter().map(|r| (r.payload, r.seq)).collect();
    assert_eq!(
        got,
        [("first".to_owned(), 1), ("third".to_owned(), 2)],
        "the sequencer numbered a row another transaction had taken (next_seq {next_seq})"
    );
    assert_eq!(next_seq, 3);
}

/// The dialect's check for a multi-primary cluster (Galera, group
/// replication) is valid SQL for its backend and, on the servers the suite
/// runs on (none of them a cluster), finds nothing, so `start()` warns of
/// nothing. PostgreSQL and SQLite have no such check.
pub async fn multi_primary_check_runs_and_finds_no_cluster(db: TestDb) {
    let probe = db.dialect.multi_primary_probe();
    match db.backend {
        Backend::Postgres | Backend::Sqlite => assert!(probe.is_none()),
        Backend::MySql => {
            let probe = probe.expect("MySQL/MariaDB checks for Galera and group replication");
            let rows = db
                .db
                .query_all_raw(Statement::from_string(
                    db.db.get_database_backend(),
                    probe.to_owned(),
                ))
                .await
                .unwrap();
            assert!(rows.is_empty(), "the test server is not a cluster");
        }
    }
}
