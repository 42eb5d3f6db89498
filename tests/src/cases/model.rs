//! Model-based test: random (seeded) sequences of enqueues and handler
//! outcomes, with worker restarts, checked against a simple model of what
//! the outbox promises.
//!
//! Each message draws a *fate* when it is enqueued:
//! - healthy: always succeeds;
//! - transient: fails its first few evaluations (fewer than the retry
//!   policy's attempts) in a drawn *style*, then succeeds;
//! - unavailable: its dependency is down for its first few evaluations;
//! - poison: always fails (retry, panic or timeout);
//! - rejected: the handler rejects it (per message or for the whole batch).
//!
//! Styles: a per-message outcome, a batch-level outcome (the handler cannot
//! say which message failed), a panic, or a handler that outlives its
//! timeout. The handler evaluates a batch's messages in order and stops at
//! the first failure, as a real one would.
//!
//! The model: a message is dead-lettered exactly when its fate is poison or
//! rejected, once; every other message is delivered, exactly once in
//! transactional mode (counted by the rows its handler wrote in the
//! partition's transaction) and at least once in leased mode; within a
//! partition, messages arrive in enqueue order (which is commit order: one
//! producer).
//!
//! Seeds: `OUTBOX_MODEL_SEED=<n>` runs that one seed; otherwise
//! `OUTBOX_MODEL_RUNS` seeds (default 2, the short form CI runs) starting
//! from a fixed base. Every run prints its seed; a failure names it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use outbox_core::{
    Batch, BatchResult, LeasedHandler, Message, OutboxHandle, Outcome, PartitionKey, Queue,
    RetryPolicy, TransactionalHandler,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::TestDb;

const MAX_ATTEMPTS: u32 = 3;
const HANDLER_TIMEOUT: Duration = Duration::from_millis(400);
const BASE_SEED: u64 = 7_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    PerMessage,
    WholeBatch,
    Panic,
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Healthy,
    Transient { fails: u32, style: Style },
    Unavailable { fails: u32, whole_batch: bool },
    Poison { style: Style },
    Rejected { whole_batch: bool },
}

impl Fate {
    fn dead_lettered(self) -> bool {
        matches!(self, Fate::Poison { .. } | Fate::Rejected { .. })
    }

    fn draw(rng: &mut StdRng) -> Fate {
        let style = |rng: &mut StdRng| match rng.random_range(0..20) {
            0..=7 => Style::PerMessage,
            8..=14 => Style::WholeBatch,
            15..=18 => Style::Panic,
            _ => Style::Timeout,
        };
        match rng.random_range(0..100) {
            0..=69 => Fate::Healthy,
            70..=81 => Fate::Transient {
                fails: rng.random_range(1..MAX_ATTEMPTS),
                style: style(rng),
            },
            82..=87 => Fate::Unavailable {
                fails: rng.random_range(1..=4),
                whole_batch: rng.random_bool(0.5),
            },
            88..=93 => Fate::Poison { style: style(rng) },
            _ => Fate::Rejected {
                whole_batch: rng.random_bool(0.5),
            },
        }
    }
}

/// What the handler does with one evaluation of a message.
enum Verdict {
    Success,
    Fail(BatchResult),
    Panic,
    Hang,
}

/// The handler's view: each message's fate (by payload), how often it was
/// evaluated, and what it delivered.
#[derive(Clone, Default)]
struct Script {
    fates: Arc<Mutex<HashMap<u64, Fate>>>,
    evaluations: Arc<Mutex<HashMap<u64, u32>>>,
    /// Leased mode: (partition, seq, message number) per delivery.
    delivered: Arc<Mutex<Vec<(u32, i64, u64)>>>,
    /// Transactional mode: side rows that already existed, i.e. a message
    /// whose handler's writes had already committed was handled again.
    duplicates: Arc<Mutex<Vec<u64>>>,
}

fn number(payload: &[u8]) -> u64 {
    String::from_utf8_lossy(payload).parse().unwrap_or(u64::MAX)
}

fn failure(style: Style, reason: String, index: usize) -> Verdict {
    match style {
        Style::PerMessage => {
            let mut outcomes = vec![Outcome::Success; index];
            outcomes.push(Outcome::Retry {
                reason,
                after: Some(Duration::from_millis(5)),
            });
            Verdict::Fail(BatchResult::PerMessage(outcomes))
        }
        Style::WholeBatch => Verdict::Fail(BatchResult::All(Outcome::Retry {
            reason,
            after: Some(Duration::from_millis(5)),
        })),
        Style::Panic => Verdict::Panic,
        Style::Timeout => Verdict::Hang,
    }
}

