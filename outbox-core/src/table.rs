//! Names of the outbox tables, all sharing one validated prefix.

use sea_orm::sea_query::Alias;

use crate::error::OutboxError;

/// The default table prefix.
pub const DEFAULT_TABLE_PREFIX: &str = "outbox_";

/// The names of the outbox tables for one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub(crate) prefix: String,
    pub(crate) partition: Alias,
    /// Every message, from enqueue until vacuum (schema v2).
    pub(crate) message: Alias,
    pub(crate) dead_letter: Alias,
    pub(crate) instance: Alias,
    /// The three message tables of schema v1, which the v2 migration
    /// empties into `message` and drops.
    pub(crate) v1: V1Tables,
}

/// Schema v1's message tables: bodies by message id, unsequenced rows, and
/// sequenced rows.
#[derive(Debug, Clone)]
pub(crate) struct V1Tables {
    pub(crate) body: Alias,
    pub(crate) incoming: Alias,
    pub(crate) outgoing: Alias,
}

impl Tables {
    /// Table names for `prefix`, which must match `[a-z][a-z0-9_]{0,39}`:
    /// it is spliced into SQL as an identifier, so nothing else is accepted.
    pub(crate) fn new(prefix: &str) -> Result<Self, OutboxError> {
        validate_prefix(prefix)?;
        Ok(Self::build(prefix))
    }

    /// Table names for the default prefix `outbox_`.
    pub(crate) fn default_prefix() -> Self {
        Self::build(DEFAULT_TABLE_PREFIX)
    }

    fn build(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            partition: Alias::new(format!("{prefix}partition")),
            message: Alias::new(format!("{prefix}message")),
            v1: V1Tables {
                body: Alias::new(format!("{prefix}body")),
                incoming: Alias::new(format!("{prefix}incoming")),
                outgoing: Alias::new(format!("{prefix}outgoing")),
            },
            dead_letter: Alias::new(format!("{prefix}dead_letter")),
            instance: Alias::new(format!("{prefix}instance")),
        }
    }

    /// A name derived from the prefix (index names).
    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

fn validate_prefix(prefix: &str) -> Result<(), OutboxError> {
    let mut chars = prefix.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_with_letter && rest_ok && prefix.len() <= 40 {
        Ok(())
    } else {
        Err(OutboxError::InvalidTablePrefix {
            prefix: prefix.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_strict_identifiers() {
        assert!(Tables::new("outbox_").is_ok());
        assert!(Tables::new("t1_a").is_ok());
        for bad in [
            "",
            "1abc",
            "Outbox",
            "a-b",
            "a;drop table x",
            "a b",
            &"a".repeat(41),
        ] {
            assert!(Tables::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
