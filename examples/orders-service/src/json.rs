//! JSON views of the dead-letter admin types, as this service's API shapes
//! them (no claim deadline; the outbox's own types serialize as they are:
//! the stats endpoint returns `OutboxStats` directly).

mod dead_letter;

pub use dead_letter::{DeadLetterJson, DeadLetterListJson, RequeuedJson};
