//! What can go wrong while configuring a relay.

/// A relay that cannot be built, or a stream that cannot be set up.
///
/// Publishing never returns this error: a failed publish becomes an
/// [`Outcome`](outbox_core::Outcome) for the outbox to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A `{` opens a placeholder that no `}` closes.
    #[error(
        "{what} template {template:?} has an unclosed '{{' at byte {position}: close it with '}}'"
    )]
    UnclosedPlaceholder {
        /// What the template is for (`subject`, `exchange`, `routing key`).
        what: &'static str,
        /// The template as given.
        template: String,
        /// Byte offset of the unclosed `{`.
        position: usize,
    },
    /// A `}` closes no placeholder.
    #[error(
        "{what} template {template:?} has a '}}' with no '{{' at byte {position}: templates cannot carry literal braces"
    )]
    UnmatchedBrace {
        /// What the template is for.
        what: &'static str,
        /// The template as given.
        template: String,
        /// Byte offset of the `}`.
        position: usize,
    },
    /// A placeholder the relay does not know.
    #[error(
        "{what} template {template:?} has an unknown placeholder {{{placeholder}}}: \
         use {{queue}}, {{partition}}, {{payload_type}} or {{header:NAME}}"
    )]
    UnknownPlaceholder {
        /// What the template is for.
        what: &'static str,
        /// The template as given.
        template: String,
        /// The text between the braces.
        placeholder: String,
    },
    /// The template can never render to a valid name for the broker.
    #[error("{what} template {template:?} is invalid: {reason}")]
    InvalidTemplate {
        /// What the template is for.
        what: &'static str,
        /// The template as given.
        template: String,
        /// What to change.
        reason: &'static str,
    },
    /// The broker URI does not parse.
    #[error("invalid broker URI: {reason}")]
    InvalidUri {
        /// Why it does not parse (the URI itself is left out: it may hold a
        /// password).
        reason: String,
    },
    /// Creating or updating a JetStream stream failed.
    #[cfg(feature = "nats")]
    #[error("cannot create or update the JetStream stream {stream:?}")]
    Stream {
        /// The stream name.
        stream: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
