//! [`OutboxAdmin`]: the connection, dialect and tables that dead-letter,
//! stats and instance code work on, from a started outbox
//! ([`OutboxHandle::admin`]) or from a bare connection (the `outbox`
//! command-line tool). Its dead-letter methods are in `dead_letter`, its
//! stats in `stats`, its instance list in `instance`.

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr};

use crate::dialect::Dialect;
use crate::error::{DbErrorKind, OutboxError};
use crate::handle::OutboxHandle;
use crate::outbox::Outbox;
use crate::table::Tables;

/// Dead-letter administration and stats for one database and table prefix.
///
/// Needs no started outbox and no registered queue: build one with
/// [`OutboxAdmin::new`] on any connection (as the `outbox` CLI does), or get
/// one from a running instance with [`OutboxHandle::admin`] (or
/// [`Outbox::admin`]), whose requeues then also wake that instance's
/// sequencer.
///
/// ```no_run
/// # use outbox_core::{Dialect, OutboxAdmin, DeadLetterScope};
/// # async fn example(db: sea_orm::DatabaseConnection, dialect: impl Dialect) -> Result<(), outbox_core::OutboxError> {
/// // `dialect` is outbox_sqlite::SqliteDialect, outbox_postgres::PostgresDialect
/// // or outbox_mysql::MySqlDialect (an `Arc<dyn Dialect>`: `OutboxAdmin::for_dialect`).
/// let admin = OutboxAdmin::new(db, dialect, "outbox_")?;
/// let stats = admin.stats().await?;
/// let waiting = admin
///     .dead_letters()
///     .count(&DeadLetterScope::all().queue("orders"))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OutboxAdmin {
    pub(crate) db: DatabaseConnection,
    pub(crate) dialect: Arc<dyn Dialect>,
    pub(crate) tables: Tables,
    /// The in-process outbox to wake after a requeue, if any.
    pub(crate) outbox: Option<Outbox>,
}

impl std::fmt::Debug for OutboxAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxAdmin")
            .field("dialect", &self.dialect.name())
            .field("prefix", &self.tables.prefix)
            .field("in_process", &self.outbox.is_some())
            .finish()
    }
}

impl OutboxAdmin {
    /// Administration on `db`, speaking `dialect`, for the tables with `prefix`
    /// (`outbox_` unless the outbox was built with another one).
    ///
    /// # Errors
    /// [`OutboxError::InvalidTablePrefix`] for a prefix outside
    /// `[a-z][a-z0-9_]{0,39}`; [`OutboxError::DialectMismatch`] when the
    /// connection is to another backend than the dialect's.
    pub fn new(
        db: DatabaseConnection,
        dialect: impl Dialect,
        prefix: &str,
    ) -> Result<Self, OutboxError> {
        Self::for_dialect(db, Arc::new(dialect), prefix)
    }

    /// [`OutboxAdmin::new`] with a dialect chosen at run time (as the CLI
    /// does from the URL's scheme).
    ///
    /// # Errors
    /// As [`OutboxAdmin::new`].
    pub fn for_dialect(
        db: DatabaseConnection,
        dialect: Arc<dyn Dialect>,
        prefix: &str,
    ) -> Result<Self, OutboxError> {
        let tables = Tables::new(prefix)?;
        let connection = db.get_database_backend();
        if connection != dialect.backend() {
            return Err(OutboxError::DialectMismatch {
                dialect: dialect.name(),
                connection: format!("{connection:?}").to_lowercase(),
            });
        }
        Ok(Self {
            db,
            dialect,
            tables,
            outbox: None,
        })
    }

    /// The table prefix.
    pub fn table_prefix(&self) -> &str {
        &self.tables.prefix
    }

    /// A database error, classified; a missing table becomes
    /// [`OutboxError::SchemaMissing`], which tells the operator to migrate.
    pub(crate) fn error(&self, err: DbErr) -> OutboxError {
        match crate::error::classify::db_error(self.dialect.as_ref(), err) {
            OutboxError::Database {
                kind: DbErrorKind::MissingSchema,
                source,
            } => OutboxError::SchemaMissing {
                prefix: self.tables.prefix.clone(),
                source,
            },
            other => other,
        }
    }

    /// Wakes the in-process sequencer, if there is one (after a commit).
    pub(crate) fn notify(&self) {
        if let Some(outbox) = &self.outbox {
            outbox.notify();
        }
    }
}

impl Outbox {
    /// Dead-letter administration and stats on this outbox's connection and
    /// tables; requeues wake this instance's sequencer.
    pub fn admin(&self) -> OutboxAdmin {
        OutboxAdmin {
            db: self.shared.db.clone(),
            dialect: self.shared.dialect.clone(),
            tables: self.shared.tables.clone(),
            outbox: Some(self.clone()),
        }
    }
}

impl OutboxHandle {
    /// Dead-letter administration and stats on this instance's connection
    /// and tables (as [`Outbox::admin`]); requeues wake this instance's
    /// sequencer. Cheap: it shares the connection pool.
    pub fn admin(&self) -> OutboxAdmin {
        self.outbox().admin()
    }
}
