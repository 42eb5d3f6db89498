//! `/admin/outbox/...`: stats and dead letters, through the outbox admin API.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use outbox_core::{DeadLetterPage, DeadLetterScope, DeadLetterStatus, OutboxStats};
use serde::Deserialize;

use crate::error::ApiError;
use crate::json::{DeadLetterListJson, RequeuedJson};
use crate::state::AppState;

/// Default page size of the dead-letter list.
const DEFAULT_LIMIT: u32 = 100;

/// `GET /admin/outbox/stats`: every queue's backlog, cursors, leases, retry
/// state and dead letters, per partition: the outbox's `OutboxStats`, which
/// serializes as it is.
pub async fn stats(State(state): State<AppState>) -> Result<Json<OutboxStats>, ApiError> {
    Ok(Json(state.outbox.admin().stats().await?))
}

/// The query of `GET /admin/outbox/dead-letters`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    /// `pending`, `reprocessing`, `resolved` or `discarded`; all when absent.
    status: Option<String>,
    /// Only this queue.
    queue: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
}

/// `GET /admin/outbox/dead-letters`: one page of dead letters, oldest first.
pub async fn dead_letters(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<DeadLetterListJson>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let mut scope = DeadLetterScope::all();
    if let Some(status) = &params.status {
        let status: DeadLetterStatus = status.parse()?;
        scope = scope.status(status);
    }
    if let Some(queue) = params.queue {
        scope = scope.queue(queue);
    }
    let mut page = DeadLetterPage::new(params.limit.unwrap_or(DEFAULT_LIMIT));
    if let Some(cursor) = params.cursor {
        page = page.cursor(cursor);
    }
    let list = state.outbox.dead_letters().list(&scope, &page).await?;
    Ok(Json(DeadLetterListJson::from(&list)))
}

/// `POST /admin/outbox/dead-letters/{id}/requeue`: puts one pending dead
/// letter back into its queue (same message id, a new sequence number after
/// the partition's waiting messages). 404 for an unknown id, 409 for a
/// letter that is not pending.
pub async fn requeue(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<RequeuedJson>, ApiError> {
    let Path(id) = id.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let letters = state.outbox.dead_letters();
    let requeued = letters.requeue(&DeadLetterScope::all().id(id), 1).await?;
    if let Some(done) = requeued.first() {
        tracing::info!(dead_letter_id = id, message_id = %done.message_id, "dead letter requeued");
        return Ok(Json(RequeuedJson::from(done)));
    }
    // Nothing requeued: either no such letter (404 from `get`) or not pending.
    let letter = letters.get(id).await?;
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "dead letter {id} is {}: only pending dead letters can be requeued",
            letter.status
        ),
    ))
}
