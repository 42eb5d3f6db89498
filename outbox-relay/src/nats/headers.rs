//! The headers of a message published to NATS.

use std::str::FromStr;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use outbox_core::{Batch, Delivery};

use crate::header;
use crate::relay::Failure;

/// The NATS headers of one message.
pub(super) fn headers(batch: &Batch, delivery: &Delivery) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::new();
    let mut put = |name: &str, value: &str| -> Result<(), Failure> {
        let name = HeaderName::from_str(name).map_err(|_| {
            Failure::Reject(format!(
                "header name {name:?} cannot be carried by NATS: use printable ASCII without ':'"
            ))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            Failure::Reject(format!(
                "header {name} has a value NATS cannot carry: it contains a line break"
            ))
        })?;
        map.insert(name, value);
        Ok(())
    };
    for (name, value) in &delivery.headers {
        put(name, value)?;
    }
    for (name, value) in header::outbox_headers(batch, delivery) {
        put(name, &value)?;
    }
    put(NATS_MESSAGE_ID.as_ref(), &delivery.message_id.to_string())?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::delivery;

    #[test]
    fn headers_carry_the_id_the_outbox_fields_and_the_message_headers() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (batch, delivery) = delivery(&[("traceparent", traceparent), ("Outbox-Seq", "1")]);
        let map = headers(&batch, &delivery).unwrap();
        let get = |name: &str| map.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(
            get("Nats-Msg-Id").as_deref(),
            Some("00000000-0000-0000-0000-000000000007")
        );
        assert_eq!(get("traceparent").as_deref(), Some(traceparent));
        assert_eq!(get("Outbox-Queue").as_deref(), Some("orders"));
        assert_eq!(get("Outbox-Partition").as_deref(), Some("3"));
        // The relay's own value wins over a header of the same name.
        assert_eq!(get("Outbox-Seq").as_deref(), Some("42"));
        assert_eq!(get("Outbox-Payload-Type").as_deref(), Some("OrderPlaced"));
        assert_eq!(get("Outbox-Enqueued-At").as_deref(), Some("1700000000123"));
    }

    #[test]
    fn headers_nats_cannot_carry_reject_the_message() {
        for bad in [
            ("bad name", "x"),
            ("a:b", "x"),
            ("é", "x"),
            ("ok", "line\nbreak"),
        ] {
            let (batch, delivery) = delivery(&[bad]);
            assert!(
                matches!(headers(&batch, &delivery), Err(Failure::Reject(_))),
                "{bad:?} accepted"
            );
        }
    }
}
