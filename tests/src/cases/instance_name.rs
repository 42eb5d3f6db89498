//! Instance names: a second live instance under the same name is refused,
//! so two never fight over the same leases.

use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use outbox_core::{
    Batch, BatchResult, Message, OutboxError, PartitionKey, Queue, TransactionalHandler,
};

use super::PATIENCE;
use crate::{Recorder, TestDb, wait_until};

/// Records every handler call and writes one side-table row per message in
/// the partition's transaction.
#[derive(Clone)]
struct SideWriter {
    db: TestDb,
    calls: Recorder,
}

#[async_trait::async_trait]
impl TransactionalHandler for SideWriter {
    async fn handle(&self, txn: &DatabaseTransaction, batch: &Batch) -> BatchResult {
        self.calls.record(batch);
        for m in &batch.messages {
            if let Err(err) = txn
                .execute_raw(self.db.side_insert(m.message_id, m.seq))
                .await
            {
                return BatchResult::retry(err.to_string());
            }
        }
        BatchResult::success()
    }
}

/// Finding 9 of issue 14: two instances started with the same instance name
/// took each other's leases (a lease is re-taken at once by its owner's
/// name), so 400 messages gave 800 or more handler calls. Now the second
/// `start()` is `InstanceNameInUse`, naming the name; after the first stops,
/// the name can be used again; the 400 messages are handled exactly once.
pub async fn duplicate_instance_name_is_refused_at_start(db: TestDb) {
    const MESSAGES: usize = 400;
    db.create_side_table().await;
    let handler = SideWriter {
        db: db.clone(),
        calls: Recorder::default(),
    };
    let queue = || Queue::transactional("q", 4, handler.clone()).batch_size(10);
    let first = db
        .builder()
        .instance_name("dup")
        .queue(queue())
        .start()
        .await
        .unwrap();
    let other_pool = db.another_pool().await;
    let second = match db
        .builder_on(other_pool.clone())
        .instance_name("dup")
        .queue(queue())
        .start()
        .await
    {
        Ok(handle) => Some(handle),
        Err(OutboxError::InstanceNameInUse { name, .. }) => {
            assert_eq!(name, "dup");
            None
        }
        Err(other) => panic!("the second start failed otherwise: {other:?}"),
    };

    let outbox = first.outbox().clone();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(50) {
        let txn = db.db.begin().await.unwrap();
        let batch = chunk.iter().map(|n| {
            (
                PartitionKey::index((*n % 4) as u32),
                Message::new("t", n.to_string().into_bytes()),
            )
        });
        outbox.enqueue_batch(&txn, "q", batch).await.unwrap();
        txn.commit().await.unwrap();
        outbox.notify();
    }
    let side = db.table("side");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while db
        .scalar(&format!("SELECT COUNT(*) AS n FROM {side}"))
        .await
        < MESSAGES as i64
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every message was handled within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;
    if let Some(second) = &second {
        second.stop().await;
    }
    let calls = handler.calls.len();
    assert!(
        second.is_none(),
        "a second instance started under the name \"dup\" while the first ran: \
         {MESSAGES} messages gave {calls} handler calls"
    );
    assert_eq!(calls, MESSAGES, "handler calls for {MESSAGES} messages");
    assert_eq!(handler.calls.distinct(), MESSAGES);

    // Stopped: the name is free again, at once.
    let again = db
        .builder_on(other_pool.clone())
        .instance_name("dup")
        .queue(queue())
        .start()
        .await
        .expect("the name is free once its instance stopped");
    again.stop().await;
    other_pool.close().await.ok();
}

