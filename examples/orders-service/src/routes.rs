//! The HTTP routes.

mod admin;
mod orders;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The service's router:
/// - `POST /orders`: place an order (row and `OrderPlaced` message in one transaction);
/// - `GET /admin/outbox/stats`: backlog, cursors, leases, dead letters per queue and partition;
/// - `GET /admin/outbox/dead-letters`: one page of dead letters (`?status=&queue=&limit=&cursor=`);
/// - `POST /admin/outbox/dead-letters/{id}/requeue`: put one pending dead letter back;
/// - `GET /healthz`: `ok`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(orders::place))
        .route("/admin/outbox/stats", get(admin::stats))
        .route("/admin/outbox/dead-letters", get(admin::dead_letters))
        .route(
            "/admin/outbox/dead-letters/{id}/requeue",
            post(admin::requeue),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}