impl Script {
    /// Evaluates the batch's messages in order; returns how many succeeded
    /// and the verdict that stopped it (success when none failed).
    fn evaluate(&self, batch: &Batch) -> (usize, Verdict) {
        let fates = self.fates.lock().unwrap();
        let mut evaluations = self.evaluations.lock().unwrap();
        for (index, message) in batch.messages.iter().enumerate() {
            let n = number(&message.payload);
            let fate = fates.get(&n).copied().unwrap_or(Fate::Healthy);
            let count = evaluations.entry(n).or_default();
            *count += 1;
            let tried = *count;
            let reason = format!("m{n} failed (evaluation {tried})");
            let verdict = match fate {
                Fate::Healthy => None,
                Fate::Transient { fails, style } => {
                    (tried <= fails).then(|| failure(style, reason, index))
                }
                Fate::Poison { style } => Some(failure(style, reason, index)),
                Fate::Unavailable { fails, whole_batch } => (tried <= fails).then(|| {
                    let down = Outcome::Unavailable {
                        reason,
                        after: Some(Duration::from_millis(5)),
                    };
                    if whole_batch {
                        Verdict::Fail(BatchResult::All(down))
                    } else {
                        let mut outcomes = vec![Outcome::Success; index];
                        outcomes.push(down);
                        Verdict::Fail(BatchResult::PerMessage(outcomes))
                    }
                }),
                Fate::Rejected { whole_batch } => Some(Verdict::Fail(if whole_batch {
                    BatchResult::reject(reason)
                } else {
                    let mut outcomes = vec![Outcome::Success; index];
                    outcomes.push(Outcome::reject(reason));
                    BatchResult::PerMessage(outcomes)
                })),
            };
            if let Some(verdict) = verdict {
                return (index, verdict);
            }
        }
        (batch.messages.len(), Verdict::Success)
    }

    async fn conclude(verdict: Verdict) -> BatchResult {
        match verdict {
            Verdict::Success => BatchResult::success(),
            Verdict::Fail(result) => result,
            // A panic without the panic hook's message on stderr.
            Verdict::Panic => {
                std::panic::resume_unwind(Box::new("model handler panics as scripted"))
            }
            Verdict::Hang => {
                tokio::time::sleep(HANDLER_TIMEOUT * 4).await;
                BatchResult::success()
            }
        }
    }
}

struct Leased(Script);

#[async_trait::async_trait]
impl LeasedHandler for Leased {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let (succeeded, verdict) = self.0.evaluate(batch);
        {
            let mut delivered = self.0.delivered.lock().unwrap();
            for message in &batch.messages[..succeeded] {
                delivered.push((batch.partition, message.seq, number(&message.payload)));
            }
        }
        Script::conclude(verdict).await
    }
}

struct Transactional(Script, TestDb);

#[async_trait::async_trait]
impl TransactionalHandler for Transactional {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        let (succeeded, verdict) = self.0.evaluate(batch);
        for message in &batch.messages[..succeeded] {
            // The side table's key is the message id: a failed insert means
            // this message's writes had committed before. Note it (the
            // model fails the run) and go on, rather than block the partition.
            let savepoint = match txn.begin().await {
                Ok(savepoint) => savepoint,
                Err(err) => return BatchResult::unavailable(err.to_string()),
            };
            let inserted = savepoint
                .execute_raw(self.1.side_insert(message.message_id, message.seq))
                .await;
            let released = match inserted {
                Ok(_) => savepoint.commit().await,
                Err(_) => {
                    self.0
                        .duplicates
                        .lock()
                        .unwrap()
                        .push(number(&message.payload));
                    savepoint.rollback().await
                }
            };
            if let Err(err) = released {
                return BatchResult::unavailable(err.to_string());
            }
        }
        Script::conclude(verdict).await
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("OUTBOX_MODEL_SEED") {
        return vec![seed.parse().expect("OUTBOX_MODEL_SEED is a number")];
    }
    let runs: u64 = std::env::var("OUTBOX_MODEL_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    (0..runs).map(|i| BASE_SEED + i).collect()
}

/// Random enqueues and outcomes, with restarts, against the model, in both
/// modes.
pub async fn model_random_operations_match_the_model(db: TestDb) {
    db.create_side_table().await;
    for seed in seeds() {
        for transactional in [true, false] {
            run(&db, seed, transactional).await;
        }
    }
}

async fn start(
    db: &TestDb,
    queue: &str,
    partitions: u32,
    script: &Script,
    transactional: bool,
) -> OutboxHandle {
    let retry = RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(20))
        .jitter(0.0)
        .max_attempts(Some(MAX_ATTEMPTS));
    let queue = if transactional {
        Queue::transactional(queue, partitions, Transactional(script.clone(), db.clone()))
    } else {
        Queue::leased(queue, partitions, Leased(script.clone())).lease(Duration::from_secs(5))
    };
    db.builder()
        .queue(
            queue
                .batch_size(8)
                .handler_timeout(HANDLER_TIMEOUT)
                .retry(retry),
        )
        .start()
        .await
        .unwrap()
}

