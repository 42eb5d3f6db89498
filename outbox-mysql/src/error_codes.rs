//! SQLSTATE codes and messages and what they mean to the outbox.

use outbox_core::DbErrorKind;

/// Classifies a MySQL/MariaDB error by its SQLSTATE and, where MySQL lumps
/// several errors under `HY000`, its message.
pub(crate) fn classify(code: Option<&str>, message: &str) -> DbErrorKind {
    match code {
        // ER_LOCK_DEADLOCK (1213) and serialization failures
        Some("40001") => DbErrorKind::Conflict,
        // ER_DUP_ENTRY (1062) and other integrity violations share 23000
        Some("23000") if message.contains("Duplicate") => DbErrorKind::UniqueViolation,
        // ER_NO_SUCH_TABLE (1146), ER_BAD_FIELD_ERROR (1054)
        Some("42S02" | "42S22") => DbErrorKind::MissingSchema,
        // ER_NET_PACKET_TOO_LARGE (1153) is 08S01 and the server drops the
        // connection, but the same statement will never fit: not retryable.
        _ if message.contains("max_allowed_packet") => DbErrorKind::Other,
        Some(code) if code.starts_with("08") => DbErrorKind::Connection,
        // ER_LOCK_WAIT_TIMEOUT (1205) is HY000
        _ if message.contains("Lock wait timeout") => DbErrorKind::Busy,
        _ if message.contains("server has gone away") || message.contains("Lost connection") => {
            DbErrorKind::Connection
        }
        _ => DbErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            classify(Some("40001"), "Deadlock found"),
            DbErrorKind::Conflict
        );
        assert_eq!(
            classify(Some("23000"), "Duplicate entry 'x' for key 'PRIMARY'"),
            DbErrorKind::UniqueViolation
        );
        assert_eq!(
            classify(Some("42S02"), "Table 'test.x' doesn't exist"),
            DbErrorKind::MissingSchema
        );
        assert_eq!(
            classify(Some("HY000"), "Lock wait timeout exceeded"),
            DbErrorKind::Busy
        );
        assert_eq!(
            classify(
                Some("08S01"),
                "Got a packet bigger than 'max_allowed_packet' bytes"
            ),
            DbErrorKind::Other
        );
        assert_eq!(
            classify(Some("08S01"), "Got an error reading communication packets"),
            DbErrorKind::Connection
        );
        assert_eq!(
            classify(Some("HY000"), "something else"),
            DbErrorKind::Other
        );
    }
}
