//! A stream for tests and examples.

use async_nats::jetstream::{self, Context};

use crate::error::RelayError;

/// Creates the stream `name` taking `subjects` if no stream of that name
/// exists; an existing stream is returned as it is. Meant for tests and
/// examples: in production the stream's limits, replicas and duplicate window
/// are the application's to choose.
///
/// # Errors
/// [`RelayError::Stream`] if JetStream refuses or cannot be reached.
///
/// # Cancel safety
/// Cancelling may leave the stream created.
pub async fn ensure_stream(
    context: &Context,
    name: &str,
    subjects: &[&str],
) -> Result<jetstream::stream::Stream, RelayError> {
    let config = jetstream::stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    context
        .get_or_create_stream(config)
        .await
        .map_err(|source| RelayError::Stream {
            stream: name.to_owned(),
            source: Box::new(source),
        })
}
