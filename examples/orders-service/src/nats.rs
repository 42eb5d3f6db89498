//! The NATS side: connect, and create or update the JetStream stream.

use std::time::Duration;

use outbox_relay::async_nats;
use outbox_relay::async_nats::jetstream;
use outbox_relay::async_nats::jetstream::stream::Config as StreamConfig;

use crate::config::NatsConfig;
use crate::start_error::StartError;

/// Connects to `NATS_URL` and creates (or updates) the stream `NATS_STREAM`
/// on the subjects `<NATS_SUBJECT_PREFIX>.>`, with a 2-minute duplicate
/// window: a message relayed again within it (same `Nats-Msg-Id`) is dropped
/// by the server.
///
/// # Errors
/// [`StartError::Nats`] when the server is unreachable or refuses the stream.
pub async fn connect(config: &NatsConfig) -> Result<jetstream::Context, StartError> {
    let client = async_nats::ConnectOptions::new()
        .name("orders-service")
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .connect(config.url.as_str())
        .await
        .map_err(|e| StartError::Nats(Box::new(e)))?;
    let context = jetstream::new(client);
    let stream = StreamConfig {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        duplicate_window: Duration::from_secs(120),
        ..StreamConfig::default()
    };
    let created = tokio::time::timeout(
        Duration::from_secs(15),
        context.create_or_update_stream(stream),
    )
    .await
    .map_err(|e| StartError::Nats(Box::new(e)))?
    .map_err(|e| StartError::Nats(Box::new(e)))?;
    tracing::info!(
        stream = %created.config.name,
        subjects = ?created.config.subjects,
        messages = created.state.messages,
        "JetStream stream ready"
    );
    Ok(context)
}

/// The subject template of the relay: `<prefix>.{partition}`.
pub fn subject_template(config: &NatsConfig) -> String {
    format!("{}.{{partition}}", config.subject_prefix)
}
