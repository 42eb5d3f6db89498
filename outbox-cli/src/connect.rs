//! From a URL to a connection and a dialect, and what a failure means for
//! the exit status.

use std::sync::Arc;
use std::time::Duration;

use outbox_core::sea_orm::{ConnectOptions, DatabaseConnection};
use outbox_core::{DbErrorKind, Dialect, OutboxError};

/// Why the tool stops, with its exit status.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments, URL or filter: exit 2.
    Usage(String),
    /// The database cannot be reached: exit 3.
    Unreachable(String),
    /// The outbox tables are missing: exit 4.
    NoSchema(String),
    /// The operation failed: exit 1.
    Failed(String),
}

impl Failure {
    /// The exit status.
    pub fn code(&self) -> u8 {
        match self {
            Self::Failed(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable(_) => 3,
            Self::NoSchema(_) => 4,
        }
    }

    /// The one-line reason.
    pub fn message(&self) -> &str {
        match self {
            Self::Usage(m) | Self::Unreachable(m) | Self::NoSchema(m) | Self::Failed(m) => m,
        }
    }
}

/// An error and its causes on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Drivers often repeat their cause in their own message.
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<OutboxError> for Failure {
    fn from(err: OutboxError) -> Self {
        let line = chain(&err);
        match err {
            OutboxError::SchemaMissing { prefix, .. } => Self::NoSchema(format!(
                "the outbox tables with prefix {prefix:?} are missing or out of date: run `outbox migrate` with the same --database-url and --table-prefix"
            )),
            OutboxError::UnknownQueue { queue } => Self::Failed(format!(
                "no queue {queue:?} in the outbox tables: check the name and --table-prefix"
            )),
            OutboxError::InvalidScope(_)
            | OutboxError::InvalidTablePrefix { .. }
            | OutboxError::DialectMismatch { .. } => Self::Usage(line),
            OutboxError::Database {
                kind: DbErrorKind::Connection,
                ..
            }
            | OutboxError::CannotConnect { .. } => Self::Unreachable(line),
            _ => Self::Failed(line),
        }
    }
}

/// The URL with its passwords (userinfo and `password=`-style query
/// parameters) replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    outbox_core::redact_url(url)
}

/// The dialect for a URL's scheme.
///
/// # Errors
/// [`Failure::Usage`] for any other scheme.
pub fn dialect_for(url: &str) -> Result<Arc<dyn Dialect>, Failure> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(Arc::new(outbox_postgres::PostgresDialect)),
        Some("mysql") => Ok(Arc::new(outbox_mysql::MySqlDialect)),
        Some("sqlite") => Ok(Arc::new(outbox_sqlite::SqliteDialect)),
        Some(other) => Err(Failure::Usage(format!(
            "unsupported database url scheme {other:?}: use postgres://, mysql:// (also for MariaDB) or sqlite://"
        ))),
        None => Err(Failure::Usage(format!(
            "{:?} is not a database url: use postgres://user@host/db, mysql://user@host/db or sqlite:///path/to/file.db",
            redact(url)
        ))),
    }
}

/// For `migrate` on SQLite: create the file if it does not exist, unless the
/// URL sets a mode itself.
pub fn create_if_missing(url: &str) -> String {
    if !url.to_ascii_lowercase().starts_with("sqlite:") || url.contains("mode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// Connects with short timeouts, so an unreachable server fails fast.
///
/// # Errors
/// [`Failure::Unreachable`] with the driver's reason.
pub async fn connect(url: &str) -> Result<DatabaseConnection, Failure> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(2)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    outbox_core::connect_with(options).await.map_err(|err| {
        // The tool names the whole URL (password hidden), which says more
        // than the host and port of `CannotConnect`'s own message.
        let reason = match &err {
            OutboxError::CannotConnect { source, .. } => chain(source),
            other => chain(other),
        };
        let hint = if reason.contains("timed out") {
            " (is the server up and reachable at that address?)"
        } else {
            ""
        };
        Failure::Unreachable(format!("cannot connect to {}: {reason}{hint}", redact(url)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact("postgres://app@db:5432/x?sslmode=disable&Password=s3cret"),
            "postgres://app@db:5432/x?sslmode=disable&Password=***"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/test?pwd=s3cret"),
            "mysql://root@127.0.0.1/test?pwd=***"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

    #[test]
    fn schemes_choose_the_dialect() {
        let name = |url| dialect_for(url).map(|d| d.name()).map_err(|f| f.code());
        assert_eq!(name("postgresql://h/db"), Ok("postgres"));
        assert_eq!(name("MYSQL://h/db"), Ok("mysql"));
        assert_eq!(name("sqlite:///tmp/x.db"), Ok("sqlite"));
        assert_eq!(name("redis://h"), Err(2));
        assert_eq!(name("just-a-path.db"), Err(2));
    }

    #[test]
    fn sqlite_migrate_creates_the_file() {
        assert_eq!(
            create_if_missing("sqlite:///a.db"),
            "sqlite:///a.db?mode=rwc"
        );
        assert_eq!(
            create_if_missing("sqlite:///a.db?cache=shared"),
            "sqlite:///a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            create_if_missing("sqlite:///a.db?mode=ro"),
            "sqlite:///a.db?mode=ro"
        );
        assert_eq!(create_if_missing("postgres://h/db"), "postgres://h/db");
    }
}
