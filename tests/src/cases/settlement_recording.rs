//! Recording a handler's outcome: whatever the reasons and however many dead
//! letters, the outcome is written, and a write that cannot succeed blocks
//! the partition visibly, without rerunning the handler in a loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::{DatabaseTransaction, TransactionTrait};
use outbox_core::{
    Batch, BatchResult, DeadLetterPage, DeadLetterScope, DeadLetterSummary, Delivery,
    LeasedHandler, Message, Outcome, PartitionKey, Queue, TransactionalHandler,
};

use super::PATIENCE;
use super::dead_letter::admin;
use crate::{Backend, TestDb, wait_until};

/// Gives a message's outcome from its payload and how often it was handled.
type Script = dyn Fn(&str, u32) -> Outcome + Send + Sync;

/// A per-message policy written once for both modes.
#[derive(Clone)]
struct Scripted {
    calls: Arc<Mutex<HashMap<String, u32>>>,
    largest_batch: Arc<AtomicUsize>,
    decide: Arc<Script>,
}

impl Scripted {
    fn new(decide: impl Fn(&str, u32) -> Outcome + Send + Sync + 'static) -> Self {
        Self {
            calls: Arc::default(),
            largest_batch: Arc::default(),
            decide: Arc::new(decide),
        }
    }

    fn run(&self, batch: &Batch) -> BatchResult {
        self.largest_batch
            .fetch_max(batch.messages.len(), Ordering::SeqCst);
        let mut calls = self.calls.lock().unwrap();
        let mut outcomes = Vec::with_capacity(batch.messages.len());
        for message in &batch.messages {
            let payload = payload_name(message);
            let n = calls.entry(payload.clone()).or_default();
            *n += 1;
            let outcome = (self.decide)(&payload, *n);
            let stop = outcome.is_retry();
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        BatchResult::PerMessage(outcomes)
    }

    fn calls(&self, payload: &str) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .get(payload)
            .copied()
            .unwrap_or(0)
    }
}

/// The payload's name: its text up to the first `|` (big payloads carry
/// filler after it).
fn payload_name(message: &Delivery) -> String {
    let end = message
        .payload
        .iter()
        .position(|b| *b == b'|')
        .unwrap_or(message.payload.len());
    String::from_utf8_lossy(&message.payload[..end]).into_owned()
}

#[async_trait::async_trait]
impl LeasedHandler for Scripted {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        self.run(batch)
    }
}

#[async_trait::async_trait]
impl TransactionalHandler for Scripted {
    async fn handle(&self, _txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        self.run(batch)
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Leased,
    Transactional,
}

impl Mode {
    const BOTH: [Mode; 2] = [Mode::Leased, Mode::Transactional];