async fn run(db: &TestDb, seed: u64, transactional: bool) {
    let mode = if transactional {
        "transactional"
    } else {
        "leased"
    };
    let queue = format!("model_{seed}_{mode}");
    let context = format!(
        "model seed {seed} ({mode}, {:?}; rerun with OUTBOX_MODEL_SEED={seed})",
        db.backend
    );
    eprintln!("{context}");
    let mut rng = StdRng::seed_from_u64(seed);
    let partitions = rng.random_range(2..=4u32);
    let script = Script::default();
    let mut handle = start(db, &queue, partitions, &script, transactional).await;

    // The plan: batches of enqueues, with a restart after some of them.
    let batches = rng.random_range(10..=16usize);
    let restarts: HashSet<usize> = (0..rng.random_range(1..=2))
        .map(|_| rng.random_range(1..batches))
        .collect();
    let mut next = 0u64;
    // message number -> (partition, message id)
    let mut enqueued: BTreeMap<u64, (u32, uuid::Uuid)> = BTreeMap::new();
    for b in 0..batches {
        let size = rng.random_range(1..=12usize);
        let mut rows = Vec::new();
        for _ in 0..size {
            let n = next;
            next += 1;
            let partition = if rng.random_bool(0.4) {
                0
            } else {
                rng.random_range(0..partitions)
            };
            script.fates.lock().unwrap().insert(n, Fate::draw(&mut rng));
            rows.push((partition, n));
        }
        let ids = enqueue(db, handle.outbox(), &queue, &rows, &context).await;
        handle.outbox().notify();
        for ((p, n), id) in rows.into_iter().zip(ids) {
            enqueued.insert(n, (p, id));
        }
        if restarts.contains(&b) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
            handle.stop().await;
            handle = start(db, &queue, partitions, &script, transactional).await;
        }
    }

    let fates = script.fates.lock().unwrap().clone();
    let expected_dead: HashSet<uuid::Uuid> = enqueued
        .iter()
        .filter(|(n, _)| fates[n].dead_lettered())
        .map(|(_, (_, id))| *id)
        .collect();
    let expected_live = enqueued.len() - expected_dead.len();

    // Wait until every message is settled: delivered or dead-lettered.
    let settled = crate::poll_until(Duration::from_secs(90), || async {
        let dead = dead_letters(db, &queue).await.len();
        let live = if transactional {
            side_ids(db, &enqueued).await.len()
        } else {
            let delivered = script.delivered.lock().unwrap();
            delivered
                .iter()
                .map(|(_, _, n)| *n)
                .collect::<HashSet<_>>()
                .len()
        };
        dead >= expected_dead.len() && live >= expected_live
    })
    .await;
    handle.stop().await;

    let dead = dead_letters(db, &queue).await;
    let dead_set: HashSet<uuid::Uuid> = dead.iter().copied().collect();
    let describe = |ids: &HashSet<uuid::Uuid>| {
        enqueued
            .iter()
            .filter(|(_, (_, id))| ids.contains(id))
            .map(|(n, _)| format!("m{n}:{:?}", fates[n]))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        dead.len(),
        dead_set.len(),
        "{context}: a message was dead-lettered twice"
    );
    assert!(
        dead_set == expected_dead,
        "{context}: dead letters differ from the model.\n  dead-lettered but should not be: {:?}\n  should be dead-lettered but is not: {:?}",
        describe(&dead_set.difference(&expected_dead).copied().collect()),
        describe(&expected_dead.difference(&dead_set).copied().collect()),
    );

    // Deliveries: (partition, seq, message number) in the order they happened.
    let deliveries: Vec<(u32, i64, u64)> = if transactional {
        let twice = script.duplicates.lock().unwrap().clone();
        assert!(
            twice.is_empty(),
            "{context}: delivered more than once in transactional mode: {twice:?}"
        );
        side_ids(db, &enqueued).await
    } else {
        script.delivered.lock().unwrap().clone()
    };
    let mut first: Vec<(u32, i64, u64)> = Vec::new();
    let mut seen = HashSet::new();
    for delivery in &deliveries {
        if seen.insert(delivery.2) {
            first.push(*delivery);
        }
    }
    let missing: Vec<_> = enqueued
        .iter()
        .filter(|(n, _)| !fates[n].dead_lettered() && !seen.contains(n))
        .map(|(n, _)| format!("m{n}:{:?}", fates[n]))
        .collect();
    assert!(
        missing.is_empty() && settled,
        "{context}: never delivered: {missing:?}"
    );
    let wrongly: Vec<_> = first
        .iter()
        .filter(|(_, _, n)| fates[n].dead_lettered())
        .collect();
    assert!(
        wrongly.is_empty(),
        "{context}: delivered as success though scripted to fail for good: {wrongly:?}"
    );
    // Order: per partition, first deliveries in enqueue order.
    let mut last: HashMap<u32, u64> = HashMap::new();
    for (partition, _, n) in &first {
        assert_eq!(
            enqueued[n].0, *partition,
            "{context}: m{n} arrived on the wrong partition"
        );
        if let Some(before) = last.insert(*partition, *n) {
            assert!(
                before < *n,
                "{context}: partition {partition} delivered m{n} after m{before}"
            );
        }
    }
    eprintln!(
        "{context}: ok, {} messages, {} dead-lettered, {} deliveries",
        enqueued.len(),
        dead.len(),
        deliveries.len()
    );
}

