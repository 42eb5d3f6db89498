//! JSON views of the outbox admin types, which do not implement `Serialize`.

mod dead_letter;
mod stats;

pub use dead_letter::{DeadLetterJson, DeadLetterListJson, RequeuedJson};
pub use stats::{DeadLetterCountsJson, PartitionStatsJson, QueueStatsJson, StatsJson};
