//! Settings for a [`JetStreamRelay`], and what makes a subject valid.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use outbox_core::{Batch, Delivery};

use super::{DEFAULT_SUBJECT, JetStreamRelay};
use crate::backoff::Backoff;
use crate::error::RelayError;
use crate::template::{Route, RouteFn, Template};

/// A subject template not parsed yet, or a function.
enum SubjectSetting {
    Template(String),
    Fn(RouteFn),
}

/// Settings for a [`JetStreamRelay`].
#[must_use]
pub struct JetStreamRelayBuilder {
    context: Context,
    subject: SubjectSetting,
    publish_timeout: Duration,
    backoff: Backoff,
}

impl fmt::Debug for JetStreamRelayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match &self.subject {
            SubjectSetting::Template(template) => template.as_str(),
            SubjectSetting::Fn(_) => "<fn>",
        };
        f.debug_struct("JetStreamRelayBuilder")
            .field("subject", &subject)
            .field("publish_timeout", &self.publish_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl JetStreamRelayBuilder {
    /// The default settings over `context`.
    pub(super) fn new(context: Context) -> Self {
        Self {
            context,
            subject: SubjectSetting::Template(DEFAULT_SUBJECT.to_owned()),
            publish_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }

    /// The subject template: literal text with `{queue}`, `{partition}`,
    /// `{payload_type}` and `{header:NAME}` placeholders. Default
    /// [`DEFAULT_SUBJECT`]. Checked by [`build`](Self::build); a rendered
    /// subject that is not a valid NATS subject (empty token, whitespace, a
    /// `*` or `>` token) rejects the message.
    pub fn subject(mut self, template: impl Into<String>) -> Self {
        self.subject = SubjectSetting::Template(template.into());
        self
    }

    /// Picks each message's subject with a function instead of a template.
    pub fn subject_fn(
        mut self,
        subject: impl Fn(&Batch, &Delivery) -> String + Send + Sync + 'static,
    ) -> Self {
        self.subject = SubjectSetting::Fn(Arc::new(subject));
        self
    }

    /// How long to wait for JetStream's ack of one message before the batch
    /// stops as [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable).
    /// Default 5 s; also set as the context's timeout. Keep it well under the
    /// queue's lease duration.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// The backoff while the broker is unavailable. Default 100 ms doubling
    /// to 30 s.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Builds the relay.
    ///
    /// # Errors
    /// [`RelayError::UnclosedPlaceholder`], [`RelayError::UnmatchedBrace`],
    /// [`RelayError::UnknownPlaceholder`] or [`RelayError::InvalidTemplate`]
    /// when the subject template is malformed or can never render to a valid
    /// subject.
    pub fn build(self) -> Result<JetStreamRelay, RelayError> {
        let subject = match self.subject {
            SubjectSetting::Template(source) => Route::Template(subject_template(&source)?),
            SubjectSetting::Fn(subject) => Route::Fn(subject),
        };
        Ok(JetStreamRelay::from_parts(
            self.context,
            subject,
            self.publish_timeout,
            self.backoff,
        ))
    }
}

/// Parses a subject template and checks what can be checked before a message
/// fills its placeholders.
pub(super) fn subject_template(source: &str) -> Result<Template, RelayError> {
    let invalid = |reason| RelayError::InvalidTemplate {
        what: "subject",
        template: source.to_owned(),
        reason,
    };
    let template = Template::parse("subject", source)?;
    if source.is_empty() {
        return Err(invalid("a subject cannot be empty"));
    }
    if template
        .literals()
        .any(|text| text.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(invalid("a subject cannot contain whitespace"));
    }
    if source.starts_with('.') || source.ends_with('.') || source.contains("..") {
        return Err(invalid(
            "a subject cannot have an empty token (a leading, trailing or double '.')",
        ));
    }
    Ok(template)
}

/// Whether `subject` can be published to.
pub(super) fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("is empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    for token in subject.split('.') {
        match token {
            "" => return Err("has an empty token"),
            "*" | ">" => return Err("has a wildcard token"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_subject_is_a_valid_template() {
        assert!(subject_template(DEFAULT_SUBJECT).is_ok());
    }

    #[test]
    fn subject_templates_that_cannot_render_a_subject_are_refused() {
        for bad in ["", "a b.{queue}", ".{queue}", "{queue}.", "a..{queue}"] {
            assert!(
                matches!(
                    subject_template(bad),
                    Err(RelayError::InvalidTemplate { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            subject_template("a.{nope}"),
            Err(RelayError::UnknownPlaceholder { .. })
        ));
        assert!(subject_template("events.{payload_type}.{header:tenant}").is_ok());
    }

    #[test]
    fn rendered_subjects_are_checked() {
        assert!(check_subject("outbox.orders.3").is_ok());
        assert!(check_subject("a*b.c>d").is_ok());
        for bad in ["", "a..b", "a.", ".a", "a b", "a.*", ">", "a\tb"] {
            assert!(check_subject(bad).is_err(), "{bad:?} accepted");
        }
    }
}
