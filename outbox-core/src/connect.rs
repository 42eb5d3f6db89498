//! Opening a connection pool, with an unreachable database reported as
//! [`OutboxError::CannotConnect`] naming where the URL points.

use std::time::Duration;

use sea_orm::error::ConnAcquireErr;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};

use crate::error::OutboxError;
use crate::redact::{redact_secrets, redact_url};

/// How long [`connect`] waits for a first connection: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a sea-orm connection pool for `url` (`postgres://`, `mysql://` for
/// MySQL and MariaDB, `sqlite://`), giving up after
/// [`DEFAULT_CONNECT_TIMEOUT`] if no first connection is made. The pool
/// otherwise has sea-orm's defaults; to set its size or timeouts, use
/// [`connect_with`].
///
/// outbox-core compiles no database driver: the backend crate you depend
/// on (`outbox-postgres`, `outbox-mysql`, `outbox-sqlite`) turns its own on.
/// A URL whose driver is not compiled in fails with
/// [`OutboxError::CannotConnect`] at once ("has no supporting driver").
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use outbox_core::OutboxError;
///
/// // Nothing listens on port 1: the error names the address, not the password.
/// let err = outbox_core::connect("postgres://app:s3cret@127.0.0.1:1/shop").await.unwrap_err();
/// assert!(matches!(err, OutboxError::CannotConnect { ref target, .. } if target == "127.0.0.1:1"));
/// assert!(err.to_string().starts_with("cannot connect to 127.0.0.1:1: "));
/// # }
/// ```
///
/// # Errors
/// [`OutboxError::CannotConnect`] when the server does not answer within
/// the timeout, refuses the connection or the credentials, or the URL is
/// malformed.
///
/// # Cancel safety
/// Cancel safe: dropping the future drops the half-opened pool.
pub async fn connect(url: &str) -> Result<DatabaseConnection, OutboxError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false);
    match tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, Database::connect(options)).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(source)) => Err(cannot_connect(url, source)),
        Err(_elapsed) => Err(cannot_connect(
            url,
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        )),
    }
}

/// Opens a sea-orm connection pool with `options`, as
/// [`sea_orm::Database::connect`] does, but reports a failure as
/// [`OutboxError::CannotConnect`] naming where the URL points. How long it
/// waits is `options`' `connect_timeout` (sea-orm's default is sqlx's 30 s
/// acquire timeout).
///
/// ```no_run
/// # async fn example() -> Result<(), outbox_core::OutboxError> {
/// use std::time::Duration;
/// use outbox_core::sea_orm::ConnectOptions;
///
/// let mut options = ConnectOptions::new("postgres://app@db.internal/shop");
/// options.max_connections(20).connect_timeout(Duration::from_secs(3));
/// let db = outbox_core::connect_with(options).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`OutboxError::CannotConnect`] when the server does not answer within
/// the timeout, refuses the connection or the credentials, or the URL is
/// malformed.
///
/// # Cancel safety
/// Cancel safe: dropping the future drops the half-opened pool.
pub async fn connect_with(options: ConnectOptions) -> Result<DatabaseConnection, OutboxError> {
    let url = options.get_url().to_owned();
    Database::connect(options)
        .await
        .map_err(|source| cannot_connect(&url, source))
}

/// [`OutboxError::CannotConnect`] for `url`. A driver's error that quotes
/// the URL (sea-orm's "has no supporting driver" does) is replaced by the
/// same text with the passwords hidden.
fn cannot_connect(url: &str, source: DbErr) -> OutboxError {
    let text = source.to_string();
    let redacted = redact_secrets(&text, url);
    let source = if redacted == text {
        source
    } else {
        DbErr::Conn(RuntimeErr::Internal(redacted))
    };
    OutboxError::CannotConnect {
        target: target(url),
        source,
    }
}

/// Where `url` points, without user or password: `host:port` for a server
/// (with the scheme's default port when the URL names none), the path for
/// SQLite, the redacted URL for anything else.
pub(crate) fn target(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_url(url);
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "sqlite" => {
            let path = rest.split(['?', '#']).next().unwrap_or(rest);
            return if path.is_empty() {
                redact_url(url)
            } else {
                path.to_owned()
            };
        }
        _ => return redact_url(url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // The userinfo ends at the last `@`: a password may contain one.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return format!("localhost:{default_port}");
    }
    let has_port = match host.rfind(']') {
        // `[::1]:5432`: a port follows the bracket.
        Some(bracket) => host[bracket..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn target_is_host_and_port_without_credentials() {
        assert_eq!(target("postgres://app:s3cret@db:6432/shop"), "db:6432");
        assert_eq!(target("postgresql://app@db/shop"), "db:5432");
        assert_eq!(
            target("mysql://root:p@ss@10.0.0.2/test?ssl-mode=required"),
            "10.0.0.2:3306"
        );
        assert_eq!(target("mysql://root@[::1]:3307/test"), "[::1]:3307");
        assert_eq!(target("postgres://[::1]/test"), "[::1]:5432");
        assert_eq!(target("postgres:///test"), "localhost:5432");
        assert_eq!(target("sqlite:///tmp/shop.db?mode=rwc"), "/tmp/shop.db");
        assert_eq!(target("sqlite://shop.db"), "shop.db");
        assert_eq!(target("redis://u:secret@h"), "redis://u:***@h");
        assert_eq!(target("no url at all"), "no url at all");
    }
}
