//! The outbox in one file, on SQLite, with no server to install:
//!
//! ```text
//! cargo run -p outbox-examples --example quickstart
//! ```
//!
//! It creates a fresh database file in the temp directory, migrates the outbox
//! schema next to a business table `orders`, starts an outbox with one leased
//! queue of 4 partitions, and places orders: each transaction inserts an
//! order row *and* enqueues an `OrderPlaced` message keyed by customer, so the
//! row and the message commit together or not at all. One order is declined
//! and rolled back; its message must never arrive.
//!
//! The example checks what it shows and exits non-zero if any of it did not
//! happen: every committed message delivered within 10 s, in order per
//! customer, the rolled-back one never.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};
use outbox_core::{
    Batch, BatchResult, LeasedHandler, Message, Outbox, OutboxSchema, Outcome, Queue,
    TransactionError,
};
use outbox_sqlite::SqliteDialect;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Any error of this example; `main` prints it with its causes.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

const QUEUE: &str = "orders";
const PARTITIONS: u32 = 4;
const CUSTOMERS: [&str; 3] = ["alice", "bob", "carol"];
/// Orders 1 to 11 are placed in this order; this one is declined and rolled back.
const DECLINED_ORDER: i64 = 7;
const LAST_ORDER: i64 = 11;
const DEADLINE: Duration = Duration::from_secs(10);

/// The message payload, stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: i64,
    customer: String,
    total_cents: i64,
}

/// One delivery as the handler saw it.
#[derive(Debug, Clone)]
struct Received {
    message_id: Uuid,
    partition: u32,
    seq: i64,
    order: OrderPlaced,
}

/// The handler of the `orders` queue: prints each message and records it.
///
/// In a real service this would publish to a broker or call a webhook. Leased
/// mode delivers at least once, so a real handler deduplicates on
/// `message_id`; here duplicates are counted in the summary.
struct PrintAndRecord {
    received: Arc<Mutex<Vec<Received>>>,
}

#[async_trait::async_trait]
impl LeasedHandler for PrintAndRecord {
    async fn handle(&self, batch: &Batch) -> BatchResult {
        let mut outcomes = Vec::with_capacity(batch.messages.len());
        let mut received = self.received.lock().await;
        for delivery in &batch.messages {
            match delivery.json::<OrderPlaced>() {
                Ok(order) => {
                    println!(
                        "  delivered {}/p{} seq {}: order {} for {}, {} cents",
                        batch.queue,
                        batch.partition,
                        delivery.seq,
                        order.order_id,
                        order.customer,
                        order.total_cents
                    );
                    received.push(Received {
                        message_id: delivery.message_id,
                        partition: batch.partition,
                        seq: delivery.seq,
                        order,
                    });
                    outcomes.push(Outcome::Success);
                }
                // A payload this handler can never read: dead-letter it and go on.
                Err(err) => outcomes.push(Outcome::reject(format!(
                    "not an OrderPlaced payload: {err}"
                ))),
            }
        }
        BatchResult::PerMessage(outcomes)
    }
}

/// The error the declined order's transaction returns to roll itself back.
#[derive(Debug)]
struct PaymentDeclined;

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment declined")
    }
}

impl std::error::Error for PaymentDeclined {}

