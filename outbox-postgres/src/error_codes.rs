//! SQLSTATE codes and what they mean to the outbox.

use outbox_core::DbErrorKind;

/// Classifies a PostgreSQL error by its SQLSTATE.
pub(crate) fn classify(code: Option<&str>, _message: &str) -> DbErrorKind {
    let Some(code) = code else {
        return DbErrorKind::Other;
    };
    match code {
        // serialization_failure, deadlock_detected
        "40001" | "40P01" => DbErrorKind::Conflict,
        // lock_not_available, query_canceled (lock or statement timeout)
        "55P03" | "57014" => DbErrorKind::Busy,
        "23505" => DbErrorKind::UniqueViolation,
        // undefined_table, undefined_column
        "42P01" | "42703" => DbErrorKind::MissingSchema,
        // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions
        "57P01" | "57P02" | "57P03" => DbErrorKind::Connection,
        code if code.starts_with("08") => DbErrorKind::Connection,
        _ => DbErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(classify(Some("40P01"), ""), DbErrorKind::Conflict);
        assert_eq!(classify(Some("23505"), ""), DbErrorKind::UniqueViolation);
        assert_eq!(classify(Some("42P01"), ""), DbErrorKind::MissingSchema);
        assert_eq!(classify(Some("08006"), ""), DbErrorKind::Connection);
        assert_eq!(classify(Some("22P02"), ""), DbErrorKind::Other);
        assert_eq!(classify(None, ""), DbErrorKind::Other);
    }
}