/// While running, an instance whose heartbeat row is taken by another
/// incarnation under its name (its own heartbeats had lapsed, and a
/// namesake started) reports the conflict and stands down: it takes no
/// partition until the row is its own again; then it delivers as before.
pub async fn instance_whose_name_is_taken_while_running_stands_down(db: TestDb) {
    let rec = Recorder::default();
    let handle = db
        .builder()
        .instance_name("taken")
        .queue(Queue::leased("q", 2, rec.clone()))
        .start()
        .await
        .unwrap();
    assert!(!handle.instance_name_conflict());
    let instance = db.table("instance");
    // A namesake writes its own incarnation and keeps the row alive.
    db.exec(&format!(
        "UPDATE {instance} SET incarnation = -1, heartbeat_until = heartbeat_until + 3600000 \
         WHERE owner = 'taken'"
    ))
    .await;
    assert!(
        wait_until(PATIENCE, || handle.instance_name_conflict()).await,
        "the instance did not notice that its name was taken"
    );
    // Standing down: woken by new messages, its workers give their leases
    // back and handle nothing. Any batch holding these messages is read
    // after this enqueue, so after the conflict was seen, and a worker looks
    // at the conflict again after reading, before the handler.
    let txn = db.db.begin().await.unwrap();
    let batch = (0..10).map(|i| {
        (
            PartitionKey::index(i % 2),
            Message::new("t", format!("m{i}").into_bytes()),
        )
    });
    handle
        .outbox()
        .enqueue_batch(&txn, "q", batch)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    handle.outbox().notify();
    let held = format!(
        "SELECT COUNT(*) AS n FROM {} WHERE lease_owner IS NOT NULL",
        db.table("partition")
    );
    super::eventually(
        "the standing-down instance gives its leases back",
        || async { db.unsequenced().await == 0 && db.scalar(&held).await == 0 },
    )
    .await;
    assert!(
        rec.is_empty(),
        "handled while its name was taken: {:?}",
        rec.all()
    );
    // The namesake goes away: its row runs out.
    db.exec(&format!(
        "UPDATE {instance} SET heartbeat_until = 0 WHERE owner = 'taken'"
    ))
    .await;
    assert!(
        wait_until(PATIENCE, || !handle.instance_name_conflict()).await,
        "the instance did not take its name back"
    );
    assert!(
        wait_until(PATIENCE, || rec.distinct() == 10).await,
        "delivered {} of 10 after the name came back",
        rec.distinct()
    );
    handle.stop().await;
}

/// The migration that tables created by an older version need for the
/// incarnation column: `start()` reports them as out of date, and both
/// `OutboxSchema::migrate` and a sea-orm-migration `Migrator` (which runs
/// PostgreSQL migrations in a transaction unless one opts out) add it.
pub async fn migrations_add_the_incarnation_column_to_old_tables(db: TestDb) {
    use outbox_core::sea_orm::sea_query::{Alias, IntoIden};
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    static SCHEMA: std::sync::Mutex<Option<(outbox_core::OutboxSchema, String)>> =
        std::sync::Mutex::new(None);
    struct Migrator;
    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            SCHEMA.lock().unwrap().as_ref().unwrap().0.migrations()
        }
        fn migration_table_name() -> outbox_core::sea_orm::DynIden {
            Alias::new(SCHEMA.lock().unwrap().as_ref().unwrap().1.clone()).into_iden()
        }
    }

    let prefix = format!("{}m_", db.prefix);
    let schema = db.schema().prefix(&prefix).unwrap();
    let migrations_table = format!("{prefix}migrations");
    *SCHEMA.lock().unwrap() = Some((schema.clone(), migrations_table.clone()));
    let drop_column = format!("ALTER TABLE {prefix}instance DROP COLUMN incarnation");
    let start = || {
        db.builder()
            .table_prefix(prefix.clone())
            .queue(Queue::leased("q", 1, Recorder::default()))
            .start()
    };

    schema.migrate(&db.db).await.unwrap();
    db.exec(&drop_column).await;
    let old = start().await;
    assert!(
        matches!(old, Err(OutboxError::SchemaMissing { .. })),
        "tables without the incarnation column: {:?}",
        old.map(|_| "started")
    );
    Migrator::up(&db.db, None).await.unwrap();
    start().await.expect("after the Migrator").stop().await;
    Migrator::up(&db.db, None).await.unwrap();

    db.exec(&drop_column).await;
    schema.migrate(&db.db).await.unwrap();
    schema.migrate(&db.db).await.unwrap();
    start().await.expect("after migrate").stop().await;

    if db.backend != crate::Backend::Sqlite {
        schema.drop_tables(&db.db).await.unwrap();
        db.exec(&format!("DROP TABLE IF EXISTS {migrations_table}"))
            .await;
    }
}