#[tokio::main]
async fn main() -> ExitCode {
    let path = std::env::temp_dir().join(format!("outbox-quickstart-{}.db", Uuid::new_v4()));
    let result = run(&path).await;
    remove_database_files(&path);
    match result {
        Ok(()) => {
            println!("quickstart: ok");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("quickstart FAILED: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &Path) -> Result<(), BoxError> {
    println!("database: {}", path.display());
    let db = outbox_core::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;

    // The outbox tables (safe to re-run), then the application's own table.
    OutboxSchema::new(SqliteDialect).migrate(&db).await?;
    db.execute_unprepared("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total_cents INTEGER NOT NULL)")
        .await?;

    let received = Arc::new(Mutex::new(Vec::new()));
    let handle = Outbox::builder(db.clone(), SqliteDialect)
        .queue(Queue::leased(
            QUEUE,
            PARTITIONS,
            PrintAndRecord {
                received: received.clone(),
            },
        ))
        .start()
        .await?;
    let outbox = handle.outbox();

    // Place the orders, one transaction each: the row and its message commit together.
    let mut committed: HashMap<Uuid, OrderPlaced> = HashMap::new();
    let mut expected_per_customer: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let declined_message_id = Uuid::now_v7();
    for order_id in 1..=LAST_ORDER {
        let order = OrderPlaced {
            order_id,
            customer: customer_of(order_id).to_owned(),
            total_cents: 1_000 + 250 * order_id,
        };
        if order_id == DECLINED_ORDER {
            // Placed between two orders of the same customer: had its message
            // leaked, it would be delivered before the later one (order per
            // partition), so once everything committed has arrived, its
            // absence is proof that it never existed.
            place_declined_order(outbox, order, declined_message_id).await?;
            continue;
        }
        let message_id = place_order(outbox, order.clone()).await?;
        println!(
            "committed order {} for {} (message {message_id})",
            order.order_id, order.customer
        );
        expected_per_customer
            .entry(order.customer.clone())
            .or_default()
            .push(order.order_id);
        committed.insert(message_id, order);
    }

    // Wait, with a deadline, until every committed message has been delivered.
    let started = Instant::now();
    let deliveries = loop {
        let snapshot = received.lock().await.clone();
        let delivered: HashSet<Uuid> = snapshot.iter().map(|r| r.message_id).collect();
        if committed.keys().all(|id| delivered.contains(id)) {
            break snapshot;
        }
        if started.elapsed() > DEADLINE {
            handle.stop().await;
            return Err(format!(
                "only {} of {} committed messages were delivered within {DEADLINE:?}",
                committed.keys().filter(|id| delivered.contains(id)).count(),
                committed.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waited = started.elapsed();
    handle.stop().await;

    let mut problems = Vec::new();

    // Leased mode is at least once: keep the first delivery of each message.
    let mut seen = HashSet::new();
    let mut first_deliveries = Vec::new();
    for delivery in &deliveries {
        if seen.insert(delivery.message_id) {
            first_deliveries.push(delivery);
        }
    }
    let redelivered = deliveries.len() - first_deliveries.len();

    // Nothing but committed messages, and never the declined one.
    for delivery in &first_deliveries {
        if delivery.message_id == declined_message_id {
            problems.push(format!(
                "the rolled-back order {} was delivered",
                delivery.order.order_id
            ));
        } else if !committed.contains_key(&delivery.message_id) {
            problems.push(format!(
                "unexpected message {} was delivered",
                delivery.message_id
            ));
        }
    }

    // Order per customer: a customer's orders all hash to one partition, whose
    // handler calls are sequential, so recording order is delivery order.
    let mut actual_per_customer: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, u32> = BTreeMap::new();
    for delivery in &first_deliveries {
        actual_per_customer
            .entry(delivery.order.customer.clone())
            .or_default()
            .push(delivery.order.order_id);
        partition_of.insert(delivery.order.customer.clone(), delivery.partition);
    }
    if actual_per_customer != expected_per_customer {
        problems.push(format!(
            "order per customer broken: expected {expected_per_customer:?}, got {actual_per_customer:?}"
        ));
    }

    // Sequence numbers of a partition are dense and increasing.
    let mut seqs_per_partition: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for delivery in &first_deliveries {
        seqs_per_partition
            .entry(delivery.partition)
            .or_default()
            .push(delivery.seq);
    }
    for (partition, seqs) in &seqs_per_partition {
        let dense: Vec<i64> = (1..).take(seqs.len()).collect();
        if *seqs != dense {
            problems.push(format!(
                "partition {partition} delivered seqs {seqs:?}, expected {dense:?}"
            ));
        }
    }

    // The business table agrees: the committed orders, not the declined one.
    let rows = count_rows(&db, "SELECT COUNT(*) AS n FROM orders").await?;
    if rows != committed.len() as i64 {
        problems.push(format!(
            "orders has {rows} rows, expected {}",
            committed.len()
        ));
    }
    let declined_rows = count_rows(
        &db,
        &format!("SELECT COUNT(*) AS n FROM orders WHERE id = {DECLINED_ORDER}"),
    )
    .await?;
    if declined_rows != 0 {
        problems.push(format!(
            "the rolled-back order {DECLINED_ORDER} is in the orders table"
        ));
    }
    db.close().await?;

    println!();
    println!(
        "summary: {} orders committed, 1 rolled back; {} messages delivered in {waited:.0?} ({redelivered} redelivered)",
        committed.len(),
        first_deliveries.len()
    );
    for (customer, orders) in &actual_per_customer {
        let partition = partition_of.get(customer).copied().unwrap_or_default();
        println!("  {customer:<6} partition {partition}: orders {orders:?}");
    }
    println!("  rolled-back order {DECLINED_ORDER}: no row, no message");

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

/// Inserts the order row and enqueues its message in one transaction; the
/// sequencer is woken after the commit. Returns the message id.
async fn place_order(outbox: &Outbox, order: OrderPlaced) -> Result<Uuid, BoxError> {
    outbox
        .transaction(move |tx| {
            Box::pin(async move {
                insert_order(tx, &order).await?;
                let message = Message::json("OrderPlaced", &order)?;
                let id = tx.enqueue(QUEUE, &order.customer, message).await?;
                Ok::<_, BoxError>(id)
            })
        })
        .await
        .map_err(flatten)
}

/// Like [`place_order`], but the payment is declined after the row and the
/// message were written, so the transaction rolls back and takes both with it.
async fn place_declined_order(
    outbox: &Outbox,
    order: OrderPlaced,
    message_id: Uuid,
) -> Result<(), BoxError> {
    let order_id = order.order_id;
    let customer = order.customer.clone();
    let result = outbox
        .transaction(move |tx| {
            Box::pin(async move {
                insert_order(tx, &order).await?;
                let message = Message::json("OrderPlaced", &order)?.message_id(message_id);
                tx.enqueue(QUEUE, &order.customer, message).await?;
                Err::<(), BoxError>(Box::new(PaymentDeclined))
            })
        })
        .await;
    match result {
        Err(TransactionError::Transaction(err)) if err.is::<PaymentDeclined>() => {
            println!("rolled back order {order_id} for {customer}: {err} (message {message_id})");
            Ok(())
        }
        Err(err) => Err(flatten(err)),
        Ok(()) => Err(format!("declined order {order_id} committed").into()),
    }
}

async fn insert_order(txn: &DatabaseTransaction, order: &OrderPlaced) -> Result<(), BoxError> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO orders (id, customer, total_cents) VALUES (?, ?, ?)",
        [
            order.order_id.into(),
            order.customer.clone().into(),
            order.total_cents.into(),
        ],
    ))
    .await?;
    Ok(())
}

async fn count_rows(db: &impl ConnectionTrait, sql: &str) -> Result<i64, BoxError> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await?
        .ok_or("COUNT(*) returned no row")?;
    Ok(row.try_get("", "n")?)
}

fn customer_of(order_id: i64) -> &'static str {
    let index = usize::try_from(order_id - 1).unwrap_or_default() % CUSTOMERS.len();
    CUSTOMERS[index]
}

/// Keeps the cause chain of a transaction's error intact.
fn flatten(err: TransactionError<BoxError>) -> BoxError {
    match err {
        TransactionError::Connection(err) => err.into(),
        TransactionError::Transaction(err) => err,
    }
}

/// Deletes the database file and SQLite's WAL and shared-memory files.
fn remove_database_files(path: &Path) {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => eprintln!("could not delete {}: {err}", file.display()),
        }
    }
}
