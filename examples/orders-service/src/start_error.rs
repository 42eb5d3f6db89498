//! Why the service could not start.

use outbox_core::OutboxError;
use outbox_core::sea_orm::DbErr;

use crate::config::ConfigError;

/// A startup failure; `main` prints it with its causes and exits 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An environment variable is unusable.
    #[error("bad configuration")]
    Config(#[from] ConfigError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from `LISTEN_ADDR`.
        addr: std::net::SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The database is unreachable (`OutboxError::CannotConnect`, which
    /// names host and port).
    #[error("cannot connect to the database (DATABASE_URL)")]
    Connect(#[source] OutboxError),
    /// A migration failed.
    #[error("the migrations failed")]
    Migrate(#[source] DbErr),
    /// NATS is unreachable, or the stream cannot be set up.
    #[error("cannot set up the NATS JetStream relay (NATS_URL)")]
    Nats(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The outbox refused its configuration or schema.
    #[error("the outbox could not start")]
    Outbox(#[from] OutboxError),
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}
