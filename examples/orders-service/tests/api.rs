//! The HTTP API of the service binary: validation errors, the admin
//! endpoints, and a clean exit on SIGTERM. No broker needed: the service
//! relays to its log.
//!
//! ```text
//! cargo test -p orders-service --test api
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use orders_service::migration;
use outbox_core::{
    Batch, BatchResult, DeadLetterScope, LeasedHandler, Message, OutboxBuilder, OutboxHandle, Queue,
};
use support::database::{Backend, TestDatabase};
use support::http;
use support::service::Service;
use support::{admin, wait_for};

const ORDER: &str = r#"{"customer":"c1","items":[{"sku":"s1","qty":2}],"total_cents":1200}"#;

fn assert_json_error(response: &http::Response, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    assert_eq!(
        response.content_type.as_deref(),
        Some("application/json"),
        "{what}"
    );
    let error = response.json()["error"].as_str().map(str::to_owned);
    assert!(
        error.as_deref().is_some_and(|e| !e.is_empty()),
        "{what}: no error message in {}",
        response.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_orders_get_400_with_a_json_error_and_write_nothing() {
    let db = TestDatabase::create(Backend::Sqlite, "malformed_orders")
        .await
        .expect("sqlite");
    let service = Service::start(&[("DATABASE_URL", db.url())]).await;
    let bad: [(&str, &str); 12] = [
        ("not JSON", "{\"customer\": "),
        ("not an object", "[1, 2]"),
        ("missing items", r#"{"customer":"c1","total_cents":1}"#),
        (
            "missing customer",
            r#"{"items":[{"sku":"s1","qty":1}],"total_cents":1}"#,
        ),
        (
            "missing total",
            r#"{"customer":"c1","items":[{"sku":"s1","qty":1}]}"#,
        ),
        (
            "empty items",
            r#"{"customer":"c1","items":[],"total_cents":1}"#,
        ),
        (
            "zero qty",
            r#"{"customer":"c1","items":[{"sku":"s1","qty":0}],"total_cents":1}"#,
        ),
        (
            "negative qty",
            r#"{"customer":"c1","items":[{"sku":"s1","qty":-2}],"total_cents":1}"#,
        ),
        (
            "qty not a number",
            r#"{"customer":"c1","items":[{"sku":"s1","qty":"2"}],"total_cents":1}"#,
        ),
        (
            "negative total",
            r#"{"customer":"c1","items":[{"sku":"s1","qty":1}],"total_cents":-1}"#,
        ),
        (
            "blank customer",
            r#"{"customer":"  ","items":[{"sku":"s1","qty":1}],"total_cents":1}"#,
        ),
        (
            "empty sku",
            r#"{"customer":"c1","items":[{"sku":"","qty":1}],"total_cents":1}"#,
        ),
    ];
    for (what, body) in bad {
        let response = http::post_json(service.addr, "/orders", body).await;
        assert_json_error(&response, 400, what);
    }
    let no_content_type = http::request(
        service.addr,
        "POST",
        "/orders",
        Some(("text/plain", ORDER.as_bytes())),
    )
    .await
    .expect("POST");
    assert_json_error(&no_content_type, 400, "text/plain body");

    let created = http::post_json(service.addr, "/orders", ORDER).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let json = created.json();
    for field in ["id", "message_id"] {
        let id: uuid::Uuid = json[field].as_str().expect(field).parse().expect("a UUID");
        assert_eq!(id.get_version_num(), 7, "{field} is a UUID v7");
    }
    // Only the valid order has a row; its message was relayed (to the log).
    assert_eq!(db.count_orders().await, 1);
    let message_id = json["message_id"].as_str().unwrap().to_owned();
    wait_for(
        "the order's message in the log",
        Duration::from_secs(30),
        || async { service.logged(&["relayed to log", &message_id]) },
    )
    .await;
    drop(service);
    db.drop_database().await;
}

/// A handler that rejects everything: each message becomes a dead letter.
struct RejectAll;

#[async_trait::async_trait]
impl LeasedHandler for RejectAll {
    async fn handle(&self, _batch: &Batch) -> BatchResult {
        BatchResult::reject("shipping api: 422 address missing")
    }
}

/// Makes one real dead letter in the `orders` queue: migrates with the
/// service's own `Migrator`, runs an outbox whose handler rejects, enqueues
/// one message and waits until it is dead-lettered. Returns its message id.
async fn make_dead_letter(db: &TestDatabase) -> uuid::Uuid {
    let conn = db.connect().await;
    migration::run(&conn, db.backend()).await.expect("migrate");
    let handle: OutboxHandle = OutboxBuilder::new(conn.clone(), db.backend().dialect())
        .queue(Queue::leased("orders", 4, RejectAll))
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .expect("start the rejecting outbox");
    let outbox = handle.outbox();
    let message = Message::new(
        "OrderPlaced",
        br#"{"order_id":"x","address":null}"#.to_vec(),
    )
    .header("content-type", "application/json");
    let message_id = outbox
        .enqueue(&conn, "orders", "customer-x", message)
        .await
        .expect("enqueue");
    outbox.notify();
    let letters = outbox.dead_letters();
    wait_for(
        "the message to be dead-lettered",
        Duration::from_secs(30),
        || async { letters.count(&DeadLetterScope::all()).await.expect("count") == 1 },
    )
    .await;
    handle.stop().await;
    conn.close().await.ok();
    message_id
}

async fn requeue(addr: SocketAddr, id: &str) -> http::Response {
    http::request(
        addr,
        "POST",
        &format!("/admin/outbox/dead-letters/{id}/requeue"),
        None,
    )
    .await
    .expect("POST requeue")
}

async fn admin_endpoints(backend: Backend) {
    let test = format!("admin_endpoints_report_and_requeue_dead_letters on {backend:?}");
    let Some(db) = TestDatabase::create(backend, &test).await else {
        return;
    };
    let message_id = make_dead_letter(&db).await;
    let mut service = Service::start(&[("DATABASE_URL", db.url())]).await;

    // Stats: the queue, its 4 partitions, the pending dead letter.
    let queue = admin::orders_queue(service.addr).await;
    assert_eq!(
        queue["partitions"].as_array().map(Vec::len),
        Some(4),
        "{queue}"
    );
    assert_eq!(queue["dead_letters"]["pending"], 1, "{queue}");
    for field in ["incoming", "unprocessed", "blocked_partitions"] {
        assert!(queue[field].is_u64(), "{field} in {queue}");
    }
    let partition = &queue["partitions"][0];
    for field in ["partition", "processed_seq", "next_seq", "attempts"] {
        assert!(partition[field].is_number(), "{field} in {partition}");
    }
    assert!(partition["lease_held"].is_boolean(), "{partition}");
    assert!(admin::stats(service.addr).await["now_ms"].is_i64());

    // The list shows the letter.
    let list = http::get(service.addr, "/admin/outbox/dead-letters").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    let letters = list["letters"].as_array().expect("letters");
    assert_eq!(letters.len(), 1, "{list}");
    let letter = &letters[0];
    assert_eq!(letter["message_id"], message_id.to_string());
    assert_eq!(letter["status"], "pending");
    assert_eq!(letter["queue"], "orders");
    assert_eq!(letter["last_error"], "shipping api: 422 address missing");
    assert!(list["next_cursor"].is_null(), "{list}");
    let id = letter["id"].as_i64().expect("id");
    let pending = http::get(
        service.addr,
        "/admin/outbox/dead-letters?status=pending&limit=10",
    )
    .await;
    assert_eq!(pending.json()["letters"].as_array().map(Vec::len), Some(1));

    // Bad requests and unknown ids.
    assert_json_error(&requeue(service.addr, "999999").await, 404, "unknown id");
    assert_json_error(&requeue(service.addr, "abc").await, 400, "id not a number");
    let bogus = http::get(service.addr, "/admin/outbox/dead-letters?status=bogus").await;
    assert_json_error(&bogus, 400, "unknown status");
    let too_many = http::get(service.addr, "/admin/outbox/dead-letters?limit=5000").await;
    assert_json_error(&too_many, 400, "limit over 1000");

    // Requeue: the message goes back into its partition and is relayed.
    let done = requeue(service.addr, &id.to_string()).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["message_id"], message_id.to_string());
    assert_eq!(done.json()["dead_letter_id"], id);
    assert_json_error(
        &requeue(service.addr, &id.to_string()).await,
        409,
        "requeued twice",
    );
    let needle = message_id.to_string();
    wait_for(
        "the requeued message in the log",
        Duration::from_secs(30),
        || async { service.logged(&["relayed to log", &needle]) },
    )
    .await;
    let queue = admin::orders_queue(service.addr).await;
    assert_eq!(queue["dead_letters"]["pending"], 0, "{queue}");
    assert_eq!(queue["dead_letters"]["resolved"], 1, "{queue}");

    let status = service.terminate().await;
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        service.logs()
    );
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_and_requeue_dead_letters_on_sqlite() {
    admin_endpoints(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_and_requeue_dead_letters_on_postgres() {
    admin_endpoints(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_and_requeue_dead_letters_on_mysql() {
    admin_endpoints(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let db = TestDatabase::create(Backend::Sqlite, "sigterm")
        .await
        .expect("sqlite");
    let env = [("DATABASE_URL", db.url())];
    let mut service = Service::start(&env).await;
    // Orders in flight when the signal comes.
    let load = support::load::Load::start(service.addr, 4, 25);
    wait_for("some orders placed", Duration::from_secs(30), || async {
        load.confirmed() >= 20
    })
    .await;
    let status = service.terminate().await;
    let logs = service.logs();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{logs}");
    for line in [
        "SIGTERM received",
        "HTTP server stopped; draining the outbox",
    ] {
        assert!(logs.contains(line), "no {line:?} in the log:\n{logs}");
    }
    assert!(
        logs.lines().any(|l| l.ends_with("orders_service: stopped")),
        "the outbox did not finish stopping:\n{logs}"
    );
    drop(service);

    // The workers gave their leases back (else the new instance would wait
    // out the 60 s lease and miss the 30 s deadline below), and every
    // committed order is relayed.
    let mut service = Service::start(&env).await;
    load.redirect(service.addr);
    let posted = load.finish().await;
    wait_for("the backlog to drain", Duration::from_secs(30), || async {
        admin::backlog(service.addr).await == 0
    })
    .await;
    let queue = admin::orders_queue(service.addr).await;
    let relayed: i64 = queue["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["processed_seq"].as_i64().expect("processed_seq"))
        .sum();
    let confirmed = posted
        .iter()
        .filter(|p| matches!(p.outcome, support::load::Outcome::Confirmed { .. }))
        .count();
    assert_eq!(db.count_orders().await, relayed, "{queue}");
    assert!(
        relayed >= confirmed as i64,
        "{relayed} relayed, {confirmed} confirmed"
    );
    let status = service.terminate().await;
    assert!(status.success(), "{status}");
    db.drop_database().await;
}
