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
/// - `GET /metrics`: the outbox metrics, Prometheus text format;
/// - `GET /healthz`: `ok`.
///
/// [`App::router`](crate::App::router) also mounts the read-only web
/// console at `/outbox/`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(orders::place))
        .route("/admin/outbox/stats", get(admin::stats))
        .route("/admin/outbox/dead-letters", get(admin::dead_letters))
        .route(
            "/admin/outbox/dead-letters/{id}/requeue",
            post(admin::requeue),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// `GET /metrics`: every metric of this process in the Prometheus text format.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no metrics recorder installed\n",
        )
            .into_response(),
    }
}
