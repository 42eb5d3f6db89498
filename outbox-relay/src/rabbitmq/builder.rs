//! Settings for a [`RabbitMqRelay`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use lapin::ConnectionProperties;
use lapin::uri::{AMQPScheme, AMQPUri};
use outbox_core::{Batch, Delivery};
use tokio::sync::Mutex;

use super::{DEFAULT_ROUTING_KEY, Inner, RabbitMqRelay, State};
use crate::backoff::{Backoff, FailureCounter};
use crate::error::RelayError;
use crate::template::{Route, RouteFn, Template};

/// A template not parsed yet, or a function.
enum Setting {
    Template(String),
    Fn(RouteFn),
}

impl Setting {
    fn describe(&self) -> &str {
        match self {
            Self::Template(template) => template,
            Self::Fn(_) => "<fn>",
        }
    }

    fn into_route(self, what: &'static str) -> Result<Route, RelayError> {
        match self {
            Self::Template(source) => {
                let template = Template::parse(what, &source)?;
                let literal: usize = template.literals().map(str::len).sum();
                if literal > usize::from(u8::MAX) {
                    return Err(RelayError::InvalidTemplate {
                        what,
                        template: source,
                        reason: "AMQP names are at most 255 bytes",
                    });
                }
                Ok(Route::Template(template))
            }
            Self::Fn(route) => Ok(Route::Fn(route)),
        }
    }
}

/// Settings for a [`RabbitMqRelay`].
#[must_use]
pub struct RabbitMqRelayBuilder {
    uri: String,
    exchange: Setting,
    routing_key: Setting,
    properties: ConnectionProperties,
    connect_timeout: Duration,
    publish_timeout: Duration,
    backoff: Backoff,
}

impl fmt::Debug for RabbitMqRelayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqRelayBuilder")
            .field("exchange", &self.exchange.describe())
            .field("routing_key", &self.routing_key.describe())
            .field("connect_timeout", &self.connect_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl RabbitMqRelayBuilder {
    /// The default settings for the broker at `uri`.
    pub(super) fn new(uri: String) -> Self {
        Self {
            uri,
            exchange: Setting::Template(String::new()),
            routing_key: Setting::Template(DEFAULT_ROUTING_KEY.to_owned()),
            properties: ConnectionProperties::default().with_connection_name("outbox-relay".into()),
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }

    /// The exchange template, with the placeholders of
    /// [`routing_key`](Self::routing_key). Default `""`, the default
    /// exchange, which routes to the queue named by the routing key. The
    /// exchange must exist: publishing to a missing one is a
    /// [`Retry`](outbox_core::Outcome::Retry).
    pub fn exchange(mut self, template: impl Into<String>) -> Self {
        self.exchange = Setting::Template(template.into());
        self
    }

    /// Picks each message's exchange with a function instead of a template.
    pub fn exchange_fn(
        mut self,
        exchange: impl Fn(&Batch, &Delivery) -> String + Send + Sync + 'static,
    ) -> Self {
        self.exchange = Setting::Fn(Arc::new(exchange));
        self
    }

    /// The routing key template: literal text with `{queue}`,
    /// `{partition}`, `{payload_type}` and `{header:NAME}` placeholders.
    /// Default [`DEFAULT_ROUTING_KEY`]. Checked by [`build`](Self::build).
    pub fn routing_key(mut self, template: impl Into<String>) -> Self {
        self.routing_key = Setting::Template(template.into());
        self
    }

    /// Picks each message's routing key with a function instead of a
    /// template.
    pub fn routing_key_fn(
        mut self,
        routing_key: impl Fn(&Batch, &Delivery) -> String + Send + Sync + 'static,
    ) -> Self {
        self.routing_key = Setting::Fn(Arc::new(routing_key));
        self
    }

    /// The lapin connection properties (TLS, authentication, client
    /// properties). Default: lapin's defaults with connection name
    /// `outbox-relay`. Leave lapin's automatic recovery off: the relay
    /// reconnects by itself.
    pub fn connection_properties(mut self, properties: ConnectionProperties) -> Self {
        self.properties = properties;
        self
    }

    /// How long connecting (and opening a channel) may take before the batch
    /// stops as [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable).
    /// Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the broker's confirm of one message before the
    /// batch stops as [`Outcome::Unavailable`](outbox_core::Outcome::Unavailable).
    /// Default 5 s. Keep it well under the queue's lease duration.
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

    /// Builds the relay; it connects on its first batch.
    ///
    /// # Errors
    /// [`RelayError::InvalidUri`] if the URI does not parse;
    /// [`RelayError::UnclosedPlaceholder`], [`RelayError::UnmatchedBrace`],
    /// [`RelayError::UnknownPlaceholder`] or [`RelayError::InvalidTemplate`]
    /// for a malformed exchange or routing key template.
    pub fn build(self) -> Result<RabbitMqRelay, RelayError> {
        let uri =
            AMQPUri::from_str(&self.uri).map_err(|reason| RelayError::InvalidUri { reason })?;
        let scheme = match uri.scheme {
            AMQPScheme::AMQP => "amqp",
            AMQPScheme::AMQPS => "amqps",
        };
        let broker = format!(
            "{scheme}://{}:{}/{}",
            uri.authority.host, uri.authority.port, uri.vhost
        );
        Ok(RabbitMqRelay {
            inner: Arc::new(Inner {
                uri,
                broker,
                properties: self.properties,
                exchange: self.exchange.into_route("exchange")?,
                routing_key: self.routing_key.into_route("routing key")?,
                connect_timeout: self.connect_timeout,
                publish_timeout: self.publish_timeout,
                failures: FailureCounter::new(self.backoff),
                state: Mutex::new(State::default()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_checked_and_credentials_left_out_of_messages() {
        let relay = RabbitMqRelay::builder("amqp://guest:secret@127.0.0.1:5672/%2f")
            .build()
            .unwrap();
        assert_eq!(relay.inner.broker, "amqp://127.0.0.1:5672//");
        assert!(!format!("{relay:?}").contains("secret"));
        assert!(matches!(
            RabbitMqRelay::builder("http://example").build(),
            Err(RelayError::InvalidUri { .. })
        ));
    }

    #[test]
    fn templates_are_checked_at_build() {
        let built = RabbitMqRelay::builder("amqp://127.0.0.1")
            .exchange("events.{nope}")
            .build();
        assert!(matches!(
            built,
            Err(RelayError::UnknownPlaceholder {
                what: "exchange",
                ..
            })
        ));
        let built = RabbitMqRelay::builder("amqp://127.0.0.1")
            .routing_key("x".repeat(256))
            .build();
        assert!(matches!(built, Err(RelayError::InvalidTemplate { .. })));
    }
}