    fn queue(self, name: &str, handler: &Scripted) -> Queue {
        match self {
            Mode::Leased => Queue::leased(name, 1, handler.clone()),
            Mode::Transactional => Queue::transactional(name, 1, handler.clone()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Leased => "leased",
            Mode::Transactional => "transactional",
        }
    }
}

/// Enqueues `messages` to partition 0 of `queue` from a producer-only
/// instance, so they are all waiting before any worker starts.
async fn enqueue_up_front(db: &TestDb, queue: &str, messages: Vec<Message>) {
    let producer = db.producer(queue, 1).await;
    let txn = db.db.begin().await.unwrap();
    producer
        .outbox()
        .enqueue_batch(
            &txn,
            queue,
            messages.into_iter().map(|m| (PartitionKey::index(0), m)),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    producer.stop().await;
}

async fn letters(db: &TestDb, queue: &str) -> Vec<DeadLetterSummary> {
    let admin = admin(db);
    let scope = DeadLetterScope::all().queue(queue);
    let mut page = DeadLetterPage::new(1000);
    let mut out = Vec::new();
    loop {
        let list = admin.list(&scope, &page).await.unwrap();
        out.extend(list.letters);
        match list.next_cursor {
            Some(cursor) => page = DeadLetterPage::new(1000).cursor(cursor),
            None => return out,
        }
    }
}

async fn letter_count(db: &TestDb, queue: &str) -> u64 {
    admin(db)
        .count(&DeadLetterScope::all().queue(queue))
        .await
        .unwrap()
}

/// Whether `text` is safe to store and print: no control character other
/// than newline and tab.
fn is_clean(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Per-message rejects of one batch with more dead letters than one
/// statement can carry bind parameters for (12 a row: 65,535 parameters on
/// PostgreSQL and MySQL, 32,766 on SQLite) are all dead-lettered, and no
/// message reaches the handler twice, in both modes.
pub async fn rejects_beyond_the_parameter_limit_are_all_dead_lettered(db: TestDb) {
    let n = match db.backend {
        Backend::Postgres | Backend::MySql => 7_000,
        Backend::Sqlite => 3_500,
    };
    for mode in Mode::BOTH {
        let queue = format!("q{}", mode.name());
        let messages = (0..n).map(|i| Message::new("t", format!("m{i}").into_bytes()));
        enqueue_up_front(&db, &queue, messages.collect()).await;
        let handler = Scripted::new(|payload, _| Outcome::reject(format!("refused {payload}")));
        let handle = db
            .builder()
            .sequencer_batch(10_000)
            .queue(mode.queue(&queue, &handler).batch_size(10_000))
            .start()
            .await
            .unwrap();
        let mut count = 0;
        let all = wait_until(PATIENCE, || {
            count = handler.calls.lock().unwrap().len();
            count == n
        })
        .await;
        assert!(all, "{mode:?}: handled {count} of {n}");
        let mut dead = 0;
        for _ in 0..(PATIENCE.as_millis() / 50) {
            dead = letter_count(&db, &queue).await;
            if dead == n as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stats = handle.outbox().admin().stats().await.unwrap();
        handle.stop().await;
        assert_eq!(
            dead,
            n as u64,
            "{mode:?}: {dead} of {n} rejects dead-lettered; partition: {:?}",
            stats.queue(&queue).unwrap().partitions[0]
        );
        assert_eq!(
            handler.largest_batch.load(Ordering::SeqCst),
            n,
            "{mode:?}: the messages were meant to form one batch"
        );
        let twice: Vec<(String, u32)> = handler
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(p, n)| (p.clone(), *n))
            .take(5)
            .collect();
        assert!(
            twice.is_empty(),
            "{mode:?}: messages handled more than once, e.g. {twice:?}"
        );
    }
}

/// Reasons with NUL bytes and terminal escapes, and reasons far too long,
/// are stored sanitized and bounded, as a partition's retry error, as dead
/// letters' errors, and through the admin reject; the partition goes on.
pub async fn control_bytes_and_long_reasons_are_stored_sanitized(db: TestDb) {
    let retry_reason = "retry \0 nul \u{1b}[2J\u{1b}]0;owned\u{7} end";
    let reject_reason = "reject \0\u{1b}[31mred\u{1b}[0m\r\nline2\ttab";
    let long_reason = "y".repeat(100_000);
    for mode in Mode::BOTH {
        let queue = format!("q{}", mode.name());
        let release = Arc::new(AtomicBool::new(false));
        let long = long_reason.clone();
        let released = release.clone();
        let handler = Scripted::new(move |payload, _| match payload {
            "m0" if !released.load(Ordering::SeqCst) => Outcome::Retry {
                reason: retry_reason.into(),
                after: Some(Duration::from_millis(10)),
            },
            "m1" => Outcome::reject(reject_reason),
            "m2" => Outcome::reject(long.clone()),
            _ => Outcome::Success,
        });
        let handle = db
            .builder()
            .queue(mode.queue(&queue, &handler))
            .start()
            .await
            .unwrap();
        let txn = db.db.begin().await.unwrap();
        let messages = (0..5).map(|i| {
            (
                PartitionKey::index(0),
                Message::new("t", format!("m{i}").into_bytes()),
            )
        });
        handle
            .outbox()
            .enqueue_batch(&txn, &queue, messages)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        handle.outbox().notify();

        // While m0 is retried, the partition shows its error, sanitized.
        let admin = handle.outbox().admin();
        let mut last_error = None;
        for _ in 0..(PATIENCE.as_millis() / 20) {
            let stats = admin.stats().await.unwrap();
            last_error = stats.queue(&queue).unwrap().partitions[0]
                .last_error
                .clone();
            if last_error.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last_error = last_error.unwrap_or_else(|| {
            panic!(
                "{mode:?}: the retry error was never recorded (m0 handled {} times)",
                handler.calls("m0")
            )
        });
        assert!(
            is_clean(&last_error),
            "{mode:?}: partition error stored raw: {last_error:?}"
        );
        assert!(
            last_error.starts_with("retry ") && last_error.ends_with(" end"),
            "{mode:?}: {last_error:?}"
        );

        release.store(true, Ordering::SeqCst);
        assert!(
            wait_until(PATIENCE, || handler.calls("m4") >= 1).await,
            "{mode:?}: the partition did not go on after the bad reasons (calls {:?})",
            handler.calls.lock().unwrap()
        );
        let mut dead = Vec::new();
        for _ in 0..(PATIENCE.as_millis() / 20) {
            dead = letters(&db, &queue).await;
            if dead.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        handle.stop().await;
        assert_eq!(dead.len(), 2, "{mode:?}: {dead:?}");
        let by_seq: HashMap<i64, &DeadLetterSummary> = dead.iter().map(|d| (d.seq, d)).collect();
        let rejected = &by_seq[&2].last_error;
        assert!(is_clean(rejected), "{mode:?}: stored raw: {rejected:?}");
        assert!(
            rejected.contains("red") && rejected.contains("\nline2\ttab"),
            "{mode:?}: printable text, newline and tab are kept: {rejected:?}"
        );
        let long_stored = &by_seq[&3].last_error;
        assert!(
            long_stored.len() <= 4096 && long_stored.starts_with("yyyy"),
            "{mode:?}: a 100,000-byte reason stored as {} bytes",
            long_stored.len()
        );
        assert!(
            long_stored.contains("truncated"),
            "{mode:?}: a cut reason says so: {:?}",
            &long_stored[long_stored.len().saturating_sub(80)..]
        );

        // The admin reject (a failed replay) stores its reason the same way.
        let ids: Vec<i64> = dead.iter().map(|d| d.id).collect();
        let changed = admin
            .dead_letters()
            .reject(&ids, "replay \0 failed \u{1b}[1m")
            .await
            .unwrap();
        assert_eq!(changed, 2);
        for letter in letters(&db, &queue).await {
            assert!(
                is_clean(&letter.last_error) && letter.last_error.starts_with("replay "),
                "{mode:?}: admin reject stored {:?}",
                letter.last_error
            );
        }
    }
}

/// On MariaDB one statement may carry at most `max_allowed_packet` bytes
/// (16 MiB by default): enqueue, dead letters and requeue of a batch of
/// 40 half-MiB messages (20 MiB) are split by bytes and all recorded. The
/// same runs on the other backends, whose limits are far higher.
pub async fn twenty_mib_of_dead_letters_are_recorded_in_chunks(db: TestDb) {
    const COUNT: usize = 40;
    const SIZE: usize = 512 * 1024;
    let body = |i: usize| {
        let mut payload = format!("m{i}|").into_bytes();
        payload.resize(SIZE, b'a' + (i % 26) as u8);
        payload
    };
    // Rejected on first delivery, accepted once requeued.
    let handler = Scripted::new(|_, call| {
        if call == 1 {
            Outcome::reject("first delivery refused")
        } else {
            Outcome::Success
        }
    });
    let payloads = Arc::new(Mutex::new(HashMap::new()));
    let seen = payloads.clone();
    let recorder = handler.clone();
    let handle = db
        .builder()
        .queue(Queue::leased("q", 1, ChecksPayloads(recorder, seen)).batch_size(100))
        .start()
        .await
        .unwrap();
    let txn = db.db.begin().await.unwrap();
    let messages = (0..COUNT).map(|i| (PartitionKey::index(0), Message::new("t", body(i))));
    handle
        .outbox()
        .enqueue_batch(&txn, "q", messages)
        .await
        .expect("enqueue of 20 MiB in one call");
    txn.commit().await.unwrap();
    handle.outbox().notify();

    let mut dead = 0;
    for _ in 0..(PATIENCE.as_millis() / 50) {
        dead = letter_count(&db, "q").await;
        if dead == COUNT as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = handle.outbox().admin().stats().await.unwrap();
    assert_eq!(
        dead,
        COUNT as u64,
        "dead letters recorded; partition: {:?}",
        stats.queue("q").unwrap().partitions[0]
    );
    assert_eq!(
        handler.largest_batch.load(Ordering::SeqCst),
        COUNT,
        "the messages were meant to form one batch"
    );
    let requeued = handle
        .outbox()
        .admin()
        .dead_letters()
        .requeue(&DeadLetterScope::all(), 1000)
        .await
        .expect("requeue of 20 MiB");
    assert_eq!(requeued.len(), COUNT);
    assert!(
        wait_until(PATIENCE, || (0..COUNT)
            .all(|i| handler.calls(&format!("m{i}")) == 2))
        .await,
        "requeued messages delivered: {:?}",
        handler.calls.lock().unwrap()
    );
    handle.stop().await;
    let payloads = payloads.lock().unwrap();
    for i in 0..COUNT {
        assert!(
            payloads.get(&format!("m{i}")) == Some(&body(i)),
            "m{i}'s payload changed on the way"
        );
    }
}

/// Records each payload in full, then runs the script.
#[derive(Clone)]
struct ChecksPayloads(Scripted, Arc<Mutex<HashMap<String, Vec<u8>>>>);

#[async_trait::async_trait]
impl LeasedHandler for ChecksPayloads {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let mut seen = self.1.lock().unwrap();
        for message in &batch.messages {
            seen.insert(payload_name(message), message.payload.clone());
        }
        drop(seen);
        self.0.run(batch)
    }
}

/// Installs a trigger that makes every dead-letter insert fail.
async fn refuse_dead_letters(db: &TestDb) {
    let table = db.table("dead_letter");
    let name = db.table("refuse");
    let statements = match db.backend {
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'dead letters are closed by the test'; END $$"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ],
        Backend::MySql => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'dead letters are closed by the test'"
        )],
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'dead letters are closed by the test'); END"
        )],
    };
    for statement in statements {
        db.exec(&statement).await;
    }
}

async fn admit_dead_letters(db: &TestDb) {
    let table = db.table("dead_letter");
    let name = db.table("refuse");
    let statements = match db.backend {
        Backend::Postgres => vec![
            format!("DROP TRIGGER {name} ON {table}"),
            format!("DROP FUNCTION {name}()"),
        ],
        Backend::MySql | Backend::Sqlite => vec![format!("DROP TRIGGER {name}")],
    };
    for statement in statements {
        db.exec(&statement).await;
    }
}

/// A dead letter the database refuses to store (a trigger raises an error on
/// every insert): the partition shows as blocked in stats with that error,
/// the leased handler is not called again (the outcome is kept and its write
/// retried), the transactional handler is rerun only after a growing
/// backoff; once the trigger is gone the outcome is recorded and the
/// partition goes on.
pub async fn unrecordable_outcome_blocks_the_partition_and_backs_off(db: TestDb) {
    refuse_dead_letters(&db).await;
    let script = |payload: &str, _| match payload {
        "m0" => Outcome::reject("poison"),
        _ => Outcome::Success,
    };
    let (leased, transactional) = (Scripted::new(script), Scripted::new(script));
    let handle = db
        .builder()
        .queue(Mode::Leased.queue("qleased", &leased))
        .queue(Mode::Transactional.queue("qtransactional", &transactional))
        .start()
        .await
        .unwrap();
    let outbox = handle.outbox().clone();
    for queue in ["qleased", "qtransactional"] {
        let txn = db.db.begin().await.unwrap();
        let messages = (0..2).map(|i| {
            (
                PartitionKey::index(0),
                Message::new("t", format!("m{i}").into_bytes()),
            )
        });
        outbox.enqueue_batch(&txn, queue, messages).await.unwrap();
        txn.commit().await.unwrap();
    }
    outbox.notify();

    // Both partitions show as blocked, with the database's error.
    let admin = outbox.admin();
    let blocked = |stats: &outbox_core::OutboxStats, queue: &str| {
        let p = &stats.queue(queue).unwrap().partitions[0];
        p.blocked_by_retry
            && p.last_error
                .as_deref()
                .is_some_and(|e| e.contains("dead letters are closed by the test"))
    };
    let mut stats = admin.stats().await.unwrap();
    for _ in 0..(PATIENCE.as_millis() / 20) {
        if blocked(&stats, "qleased") && blocked(&stats, "qtransactional") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = admin.stats().await.unwrap();
    }
    for queue in ["qleased", "qtransactional"] {
        let q = stats.queue(queue).unwrap();
        assert!(
            blocked(&stats, queue) && q.blocked_partitions == 1,
            "{queue}: not shown as blocked with the error: {:?}",
            q.partitions[0]
        );
    }

    // Over a window, the handler is not called in a loop. Leased: the
    // outcome is kept and its write retried; the handler is never asked
    // again. Transactional: the batch's writes rolled back, so it runs
    // again, but only after a backoff that doubles from 50 ms: a handful
    // of runs in 3 s, where a loop would make hundreds.
    let before = transactional.calls("m0");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = transactional.calls("m0") - before;
    let leased_calls = leased.calls("m0");
    eprintln!(
        "unrecordable outcome on {:?}: leased handler calls for m0 {leased_calls}; transactional runs in a 3 s window {window} (m0 {} in all)",
        db.backend,
        transactional.calls("m0")
    );

    admit_dead_letters(&db).await;
    let mut dead = (0, 0);
    for _ in 0..(PATIENCE.as_millis() / 50) {
        dead = (
            letter_count(&db, "qleased").await,
            letter_count(&db, "qtransactional").await,
        );
        if dead == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead, (1, 1), "dead letters after the trigger was dropped");
    assert!(
        wait_until(PATIENCE, || leased.calls("m1") >= 1
            && transactional.calls("m1") >= 1)
        .await,
        "m1 never delivered after the trigger was dropped"
    );
    handle.stop().await;
    let stats = admin.stats().await.unwrap();
    for queue in ["qleased", "qtransactional"] {
        let p = &stats.queue(queue).unwrap().partitions[0];
        assert!(
            !p.blocked_by_retry && p.processed_seq == 2,
            "{queue}: {p:?}"
        );
    }
    assert_eq!(
        (leased_calls, leased.calls("m0")),
        (1, 1),
        "the leased handler was called again for an outcome it had given"
    );
    assert!(
        window <= 7,
        "the transactional handler ran {window} times in 3 s while its outcome could not be recorded"
    );
}
