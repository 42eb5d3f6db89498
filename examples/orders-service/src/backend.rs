//! Which database the service talks to, chosen from the URL scheme.

use std::sync::Arc;

use outbox_core::Dialect;

/// A database backend the service supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URLs (the default: a file, no server).
    Sqlite,
    /// `postgres://` and `postgresql://` URLs.
    Postgres,
    /// `mysql://` URLs (MySQL and MariaDB).
    MySql,
}

impl Backend {
    /// The backend of a database URL, or `None` for an unknown scheme.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" => Some(Self::MySql),
            _ => None,
        }
    }

    /// The outbox dialect for this backend.
    pub fn dialect(self) -> Arc<dyn Dialect> {
        match self {
            Self::Sqlite => Arc::new(outbox_sqlite::SqliteDialect),
            Self::Postgres => Arc::new(outbox_postgres::PostgresDialect),
            Self::MySql => Arc::new(outbox_mysql::MySqlDialect),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_map_to_backends() {
        assert_eq!(
            Backend::from_url("sqlite://orders.db?mode=rwc"),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("MYSQL://u@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::from_url("orders.db"), None);
    }
}
