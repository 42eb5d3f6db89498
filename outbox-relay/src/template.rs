//! Destination templates: `"outbox.{queue}.{partition}"` and the like.

use std::fmt;
use std::sync::Arc;

use outbox_core::{Batch, Delivery};

use crate::error::RelayError;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Queue,
    Partition,
    PayloadType,
    Header(String),
}

/// The default destination template of both relays.
pub(crate) const DEFAULT_TEMPLATE: &str = "outbox.{queue}.{partition}";

/// A parsed destination template.
///
/// Placeholders: `{queue}`, `{partition}`, `{payload_type}` and
/// `{header:NAME}` (the value of the message's header `NAME`; a message
/// without it cannot be routed). Everything else is literal; a template cannot
/// carry a literal `{` or `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `source`; `what` names the template in errors (`"subject"`).
    pub(crate) fn parse(what: &'static str, source: &str) -> Result<Self, RelayError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source.char_indices();
        while let Some((position, c)) = rest.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in rest.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(RelayError::UnclosedPlaceholder {
                            what,
                            template: source.to_owned(),
                            position,
                        });
                    }
                    let part = match name.as_str() {
                        "queue" => Part::Queue,
                        "partition" => Part::Partition,
                        "payload_type" => Part::PayloadType,
                        _ => match name.strip_prefix("header:") {
                            Some(header) if !header.is_empty() && !header.contains('{') => {
                                Part::Header(header.to_owned())
                            }
                            _ => {
                                return Err(RelayError::UnknownPlaceholder {
                                    what,
                                    template: source.to_owned(),
                                    placeholder: name,
                                });
                            }
                        },
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => {
                    return Err(RelayError::UnmatchedBrace {
                        what,
                        template: source.to_owned(),
                        position,
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// [`DEFAULT_TEMPLATE`], parsed.
    #[cfg(feature = "nats")]
    pub(crate) fn default_destination() -> Self {
        Self {
            source: DEFAULT_TEMPLATE.to_owned(),
            parts: vec![
                Part::Literal("outbox.".to_owned()),
                Part::Queue,
                Part::Literal(".".to_owned()),
                Part::Partition,
            ],
        }
    }

    /// The template as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text of the template, placeholders left out.
    pub(crate) fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Literal(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// Renders the template for one message, or says which header is missing.
    pub(crate) fn render(&self, batch: &Batch, delivery: &Delivery) -> Result<String, String> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Queue => out.push_str(&batch.queue),
                Part::Partition => out.push_str(&batch.partition.to_string()),
                Part::PayloadType => out.push_str(&delivery.payload_type),
                Part::Header(name) => match delivery.headers.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(format!(
                            "the message has no header {name:?}, which template {:?} needs",
                            self.source
                        ));
                    }
                },
            }
        }
        Ok(out)
    }
}

/// A function that picks a destination for each message.
pub(crate) type RouteFn = Arc<dyn Fn(&Batch, &Delivery) -> String + Send + Sync>;

/// Where a message goes: a template, or a function of the user's.
#[derive(Clone)]
pub(crate) enum Route {
    Template(Template),
    Fn(RouteFn),
}

impl Route {
    /// The destination of one message, or why it has none.
    pub(crate) fn render(&self, batch: &Batch, delivery: &Delivery) -> Result<String, String> {
        match self {
            Self::Template(template) => template.render(batch, delivery),
            Self::Fn(route) => Ok(route(batch, delivery)),
        }
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Template(template) => write!(f, "{:?}", template.as_str()),
            Self::Fn(_) => f.write_str("<fn>"),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::fixture::delivery as message;

    #[cfg(feature = "nats")]
    #[test]
    fn default_destination_is_the_default_template_parsed() {
        assert_eq!(
            Template::default_destination(),
            Template::parse("subject", DEFAULT_TEMPLATE).unwrap()
        );
    }

    #[test]
    fn every_placeholder_renders() {
        let template = Template::parse(
            "subject",
            "x.{queue}.{partition}.{payload_type}.{header:tenant}",
        )
        .unwrap();
        let (batch, delivery) = message(&[("tenant", "acme")]);
        assert_eq!(
            template.render(&batch, &delivery).unwrap(),
            "x.orders.3.OrderPlaced.acme"
        );
        assert_eq!(
            template.literals().collect::<Vec<_>>(),
            ["x.", ".", ".", "."]
        );
    }

    #[test]
    fn literal_only_and_empty_templates_render_as_is() {
        let (batch, delivery) = message(&[]);
        for source in ["", "events", "a-b_c:d"] {
            let template = Template::parse("exchange", source).unwrap();
            assert_eq!(template.render(&batch, &delivery).unwrap(), source);
            assert_eq!(template.as_str(), source);
        }
    }

    #[test]
    fn missing_header_is_a_render_error() {
        let template = Template::parse("subject", "t.{header:tenant}").unwrap();
        let (batch, delivery) = message(&[("other", "x")]);
        let err = template.render(&batch, &delivery).unwrap_err();
        assert!(err.contains("\"tenant\""), "{err}");
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(matches!(
            Template::parse("subject", "a.{queue"),
            Err(RelayError::UnclosedPlaceholder { position: 2, .. })
        ));
        assert!(matches!(
            Template::parse("subject", "a.}"),
            Err(RelayError::UnmatchedBrace { position: 2, .. })
        ));
        for bad in [
            "{queues}",
            "{}",
            "{header:}",
            "{header}",
            "{Queue}",
            "{a{queue}",
        ] {
            assert!(
                matches!(
                    Template::parse("subject", bad),
                    Err(RelayError::UnknownPlaceholder { .. })
                ),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn error_messages_name_the_template_and_the_fix() {
        let err = Template::parse("routing key", "{nope}").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("routing key template \"{nope}\""), "{text}");
        assert!(text.contains("{header:NAME}"), "{text}");
    }
}
