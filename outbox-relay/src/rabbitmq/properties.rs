//! The AMQP properties of a published message.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use outbox_core::{Batch, Delivery};

use crate::header;
use crate::relay::Failure;

/// AMQP `delivery_mode` for a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// An AMQP short string (at most 255 bytes), or a rejection naming `what`.
pub(super) fn short(what: &str, value: String) -> Result<ShortString, Failure> {
    let len = value.len();
    ShortString::try_new(value).map_err(|_| {
        Failure::Reject(format!(
            "{what} is {len} bytes long: AMQP allows at most 255"
        ))
    })
}

/// The AMQP properties of one message.
pub(super) fn properties(batch: &Batch, delivery: &Delivery) -> Result<BasicProperties, Failure> {
    let mut headers = FieldTable::default();
    for (name, value) in &delivery.headers {
        headers.insert(
            short(&format!("header name {name:?}"), name.clone())?,
            AMQPValue::LongString(value.clone().into()),
        );
    }
    for (name, value) in header::outbox_headers(batch, delivery) {
        headers.insert(
            short("header name", name.to_owned())?,
            AMQPValue::LongString(value.into()),
        );
    }
    let mut properties = BasicProperties::default()
        .with_message_id(short("message id", delivery.message_id.to_string())?)
        .with_type(short("payload type", delivery.payload_type.clone())?)
        .with_timestamp(u64::try_from(delivery.enqueued_at_ms / 1000).unwrap_or(0))
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    let content_type = delivery
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if let Some((_, content_type)) = content_type {
        properties = properties.with_content_type(short("content-type", content_type.clone())?);
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::delivery;

    fn text(properties: &BasicProperties, name: &str) -> Option<String> {
        match properties.headers().as_ref()?.inner().get(name)? {
            AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
            other => panic!("{name} is {other:?}"),
        }
    }

    #[test]
    fn properties_carry_the_id_type_time_and_every_header() {
        let (batch, delivery) = delivery(&[
            ("Content-Type", "application/json"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        let properties = properties(&batch, &delivery).unwrap();
        assert_eq!(
            properties.message_id().as_ref().map(ShortString::as_str),
            Some("00000000-0000-0000-0000-000000000007")
        );
        assert_eq!(
            properties.kind().as_ref().map(ShortString::as_str),
            Some("OrderPlaced")
        );
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(*properties.timestamp(), Some(1_700_000_000));
        assert_eq!(*properties.delivery_mode(), Some(PERSISTENT));
        assert_eq!(
            text(&properties, "traceparent").as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(text(&properties, "Outbox-Queue").as_deref(), Some("orders"));
        assert_eq!(text(&properties, "Outbox-Partition").as_deref(), Some("3"));
        assert_eq!(text(&properties, "Outbox-Seq").as_deref(), Some("42"));
        assert_eq!(
            text(&properties, "Outbox-Enqueued-At").as_deref(),
            Some("1700000000123")
        );
    }

    #[test]
    fn no_content_type_header_means_no_content_type() {
        let (batch, delivery) = delivery(&[]);
        assert_eq!(*properties(&batch, &delivery).unwrap().content_type(), None);
    }

    #[test]
    fn names_longer_than_255_bytes_reject_the_message() {
        assert!(matches!(
            short("x", "a".repeat(256)),
            Err(Failure::Reject(_))
        ));
        assert!(short("x", "a".repeat(255)).is_ok());
    }
}
