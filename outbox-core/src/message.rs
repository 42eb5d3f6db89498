//! The message a producer enqueues and the delivery a handler receives.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::OutboxError;

/// Longest accepted payload type, in bytes: the schema stores it in a
/// 128-character column.
pub const MAX_PAYLOAD_TYPE_LEN: usize = 128;
/// Longest accepted header name, in bytes.
pub const MAX_HEADER_NAME_LEN: usize = 128;
/// Longest accepted header value, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 8 * 1024;

/// A message to enqueue: payload bytes, a payload type, headers and an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) payload: Vec<u8>,
    pub(crate) payload_type: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) message_id: Option<Uuid>,
}

impl Message {
    /// A message with the given payload type (for example `"OrderPlaced"`:
    /// 1 to 128 bytes, no control characters, checked at enqueue) and bytes.
    pub fn new(payload_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            payload_type: payload_type.into(),
            headers: BTreeMap::new(),
            message_id: None,
        }
    }

    /// A message whose payload is `value` encoded as JSON.
    ///
    /// # Errors
    /// [`OutboxError::Json`] if `value` cannot be serialized.
    pub fn json<T: Serialize + ?Sized>(
        payload_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, OutboxError> {
        let payload = serde_json::to_vec(value).map_err(OutboxError::Json)?;
        Ok(Self::new(payload_type, payload))
    }

    /// Adds a header. Names are 1 to 128 bytes; values at most 8 KiB.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the message id; by default a new UUID v7 is assigned at enqueue.
    /// Ids must be unique: reusing one is reported as
    /// [`OutboxError::DuplicateMessageId`].
    pub fn message_id(mut self, id: Uuid) -> Self {
        self.message_id = Some(id);
        self
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload type.
    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }

    /// The headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// Checks everything that can be checked without the database.
    pub(crate) fn validate(&self, max_payload_bytes: usize) -> Result<(), OutboxError> {
        if self.payload.len() > max_payload_bytes {
            return Err(OutboxError::PayloadTooLarge {
                size: self.payload.len(),
                limit: max_payload_bytes,
            });
        }
        if self.payload_type.is_empty() {
            return Err(OutboxError::InvalidPayloadType {
                payload_type: self.payload_type.clone(),
                reason: "it is empty",
            });
        }
        if self.payload_type.len() > MAX_PAYLOAD_TYPE_LEN {
            return Err(OutboxError::InvalidPayloadType {
                payload_type: self.payload_type.clone(),
                reason: "it is longer than 128 bytes",
            });
        }
        if self.payload_type.chars().any(char::is_control) {
            // PostgreSQL refuses a NUL in text; none of them belongs in a type name.
            return Err(OutboxError::InvalidPayloadType {
                payload_type: self.payload_type.clone(),
                reason: "it contains control characters",
            });
        }
        for (name, value) in &self.headers {
            let reason = if name.is_empty() {
                Some("the name is empty")
            } else if name.len() > MAX_HEADER_NAME_LEN {
                Some("the name is longer than 128 bytes")
            } else if name.chars().any(char::is_control) {
                Some("the name contains control characters")
            } else if value.len() > MAX_HEADER_VALUE_LEN {
                Some("the value is longer than 8 KiB")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(OutboxError::InvalidHeader {
                    name: name.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// One message as a handler receives it.
///
/// It names its queue and partition, so one
/// [`LeasedMessageHandler`](crate::LeasedMessageHandler) or
/// [`TransactionalMessageHandler`](crate::TransactionalMessageHandler) can
/// serve several queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue the message was enqueued to.
    pub queue: String,
    /// Its partition number within the queue.
    pub partition: u32,
    /// The message's position in its partition: dense, starting at 1.
    pub seq: i64,
    /// The message id, stable across redeliveries: deduplicate on it.
    pub message_id: Uuid,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The payload type given at enqueue.
    pub payload_type: String,
    /// The headers given at enqueue.
    pub headers: BTreeMap<String, String>,
    /// When the message was enqueued, in milliseconds since the Unix epoch
    /// (database clock).
    pub enqueued_at_ms: i64,
}

impl Delivery {
    /// Decodes the payload as JSON.
    ///
    /// # Errors
    /// [`OutboxError::Json`] if the payload is not valid JSON for `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, OutboxError> {
        serde_json::from_slice(&self.payload).map_err(OutboxError::Json)
    }
}

/// The messages of one partition handed to a handler in one call, in
/// sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The queue.
    pub queue: String,
    /// The partition number within the queue.
    pub partition: u32,
    /// How many times the first message has been tried before (0 on the first try).
    pub attempt: u32,
    /// The messages, in sequence order, without gaps.
    pub messages: Vec<Delivery>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_payload_is_rejected() {
        let message = Message::new("t", vec![0u8; 11]);
        assert!(matches!(
            message.validate(10),
            Err(OutboxError::PayloadTooLarge {
                size: 11,
                limit: 10
            })
        ));
        assert!(message.validate(11).is_ok());
    }

    #[test]
    fn empty_header_name_is_rejected() {
        let message = Message::new("t", vec![]).header("", "x");
        assert!(matches!(
            message.validate(10),
            Err(OutboxError::InvalidHeader { .. })
        ));
    }

    #[test]
    fn empty_payload_type_is_rejected() {
        assert!(matches!(
            Message::new("", vec![]).validate(10),
            Err(OutboxError::InvalidPayloadType { .. })
        ));
    }

    #[test]
    fn payload_types_fit_the_column_and_carry_no_control_characters() {
        assert!(Message::new("t".repeat(128), vec![]).validate(10).is_ok());
        for bad in ["t".repeat(129), "a\0b".to_owned(), "a\nb".to_owned()] {
            assert!(
                matches!(
                    Message::new(bad.clone(), vec![]).validate(10),
                    Err(OutboxError::InvalidPayloadType { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
