//! `POST /orders`: the order row and its `OrderPlaced` message, in one transaction.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use outbox_core::sea_orm::DbErr;
use outbox_core::{Message, OutboxError, TransactionError};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::order::{NewOrder, ORDER_PLACED, ORDERS_QUEUE};
use crate::state::AppState;

/// The body of a 201.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// The order id (UUID v7).
    pub id: String,
    /// The id of its `OrderPlaced` message (UUID v7), which is also the
    /// `Nats-Msg-Id` on the broker.
    pub message_id: String,
    /// The trace id of the request, which the message carries in its
    /// `traceparent` header to the broker (absent without OpenTelemetry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// What can fail inside the transaction.
#[derive(Debug, thiserror::Error)]
enum PlaceError {
    #[error("could not insert the order row")]
    Insert(#[source] DbErr),
    #[error("could not enqueue the OrderPlaced message")]
    Enqueue(#[source] OutboxError),
}

impl PlaceError {
    /// Whether the client may succeed by sending the order again (a 503).
    fn retryable(&self) -> bool {
        match self {
            Self::Insert(err) => matches!(err, DbErr::Conn(_) | DbErr::ConnectionAcquire(_)),
            Self::Enqueue(OutboxError::Database { kind, .. }) => kind.is_retryable(),
            Self::Enqueue(_) => false,
        }
    }
}

/// Validates the order, then inserts its row and enqueues its
/// `OrderPlaced` message (queue `orders`, keyed by customer) in one
/// transaction; the message exists if and only if the row does. Runs in an
/// `http.request` span, whose trace context the message carries.
#[tracing::instrument(
    name = "http.request",
    skip_all,
    fields(http.request.method = "POST", http.route = "/orders")
)]
pub async fn place(
    State(state): State<AppState>,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Placed>), ApiError> {
    let Json(order) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    order
        .validate()
        .map_err(|invalid| ApiError::bad_request(invalid.to_string()))?;
    let event = order.place();
    let result = state
        .outbox
        .transaction(move |tx| {
            Box::pin(async move {
                event.insert(tx).await.map_err(PlaceError::Insert)?;
                let message = Message::json(ORDER_PLACED, &event)
                    .map_err(PlaceError::Enqueue)?
                    .header("content-type", "application/json");
                let message_id = tx
                    .enqueue(ORDERS_QUEUE, &event.customer, message)
                    .await
                    .map_err(PlaceError::Enqueue)?;
                Ok::<_, PlaceError>((event, message_id))
            })
        })
        .await;
    match result {
        Ok((event, message_id)) => {
            let trace_id = crate::telemetry::current_trace_id();
            tracing::info!(
                order_id = %event.order_id,
                customer = %event.customer,
                %message_id,
                trace_id = trace_id.as_deref().unwrap_or("-"),
                "order placed"
            );
            let placed = Placed {
                id: event.order_id,
                message_id: message_id.to_string(),
                trace_id,
            };
            Ok((StatusCode::CREATED, Json(placed)))
        }
        // Begin or commit failed: the database is unreachable or busy.
        Err(TransactionError::Connection(err)) => Err(ApiError::internal(&err, true)),
        Err(TransactionError::Transaction(err)) => Err(ApiError::internal(&err, err.retryable())),
    }
}
