//! `GET /metrics` counts exactly the orders placed, and the console is
//! mounted at `/outbox/`. No broker needed: the service relays to its log.
//!
//! ```text
//! cargo test -p orders-service --test metrics
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::database::{Backend, TestDatabase};
use support::http;
use support::service::Service;
use support::wait_for;

const ORDERS: usize = 25;

/// The value of `name{queue="orders"}` in a scrape; 0 when absent (not yet
/// registered).
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.split_once('{').is_some_and(|(metric, labels)| {
                metric == name && labels.contains("queue=\"orders\"")
            })
        })
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().expect("a number"))
}

async fn scrape(addr: SocketAddr) -> String {
    let response = http::get(addr, "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        response.content_type
    );
    response.body
}

async fn burst_moves_the_counters_by_exactly_the_orders(backend: Backend) {
    let Some(db) = TestDatabase::create(backend, "metrics_burst").await else {
        return;
    };
    let service = Service::start(&[("DATABASE_URL", db.url())]).await;
    let before = scrape(service.addr).await;
    let enqueued = sample(&before, "outbox_messages_enqueued_total");
    let delivered = sample(&before, "outbox_messages_delivered_total");

    for i in 0..ORDERS {
        let order = format!(
            r#"{{"customer":"m{i}","items":[{{"sku":"s1","qty":1}}],"total_cents":{}}}"#,
            100 + i
        );
        let response = http::post_json(service.addr, "/orders", &order).await;
        assert!(
            response.status == 201 || response.status == 200,
            "{}",
            response.body
        );
    }
    let addr = service.addr;
    wait_for(
        "every order is delivered",
        Duration::from_secs(60),
        || async move {
            let now = scrape(addr).await;
            sample(&now, "outbox_messages_delivered_total") >= delivered + ORDERS as f64
        },
    )
    .await;
    let after = scrape(service.addr).await;
    let moved = |name| sample(&after, name) - sample(&before, name);
    assert_eq!(
        moved("outbox_messages_enqueued_total"),
        ORDERS as f64,
        "{after}"
    );
    assert_eq!(
        moved("outbox_messages_delivered_total"),
        ORDERS as f64,
        "{after}"
    );
    assert_eq!(moved("outbox_messages_dead_lettered_total"), 0.0);
    assert_eq!(
        sample(&after, "outbox_messages_enqueued_total"),
        enqueued + ORDERS as f64
    );
    assert!(
        after.contains("outbox_delivery_latency_seconds_bucket{queue=\"orders\""),
        "latency is a histogram: {after}"
    );
    assert!(
        after.contains("# TYPE outbox_messages_delivered_total counter"),
        "{after}"
    );

    // The console, read-only, at /outbox/.
    let home = http::get(service.addr, "/outbox").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("data-queue=\"orders\""), "{}", home.body);
    assert!(
        home.body.contains("href=\"/outbox/dead-letters\""),
        "{}",
        home.body
    );
    let slash = http::get(service.addr, "/outbox/").await;
    assert_eq!(slash.status, 308, "/outbox/ leads to the console");
    let partitions = http::get(service.addr, "/outbox/partitions?queue=orders").await;
    assert_eq!(partitions.status, 200);
    drop(service);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_burst_of_orders_exactly_on_sqlite() {
    burst_moves_the_counters_by_exactly_the_orders(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_burst_of_orders_exactly_on_postgres() {
    burst_moves_the_counters_by_exactly_the_orders(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_burst_of_orders_exactly_on_mysql() {
    burst_moves_the_counters_by_exactly_the_orders(Backend::MySql).await;
}
