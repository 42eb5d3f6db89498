//! Classifying database errors: what kind of failure a `DbErr` is, asked of
//! the dialect for server error codes. Kept apart from the error types so
//! that the dialect, which names `DbErrorKind`, is not imported back.

use sea_orm::DbErr;

use crate::dialect::Dialect;
use crate::error::{DbErrorKind, OutboxError};

/// Wraps a database error, classified by the dialect.
pub(crate) fn db_error(dialect: &dyn Dialect, err: DbErr) -> OutboxError {
    let kind = classify(dialect, &err);
    OutboxError::Database { kind, source: err }
}

/// How `dialect` sees `err`: connection and pool errors are `Connection`,
/// server errors go to the dialect's code table.
fn classify(dialect: &dyn Dialect, err: &DbErr) -> DbErrorKind {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as SqlxError;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbErrorKind::Connection,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                SqlxError::Database(db) => dialect.classify(db.code().as_deref(), db.message()),
                // sqlx refuses a statement with more bind parameters than the
                // protocol can count before sending anything: the connection
                // is fine, and the same statement will never pass.
                SqlxError::Protocol(message) if message.contains("too many arguments") => {
                    DbErrorKind::Other
                }
                SqlxError::Io(_)
                | SqlxError::Tls(_)
                | SqlxError::Protocol(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed => DbErrorKind::Connection,
                _ => DbErrorKind::Other,
            }
        }
        _ => DbErrorKind::Other,
    }
}
