//! The service's admin endpoints, read by the tests.

use std::net::SocketAddr;

use super::http;

/// `GET /admin/outbox/stats` as JSON (asserts a 200).
pub async fn stats(addr: SocketAddr) -> serde_json::Value {
    let response = http::get(addr, "/admin/outbox/stats").await;
    assert_eq!(response.status, 200, "stats: {}", response.body);
    response.json()
}

/// The `orders` queue's stats.
pub async fn orders_queue(addr: SocketAddr) -> serde_json::Value {
    let stats = stats(addr).await;
    stats["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["queue"] == "orders"))
        .cloned()
        .unwrap_or_else(|| panic!("no orders queue in {stats}"))
}

/// Messages not yet relayed: incoming plus unprocessed.
pub async fn backlog(addr: SocketAddr) -> u64 {
    let queue = orders_queue(addr).await;
    queue["incoming"].as_u64().expect("incoming")
        + queue["unprocessed"].as_u64().expect("unprocessed")
}
