//! The console's handlers: read through the admin API, render, act.

use std::sync::Arc;

use axum::extract::{Form, NestedPath, Path, Query, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use outbox_core::{DeadLetterPage, DeadLetterScope, DeadLetterStatus, OutboxError};
use serde::Deserialize;

use crate::console::State;
use crate::page;

type S = Shared<Arc<State>>;

/// The mount path, without a trailing slash ("" when not nested).
pub(crate) fn base(nested: Option<&NestedPath>) -> String {
    nested
        .map(|n| n.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

fn failed(base: &str, err: &OutboxError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(page::error(base, &err.to_string())),
    )
        .into_response()
}

pub(crate) async fn queues(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
) -> Response {
    let base = base(nested.as_ref().ok());
    match state.admin.stats().await {
        Ok(stats) => {
            state.sample(&stats);
            let rates = |queue: &str| {
                state
                    .samples
                    .lock()
                    .map(|s| s.rates(queue))
                    .unwrap_or_default()
            };
            Html(page::queues(&base, &stats, rates)).into_response()
        }
        Err(err) => failed(&base, &err),
    }
}

/// The partitions page's filter.
#[derive(Debug, Deserialize)]
pub(crate) struct QueueFilter {
    queue: Option<String>,
}

pub(crate) async fn partitions(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
    Query(filter): Query<QueueFilter>,
) -> Response {
    let base = base(nested.as_ref().ok());
    let queue = filter.queue.filter(|q| !q.is_empty());
    let stats = match &queue {
        Some(queue) => state.admin.queue_stats(queue).await,
        None => state.admin.stats().await,
    };
    match stats {
        Ok(stats) => Html(page::partitions(&base, &stats, queue.as_deref())).into_response(),
        Err(OutboxError::UnknownQueue { queue }) => (
            StatusCode::NOT_FOUND,
            Html(page::error(
                &base,
                &format!("no queue {queue:?} in the outbox tables"),
            )),
        )
            .into_response(),
        Err(err) => failed(&base, &err),
    }
}

/// The dead-letter list's filter and page.
#[derive(Debug, Deserialize)]
pub(crate) struct LetterFilter {
    queue: Option<String>,
    status: Option<String>,
    cursor: Option<i64>,
}

pub(crate) async fn dead_letters(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
    Query(filter): Query<LetterFilter>,
) -> Response {
    let base = base(nested.as_ref().ok());
    let mut scope = DeadLetterScope::all();
    let queue = filter.queue.filter(|q| !q.is_empty());
    if let Some(queue) = &queue {
        scope = scope.queue(queue.clone());
    }
    let status = match filter.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<DeadLetterStatus>() {
            Ok(status) => Some(status),
            Err(err) => return failed(&base, &err),
        },
    };
    if let Some(status) = status {
        scope = scope.status(status);
    }
    let mut page_of = DeadLetterPage::new(50);
    if let Some(cursor) = filter.cursor {
        page_of = page_of.cursor(cursor);
    }
    match state.admin.dead_letters().list(&scope, &page_of).await {
        Ok(list) => {
            Html(page::dead_letters(&base, &list, queue.as_deref(), status)).into_response()
        }
        Err(err) => failed(&base, &err),
    }
}

/// What an action left to say, shown once on the letter's page.
#[derive(Debug, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

pub(crate) async fn dead_letter(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
    Path(id): Path<i64>,
    Query(done): Query<Done>,
) -> Response {
    let base = base(nested.as_ref().ok());
    match state.admin.dead_letters().get(id).await {
        Ok(letter) => {
            let csrf = state.actions.then_some(state.csrf.as_str());
            Html(page::dead_letter(
                &base,
                &letter,
                csrf,
                done.done.as_deref(),
            ))
            .into_response()
        }
        Err(OutboxError::DeadLetterNotFound { .. }) => (
            StatusCode::NOT_FOUND,
            Html(page::error(&base, &format!("no dead letter with id {id}"))),
        )
            .into_response(),
        Err(err) => failed(&base, &err),
    }
}

/// An action form: its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
}

/// Refuses an action unless actions are on, the hook agrees and the token
/// matches.
fn check(state: &State, headers: &HeaderMap, form: &ActionForm, base: &str) -> Option<Response> {
    let refuse =
        |why: &str| Some((StatusCode::FORBIDDEN, Html(page::error(base, why))).into_response());
    if !state.actions {
        return refuse("this console is read-only: the host did not allow actions");
    }
    if let Some(authorize) = &state.authorize
        && !authorize(headers)
    {
        return refuse("not authorized to act");
    }
    if !same(form.csrf.as_bytes(), state.csrf.as_bytes()) {
        return refuse("the form's token is stale or missing: reload the page and try again");
    }
    None
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn requeue(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let base = base(nested.as_ref().ok());
    if let Some(refused) = check(&state, &headers, &form, &base) {
        return refused;
    }
    let scope = DeadLetterScope::all().id(id);
    match state.admin.dead_letters().requeue(&scope, 1).await {
        Ok(done) if done.is_empty() => {
            Redirect::to(&format!("{base}/dead-letters/{id}?done=nothing")).into_response()
        }
        Ok(_) => {
            tracing::info!(dead_letter = id, "outbox console requeued a dead letter");
            Redirect::to(&format!("{base}/dead-letters/{id}?done=requeued")).into_response()
        }
        Err(err) => failed(&base, &err),
    }
}

pub(crate) async fn discard(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let base = base(nested.as_ref().ok());
    if let Some(refused) = check(&state, &headers, &form, &base) {
        return refused;
    }
    let scope = DeadLetterScope::all().id(id);
    match state.admin.dead_letters().discard(&scope).await {
        Ok(0) => Redirect::to(&format!("{base}/dead-letters/{id}?done=nothing")).into_response(),
        Ok(_) => {
            tracing::info!(dead_letter = id, "outbox console discarded a dead letter");
            Redirect::to(&format!("{base}/dead-letters/{id}?done=discarded")).into_response()
        }
        Err(err) => failed(&base, &err),
    }
}

pub(crate) async fn instances(
    Shared(state): S,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
) -> Response {
    let base = base(nested.as_ref().ok());
    match state.admin.instances().await {
        Ok(instances) => Html(page::instances(&base, &instances)).into_response(),
        Err(err) => failed(&base, &err),
    }
}

pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/console.js"),
    )
        .into_response()
}
