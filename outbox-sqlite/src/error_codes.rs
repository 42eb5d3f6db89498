//! SQLite result codes and what they mean to the outbox.

use outbox_core::DbErrorKind;

/// Classifies a SQLite error by its (extended) result code and message.
pub(crate) fn classify(code: Option<&str>, message: &str) -> DbErrorKind {
    match code {
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes
        Some("5" | "6" | "261" | "262" | "517" | "773") => DbErrorKind::Busy,
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
        Some("2067" | "1555") => DbErrorKind::UniqueViolation,
        _ if message.contains("no such table") || message.contains("no such column") => {
            DbErrorKind::MissingSchema
        }
        _ => DbErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(classify(Some("5"), "database is locked"), DbErrorKind::Busy);
        assert_eq!(
            classify(Some("2067"), "UNIQUE constraint failed"),
            DbErrorKind::UniqueViolation
        );
        assert_eq!(
            classify(Some("1"), "no such table: x"),
            DbErrorKind::MissingSchema
        );
        assert_eq!(classify(Some("1"), "syntax error"), DbErrorKind::Other);
    }
}
