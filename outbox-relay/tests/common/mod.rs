//! What the relay tests share: broker URLs, loud skips, a real outbox on a
//! temporary SQLite file, and deliveries built by hand.

#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::{Database, DatabaseConnection};
use outbox_core::{
    Batch, BatchResult, Delivery, LeasedHandler, Message, Outbox, OutboxBuilder, OutboxHandle,
    OutboxSchema, Outcome, Queue,
};
use outbox_sqlite::SqliteDialect;
use uuid::Uuid;

pub use outbox_test_support::wait_for;
use outbox_test_support::{Server, available};

/// Writes a line straight to the process's stderr (the harness captures
/// `eprintln!` of passing tests).
pub fn note(line: &str) {
    outbox_test_support::loud(line);
}

/// The NATS server the tests use, or `None` when it does not answer (said
/// once, loudly, for the whole test binary).
pub fn nats_url() -> Option<String> {
    let url = Server::Nats.url();
    available(Server::Nats, &url).then_some(url)
}

/// The RabbitMQ broker the tests use, or `None` when it does not answer.
pub fn rabbitmq_url() -> Option<String> {
    let url = Server::RabbitMq.url();
    available(Server::RabbitMq, &url).then_some(url)
}

/// Reports a broker that answered but refused us: a loud line, or a panic
/// under `OUTBOX_REQUIRE_ALL_BACKENDS=1`.
pub fn skip(test: &str, url: &str, err: impl std::fmt::Display) {
    let why = format!("cannot connect to {}: {err}", outbox_core::redact_url(url));
    outbox_test_support::skip(test, &why);
}

/// A random suffix for this test's stream, subjects, queues and exchanges.
pub fn suffix() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A migrated outbox database in a temporary SQLite file, removed on drop.
pub struct TestDb {
    pub db: DatabaseConnection,
    path: PathBuf,
}

impl TestDb {
    pub async fn new() -> Self {
        let path = std::env::temp_dir().join(format!("outbox-relay-test-{}.db", suffix()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = Database::connect(&url).await.expect("open sqlite");
        OutboxSchema::new(SqliteDialect)
            .migrate(&db)
            .await
            .expect("migrate");
        Self { db, path }
    }

    /// A builder with short poll intervals.
    pub fn builder(&self) -> OutboxBuilder {
        Outbox::builder(self.db.clone(), SqliteDialect)
            .poll_interval(Duration::from_millis(50))
            .vacuum_interval(Duration::from_millis(200))
    }

    /// Starts an outbox with one queue.
    pub async fn start(&self, queue: Queue) -> OutboxHandle {
        self.builder().queue(queue).start().await.expect("start")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(ext);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Enqueues `messages` to `queue` in one transaction and returns their ids.
pub async fn enqueue(outbox: &Outbox, queue: &str, messages: Vec<(String, Message)>) -> Vec<Uuid> {
    let queue = queue.to_owned();
    outbox
        .transaction(move |tx| Box::pin(async move { tx.enqueue_batch(&queue, messages).await }))
        .await
        .expect("enqueue")
}

/// Unprocessed messages and open dead letters of `queue`.
pub async fn backlog(handle: &OutboxHandle, queue: &str) -> (u64, u64) {
    let stats = handle.stats().await.expect("stats");
    match stats.queue(queue) {
        Some(q) => (q.incoming + q.unprocessed, q.dead_letters.open()),
        None => (0, 0),
    }
}

/// A delivery built by hand, for calling a relay directly.
pub fn delivery(seq: i64, headers: &[(&str, &str)]) -> Delivery {
    Delivery {
        queue: "orders".into(),
        partition: 0,
        seq,
        message_id: Uuid::now_v7(),
        payload: format!("payload {seq}").into_bytes(),
        payload_type: "TestEvent".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        enqueued_at_ms: 1_700_000_000_123,
    }
}

/// A batch of `messages` for `queue`/`partition`.
pub fn batch(queue: &str, partition: u32, messages: Vec<Delivery>) -> Batch {
    Batch {
        queue: queue.to_owned(),
        partition,
        attempt: 0,
        messages,
    }
}

/// The outcomes of a per-message result.
pub fn outcomes(result: BatchResult) -> Vec<Outcome> {
    match result {
        BatchResult::PerMessage(outcomes) => outcomes,
        other => panic!("expected per-message outcomes, got {other:?}"),
    }
}

/// A leased handler that records every outcome of the handler it wraps.
pub struct Recording<H> {
    pub inner: H,
    pub outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl<H> Recording<H> {
    pub fn new(inner: H) -> (Self, Arc<Mutex<Vec<Outcome>>>) {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                inner,
                outcomes: outcomes.clone(),
            },
            outcomes,
        )
    }
}

#[async_trait::async_trait]
impl<H: LeasedHandler> LeasedHandler for Recording<H> {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let result = self.inner.handle(batch).await;
        if let BatchResult::PerMessage(outcomes) = &result {
            self.outcomes
                .lock()
                .unwrap()
                .extend(outcomes.iter().cloned());
        }
        result
    }
}

/// Checks that `seqs` of one partition, in the order the broker holds them,
/// are 1, 2, 3, ... with no gap, duplicate or reordering.
pub fn assert_in_order(partition: &str, seqs: &[i64]) {
    for (i, seq) in seqs.iter().enumerate() {
        let expected = i64::try_from(i).unwrap() + 1;
        assert_eq!(
            *seq, expected,
            "partition {partition}: position {i} holds seq {seq}, expected {expected} (all: {seqs:?})"
        );
    }
}