/// Enqueues `rows` (partition, message number) in one transaction. On
/// SQLite a transactional handler holds the single writer, and on a loaded
/// machine the producer can wait past the busy timeout: it tries again, as
/// an application would after "database is locked" (nothing was written).
async fn enqueue(
    db: &TestDb,
    outbox: &outbox_core::Outbox,
    queue: &str,
    rows: &[(u32, u64)],
    context: &str,
) -> Vec<uuid::Uuid> {
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = async {
            let txn = db.db.begin().await.map_err(|e| e.to_string())?;
            let ids = outbox
                .enqueue_batch(
                    &txn,
                    queue,
                    rows.iter().map(|(p, n)| {
                        (
                            PartitionKey::index(*p),
                            Message::new("model", n.to_string().into_bytes()),
                        )
                    }),
                )
                .await
                .map_err(|e| format!("{e:?}"))?;
            txn.commit().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(ids)
        };
        match attempt.await {
            Ok(ids) => return ids,
            Err(err) if tries < 10 && err.contains("database is locked") => {
                eprintln!("{context}: enqueue found SQLite busy, trying again: {err}");
            }
            Err(err) => panic!("{context}: enqueue failed: {err}"),
        }
    }
}

/// The dead letters of `queue`, by message id.
async fn dead_letters(db: &TestDb, queue: &str) -> Vec<uuid::Uuid> {
    let sql = format!(
        "SELECT message_id FROM {} WHERE queue_name = '{queue}'",
        db.table("dead_letter")
    );
    let rows = db
        .db
        .query_all_raw(outbox_core::sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| uuid::Uuid::from_slice(&r.try_get::<Vec<u8>>("", "message_id").unwrap()).unwrap())
        .collect()
}

/// The side rows the transactional handler committed for these messages, as
/// (partition, seq, message number), in seq order per partition.
async fn side_ids(
    db: &TestDb,
    enqueued: &BTreeMap<u64, (u32, uuid::Uuid)>,
) -> Vec<(u32, i64, u64)> {
    let by_id: HashMap<uuid::Uuid, (u64, u32)> = enqueued
        .iter()
        .map(|(n, (p, id))| (*id, (*n, *p)))
        .collect();
    let sql = format!("SELECT message_id, seq FROM {}", db.table("side"));
    let rows = db
        .db
        .query_all_raw(outbox_core::sea_orm::Statement::from_string(
            db.db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap();
    let mut out: Vec<(u32, i64, u64)> = rows
        .iter()
        .filter_map(|r| {
            let id =
                uuid::Uuid::from_slice(&r.try_get::<Vec<u8>>("", "message_id").unwrap()).unwrap();
            let seq: i64 = r.try_get("", "seq").unwrap();
            by_id.get(&id).map(|(n, p)| (*p, seq, *n))
        })
        .collect();
    out.sort();
    out
}
