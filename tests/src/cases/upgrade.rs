//! The upgrade from schema v1 (body, incoming and outgoing tables) to v2
//! (one message table), with messages in every state v1 can hold.

use std::collections::BTreeMap;

use outbox_core::sea_orm::sea_query::{Alias, Expr, ExprTrait, InsertStatement, Query, SimpleExpr};
use outbox_core::sea_orm::{ConnectionTrait, DatabaseConnection};
use outbox_core::{
    DeadLetterPage, DeadLetterScope, DeadLetterStatus, OutboxAdmin, OutboxSchema, Queue,
};
use sea_orm_migration::SchemaManager;

use super::eventually;
use crate::{Recorder, TestDb};

/// Milliseconds since the epoch, for retry times relative to now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0)
}

/// Writes v1 rows the way v1's code did: a body per message, an incoming
/// row for an unsequenced one, an outgoing row for a sequenced one.
struct V1 {
    db: DatabaseConnection,
    prefix: String,
    next: u128,
}

impl V1 {
    fn table(&self, name: &str) -> Alias {
        Alias::new(format!("{}{name}", self.prefix))
    }

    async fn run(&self, statement: &InsertStatement) {
        self.db.execute(statement).await.unwrap();
    }

    /// A partition row as v1 left it: counters and retry state.
    async fn partition(
        &self,
        queue: &str,
        no: i32,
        next_seq: i64,
        processed_seq: i64,
        retry: Option<(i32, &str, i64)>,
    ) -> i64 {
        let (attempts, last_error, retry_at) = retry.unwrap_or((0, "", 0));
        let insert = Query::insert()
            .into_table(self.table("partition"))
            .columns([
                "queue_name",
                "partition_no",
                "next_seq",
                "processed_seq",
                "attempts",
                "last_error",
                "retry_at",
            ])
            .values_panic([
                queue.into(),
                no.into(),
                next_seq.into(),
                processed_seq.into(),
                attempts.into(),
                retry
                    .map(|_| last_error.to_owned())
                    .map_or(Expr::val(Option::<String>::None), Expr::val),
                retry_at.into(),
            ])
            .to_owned();
        self.run(&insert).await;
        let row = self
            .db
            .query_one_raw(
                self.db.get_database_backend().build(
                    Query::select()
                        .column("id")
                        .from(self.table("partition"))
                        .and_where(Expr::col("queue_name").eq(queue))
                        .and_where(Expr::col("partition_no").eq(no)),
                ),
            )
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "id").unwrap()
    }

    /// A body with payload `text`; returns its message id.
    async fn body(&mut self, text: &str) -> uuid::Uuid {
        self.next += 1;
        let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | self.next);
        let insert = Query::insert()
            .into_table(self.table("body"))
            .columns([
                "message_id",
                "payload",
                "payload_type",
                "headers",
                "created_at",
            ])
            .values_panic([
                id.as_bytes().to_vec().into(),
                text.as_bytes().to_vec().into(),
                "t".into(),
                r#"{"v":"1"}"#.into(),
                now_ms().into(),
            ])
            .to_owned();
        self.run(&insert).await;
        id
    }

    async fn incoming(&mut self, partition_id: i64, text: &str) {
        let id = self.body(text).await;
        let insert = Query::insert()
            .into_table(self.table("incoming"))
            .columns(["partition_id", "message_id"])
            .values_panic([partition_id.into(), id.as_bytes().to_vec().into()])
            .to_owned();
        self.run(&insert).await;
    }

    async fn outgoing(&mut self, partition_id: i64, seq: i64, text: &str) {
        let id = self.body(text).await;
        let insert = Query::insert()
            .into_table(self.table("outgoing"))
            .columns(["partition_id", "seq", "message_id"])
            .values_panic([
                partition_id.into(),
                seq.into(),
                id.as_bytes().to_vec().into(),
            ])
            .to_owned();
        self.run(&insert).await;
    }

    async fn dead_letter(&mut self, text: &str, status: &str, deadline: Option<i64>) {
        self.next += 1;
        let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_9000_0000_0000_0000 | self.next);
        let done = matches!(status, "resolved" | "discarded").then(now_ms);
        let values: Vec<SimpleExpr> = vec![
            "r".into(),
            0i32.into(),
            (90 + i64::try_from(self.next).unwrap_or(0)).into(),
            id.as_bytes().to_vec().into(),
            text.as_bytes().to_vec().into(),
            "t".into(),
            "{}".into(),
            now_ms().into(),
            now_ms().into(),
            4i32.into(),
            format!("v1 {status}").into(),
            status.into(),
            deadline.map_or(Expr::val(Option::<i64>::None), Expr::val),
            done.map_or(Expr::val(Option::<i64>::None), Expr::val),
        ];
        let insert = Query::insert()
            .into_table(self.table("dead_letter"))
            .columns([
                "queue_name",
                "partition_no",
                "seq",
                "message_id",
                "payload",
                "payload_type",
                "headers",
                "created_at",
                "failed_at",
                "attempts",
                "last_error",
                "status",
                "deadline",
                "completed_at",
            ])
            .values_panic(values)
            .to_owned();
        self.run(&insert).await;
    }
}

