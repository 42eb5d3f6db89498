//! The error an HTTP handler returns: a status and a JSON body
//! `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outbox_core::OutboxError;
use serde::Serialize;

/// An error answered as `{"error": message}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    /// A 400: the request cannot be used as sent.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A server-side failure: logged with its causes, answered 503 when
    /// trying again may help (a lost connection, a busy database), 500
    /// otherwise.
    pub fn internal(err: &(dyn std::error::Error + 'static), retryable: bool) -> Self {
        let message = chain(err);
        tracing::error!(error = %message, "request failed");
        let status = if retryable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self::new(status, message)
    }
}

impl From<OutboxError> for ApiError {
    fn from(err: OutboxError) -> Self {
        match &err {
            OutboxError::DeadLetterNotFound { .. } => Self::not_found(err.to_string()),
            OutboxError::InvalidScope(_) => Self::bad_request(err.to_string()),
            OutboxError::MessageStillQueued { .. }
            | OutboxError::MessageIdInUse { .. }
            | OutboxError::PartitionRowMissing { .. } => {
                Self::new(StatusCode::CONFLICT, err.to_string())
            }
            OutboxError::Database { kind, .. } => Self::internal(&err, kind.is_retryable()),
            _ => Self::internal(&err, false),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: &self.message,
        });
        (self.status, body).into_response()
    }
}

/// An error and its causes on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