/// Applies schema v1's migrations to a fresh prefix, fills v1's tables with
/// every kind of state (delivered rows not yet vacuumed, sequenced rows
/// above the cursor, unsequenced rows, retry state, dead letters of each
/// status), migrates to v2, and drains: every message in flight arrives
/// once, in order per partition, with its number kept; delivered ones do
/// not come again; retry state and dead letters are as they were; a pending
/// letter can be requeued.
pub async fn upgrade_from_v1_keeps_every_message_in_flight(db: TestDb) {
    let prefix = format!("{}u_", db.prefix);
    let schema: OutboxSchema = db.schema().prefix(&prefix).unwrap();
    let manager = SchemaManager::new(&db.db);
    let migrations = schema.migrations();
    assert_eq!(migrations.len(), 3);
    for v1 in &migrations[..2] {
        v1.up(&manager).await.unwrap();
    }
    assert_eq!(schema.version(&db.db).await.unwrap(), 1);

    let mut v1 = V1 {
        db: db.db.clone(),
        prefix: prefix.clone(),
        next: 0,
    };
    // q/0: 1-2 delivered (not vacuumed), 3-5 sequenced, then three waiting
    // for the sequencer; its head message failed twice, retry due now.
    let q0 = v1.partition("q", 0, 6, 2, Some((2, "twice", 0))).await;
    for seq in 1..=5 {
        v1.outgoing(q0, seq, &format!("q0-{seq}")).await;
    }
    for n in 6..=8 {
        v1.incoming(q0, &format!("q0-{n}")).await;
    }
    // q/1: 1-3 sequenced, retry due in 1.5 s after three failures.
    let retry_at = now_ms() + 1_500;
    let q1 = v1
        .partition("q", 1, 4, 0, Some((3, "later", retry_at)))
        .await;
    for seq in 1..=3 {
        v1.outgoing(q1, seq, &format!("q1-{seq}")).await;
    }
    // r/0: nothing sequenced yet; incoming rows interleaved with q/0's
    // would be the same: each partition keeps its own order.
    let r0 = v1.partition("r", 0, 1, 0, None).await;
    for n in 1..=5 {
        v1.incoming(r0, &format!("r0-{n}")).await;
    }
    for (text, status, deadline) in [
        ("dl-pending", "pending", None),
        ("dl-reprocessing", "reprocessing", Some(now_ms() + 600_000)),
        ("dl-resolved", "resolved", None),
        ("dl-discarded", "discarded", None),
    ] {
        v1.dead_letter(text, status, deadline).await;
    }
    let admin = OutboxAdmin::for_dialect(db.db.clone(), db.dialect.clone(), &prefix).unwrap();
    let letters_before = admin
        .dead_letters()
        .list(&DeadLetterScope::all(), &DeadLetterPage::default())
        .await
        .unwrap()
        .letters;

    // The upgrade, as a Migrator applies it.
    migrations[2].up(&manager).await.unwrap();
    assert_eq!(schema.version(&db.db).await.unwrap(), 2);
    for gone in ["body", "incoming", "outgoing"] {
        let probe = format!("SELECT COUNT(*) AS n FROM {prefix}{gone}");
        assert!(
            db.db.execute_unprepared(&probe).await.is_err(),
            "{gone} survived the upgrade"
        );
    }
    assert_eq!(
        db.scalar(&format!("SELECT COUNT(*) AS n FROM {prefix}message"))
            .await,
        3 + 3 + 3 + 5,
        "delivered messages are not carried over; every other one is"
    );
    // Re-running it (another process, or `migrate`) changes nothing.
    migrations[2].up(&manager).await.unwrap();
    schema.migrate(&db.db).await.unwrap();

    let stats = admin.stats().await.unwrap();
    let q = stats.queue("q").unwrap();
    let (p0, p1) = (q.partition(0).unwrap(), q.partition(1).unwrap());
    assert_eq!(
        (p0.processed_seq, p0.next_seq, p0.unprocessed, p0.incoming),
        (2, 6, 3, 3)
    );
    assert_eq!((p1.attempts, p1.last_error.as_deref()), (3, Some("later")));
    assert_eq!(p1.retry_at_ms, Some(retry_at));
    assert_eq!(stats.queue("r").unwrap().incoming, 5);
    let letters_after = admin
        .dead_letters()
        .list(&DeadLetterScope::all(), &DeadLetterPage::default())
        .await
        .unwrap()
        .letters;
    assert_eq!(letters_after, letters_before, "dead letters changed");
    let statuses: Vec<DeadLetterStatus> = letters_after.iter().map(|l| l.status).collect();
    assert_eq!(
        statuses,
        [
            DeadLetterStatus::Pending,
            DeadLetterStatus::Reprocessing,
            DeadLetterStatus::Resolved,
            DeadLetterStatus::Discarded
        ]
    );

    // Drain, and requeue the pending letter into r/0.
    let rec = Recorder::default();
    let handle = db
        .builder()
        .table_prefix(prefix.clone())
        .queue(Queue::leased("q", 2, rec.clone()))
        .queue(Queue::leased("r", 1, rec.clone()))
        .start()
        .await
        .unwrap();
    eventually("every message in flight is delivered", || async {
        rec.distinct() == 14
    })
    .await;
    let pending = DeadLetterScope::all().status(DeadLetterStatus::Pending);
    let requeued = handle
        .outbox()
        .dead_letters()
        .requeue(&pending, 10)
        .await
        .unwrap();
    assert_eq!(requeued.len(), 1);
    eventually("the requeued letter is delivered", || async {
        rec.distinct() == 15
    })
    .await;
    handle.stop().await;

    let mut by_partition: BTreeMap<(String, u32), Vec<(i64, String)>> = BTreeMap::new();
    for r in rec.all() {
        by_partition
            .entry((r.queue.clone(), r.partition))
            .or_default()
            .push((r.seq, r.payload));
    }
    let want = |first_seq: i64, texts: &[String]| -> Vec<(i64, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (first_seq + i as i64, t.clone()))
            .collect()
    };
    let texts = |p: &str, range: std::ops::RangeInclusive<i64>| -> Vec<String> {
        range.map(|n| format!("{p}-{n}")).collect()
    };
    let mut r_texts = texts("r0", 1..=5);
    r_texts.push("dl-pending".into());
    assert_eq!(
        by_partition
            .get(&("q".into(), 0))
            .cloned()
            .unwrap_or_default(),
        want(3, &texts("q0", 3..=8))
    );
    assert_eq!(
        by_partition
            .get(&("q".into(), 1))
            .cloned()
            .unwrap_or_default(),
        want(1, &texts("q1", 1..=3))
    );
    assert_eq!(
        by_partition
            .get(&("r".into(), 0))
            .cloned()
            .unwrap_or_default(),
        want(1, &r_texts)
    );
    assert_eq!(rec.len(), 15, "a message was delivered twice");
    schema.drop_tables(&db.db).await.unwrap();
}
