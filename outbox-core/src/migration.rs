//! The outbox schema as sea-orm-migration values, and a one-call migrate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, IndexCreateStatement, Query, Table, TableCreateStatement, TableName,
    TableRef,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::column::Column;
use crate::dialect::{ColumnKind, Dialect};
use crate::error::{DbErrorKind, OutboxError};
use crate::table::Tables;

mod definition;
mod upgrade;
mod v1;

use definition::Definitions;

/// The outbox schema for one dialect and table prefix.
///
/// Add [`OutboxSchema::migrations`] to your application's `Migrator`, or call
/// [`OutboxSchema::migrate`] if you have none. Both are safe to re-run and
/// safe to run from two processes at once.
#[derive(Debug, Clone)]
pub struct OutboxSchema {
    dialect: Arc<dyn Dialect>,
    tables: Tables,
}

impl OutboxSchema {
    /// The schema with the default prefix `outbox_`.
    pub fn new(dialect: impl Dialect) -> Self {
        Self::from_arc(Arc::new(dialect))
    }

    pub(crate) fn from_arc(dialect: Arc<dyn Dialect>) -> Self {
        Self {
            dialect,
            tables: Tables::default_prefix(),
        }
    }

    /// Uses another table prefix (`[a-z][a-z0-9_]{0,39}`; default `outbox_`).
    ///
    /// # Errors
    /// [`OutboxError::InvalidTablePrefix`] for anything else.
    pub fn prefix(mut self, prefix: &str) -> Result<Self, OutboxError> {
        self.tables = Tables::new(prefix)?;
        Ok(self)
    }

    /// The migrations, to add to an application's own `Migrator::migrations()`.
    ///
    /// The first creates schema v1, the second adds a column to it, and the
    /// third moves to schema v2: it creates the message table, moves every
    /// message of v1's three tables into it (unsequenced ones in their
    /// order, sequenced ones with their numbers), and drops them.
    pub fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        let prefix = &self.tables.prefix;
        vec![
            Box::new(CreateTables {
                name: format!("m20261128_000001_{prefix}create_tables"),
                schema: self.clone(),
            }),
            Box::new(AddColumns {
                name: format!("m20261201_000002_{prefix}instance_incarnation"),
                schema: self.clone(),
            }),
            Box::new(UpgradeToV2 {
                name: format!("m20261203_000003_{prefix}message_table"),
                schema: self.clone(),
            }),
        ]
    }

    /// Brings the schema to the current version: creates the tables and
    /// indexes that do not exist yet, adds missing columns, and moves the
    /// messages of a schema v1 into v2 (see [`OutboxSchema::migrations`]).
    ///
    /// # Errors
    /// [`OutboxError::Database`] if the database refuses a statement after a
    /// few tries (tries are repeated because two processes creating the same
    /// table at once can make one of them fail on some backends).
    pub async fn migrate<C: ConnectionTrait>(&self, db: &C) -> Result<(), OutboxError> {
        let mut tries = 0;
        loop {
            match self.run_statements(db).await {
                Ok(()) => return Ok(()),
                Err(_) if tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(err) => {
                    return Err(crate::error::classify::db_error(self.dialect.as_ref(), err));
                }
            }
        }
    }

    /// Which schema version the database holds for this prefix: 2 (the
    /// message table), 1 (v1's three message tables), or 0 (none).
    ///
    /// # Errors
    /// None in practice: a table that cannot be read counts as missing.
    pub async fn version<C: ConnectionTrait>(&self, db: &C) -> Result<u32, OutboxError> {
        if upgrade::table_exists(db, &self.tables.message).await {
            Ok(2)
        } else if upgrade::table_exists(db, &self.tables.v1.outgoing).await {
            Ok(1)
        } else {
            Ok(0)
        }
    }

    /// Drops the outbox tables of this prefix and everything the schema
    /// created with them, messages included. For tests, benchmarks and
    /// tearing down; nothing calls it for you.
    ///
    /// # Errors
    /// [`OutboxError::Database`] if a statement fails.
    pub async fn drop_tables<C: ConnectionTrait>(&self, db: &C) -> Result<(), OutboxError> {
        let t = &self.tables;
        let backend = self.dialect.backend();
        let mut statements: Vec<Statement> = [
            &t.dead_letter,
            &t.message,
            &t.v1.outgoing,
            &t.v1.incoming,
            &t.v1.body,
            &t.partition,
            &t.instance,
        ]
        .into_iter()
        .map(|table| backend.build(Table::drop().table(table.clone()).if_exists()))
        .collect();
        for sql in self.dialect.drop_wakeup_schema(&t.prefix) {
            statements.push(Statement::from_string(backend, sql));
        }
        for statement in statements {
            db.execute_raw(statement)
                .await
                .map_err(|e| crate::error::classify::db_error(self.dialect.as_ref(), e))?;
        }
        Ok(())
    }

    async fn run_statements<C: ConnectionTrait>(&self, db: &C) -> Result<(), DbErr> {
        for statement in self.statements() {
            db.execute_raw(statement).await?;
        }
        self.add_columns(db).await?;
        self.finish_upgrade(db).await
    }

    /// What makes schema v2 whole once its tables exist: v1's messages
    /// moved over (when v1's tables are there) and the wakeup DDL.
    async fn finish_upgrade<C: ConnectionTrait>(&self, db: &C) -> Result<(), DbErr> {
        let backend = self.dialect.backend();
        if upgrade::move_v1_messages(&self.tables, db).await? {
            // v1's trigger went with its table; its function did not.
            for sql in self.dialect.drop_wakeup_schema(&self.tables.prefix) {
                db.execute_raw(Statement::from_string(backend, sql)).await?;
            }
        }
        for statement in self.wakeup_statements() {
            db.execute_raw(statement).await?;
        }
        Ok(())
    }

    /// Columns added after a table was first created: each is probed, and
    /// added when missing (no backend-neutral `ADD COLUMN IF NOT EXISTS`:
    /// MySQL and SQLite lack it). A concurrent migrator that added it first
    /// makes the `ALTER` fail; the probe then finds it.
    ///
    /// On PostgreSQL a failed probe aborts a surrounding transaction, so
    /// this runs on a connection (its migration opts out of the migrator's
    /// transaction).
    async fn add_columns<C: ConnectionTrait>(&self, db: &C) -> Result<(), DbErr> {
        use ColumnKind::BigInt;
        let t = &self.tables;
        let mut incarnation = self
            .definitions()
            .column(Column::Incarnation.name(), BigInt);
        incarnation.default(0);
        let probe = Query::select()
            .column((t.instance.clone(), Column::Incarnation))
            .from(t.instance.clone())
            .and_where(Expr::val(1).eq(0))
            .to_owned();
        if db.query_all(&probe).await.is_ok() {
            return Ok(());
        }
        let alter = Table::alter()
            .table(t.instance.clone())
            .add_column(incarnation)
            .to_owned();
        match db.execute(&alter).await {
            Ok(_) => Ok(()),
            Err(_) if db.query_all(&probe).await.is_ok() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Every table and index statement of schema v2, in order, for this backend.
    pub(crate) fn statements(&self) -> Vec<Statement> {
        self.table_statements(self.definitions().tables_and_indexes())
    }

    fn table_statements(
        &self,
        definitions: Vec<(TableCreateStatement, Vec<IndexCreateStatement>)>,
    ) -> Vec<Statement> {
        let backend = self.dialect.backend();
        let inline = self.dialect.indexes_inline();
        let mut out = Vec::new();
        for (mut table, indexes) in definitions {
            if inline {
                for mut index in indexes {
                    table.index(&mut index);
                }
                out.push(backend.build(&table));
            } else {
                out.push(backend.build(&table));
                for index in indexes {
                    out.push(backend.build(&index));
                }
            }
        }
        out
    }

    /// The dialect's wakeup DDL (PostgreSQL's trigger on the message table).
    fn wakeup_statements(&self) -> Vec<Statement> {
        let prefix = &self.tables.prefix;
        self.dialect
            .wakeup_schema(prefix, &crate::wakeup::channel(prefix))
            .into_iter()
            .map(|sql| Statement::from_string(self.dialect.backend(), sql))
            .collect()
    }

    /// The table definitions for this dialect and prefix.
    pub(crate) fn definitions(&self) -> Definitions<'_> {
        Definitions {
            dialect: self.dialect.as_ref(),
            tables: &self.tables,
        }
    }
}

struct CreateTables {
    name: String,
    schema: OutboxSchema,
}

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        &self.name
    }
}

#[async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let v1 = self
            .schema
            .table_statements(v1::tables_and_indexes(&self.schema.definitions()));
        for statement in v1 {
            manager.get_connection().execute_raw(statement).await?;
        }
        Ok(())
    }
}

/// Adds the columns of later versions to tables created before them.
struct AddColumns {
    name: String,
    schema: OutboxSchema,
}

impl MigrationName for AddColumns {
    fn name(&self) -> &str {
        &self.name
    }
}

#[async_trait]
impl MigrationTrait for AddColumns {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.schema.add_columns(manager.get_connection()).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

/// Schema v2: the message table, v1's messages moved into it, v1's tables
/// dropped. Runs outside the migrator's transaction: MySQL commits at each
/// DDL statement anyway, and each step of the move can be re-run (see
/// `upgrade.rs`), so an interrupted run is finished by the next.
struct UpgradeToV2 {
    name: String,
    schema: OutboxSchema,
}

impl MigrationName for UpgradeToV2 {
    fn name(&self) -> &str {
        &self.name
    }
}

#[async_trait]
impl MigrationTrait for UpgradeToV2 {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in self.schema.statements() {
            db.execute_raw(statement).await?;
        }
        self.schema.finish_upgrade(db).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

impl OutboxSchema {
    /// Shorthand for [`OutboxSchema::new`] on an `Arc`'d dialect.
    pub fn for_dialect(dialect: Arc<dyn Dialect>) -> Self {
        Self::from_arc(dialect)
    }
}

/// Reads every column the migration creates from every table, so a missing
/// or old schema is reported at start rather than as a failing worker later.
/// The columns come from the migration's own table definitions: a column
/// added there is checked here with no second list to keep.
pub(crate) async fn check_schema(
    db: &DatabaseConnection,
    dialect: &Arc<dyn Dialect>,
    tables: &Tables,
) -> Result<(), OutboxError> {
    let schema = OutboxSchema {
        dialect: dialect.clone(),
        tables: tables.clone(),
    };
    let probes = schema
        .definitions()
        .tables_and_indexes()
        .into_iter()
        .filter_map(|(table, _)| {
            let Some(TableRef::Table(TableName(_, name), _)) = table.get_table_name() else {
                return None;
            };
            let columns: Vec<Alias> = table
                .get_columns()
                .iter()
                .map(|column| Alias::new(column.get_column_name()))
                .collect();
            Some((name.clone(), columns))
        });
    for (table, columns) in probes {
        // Qualified names: SQLite reads an unknown double-quoted name on its
        // own as a string literal, so `SELECT Column::LeaseToken` from a table
        // without that column would succeed; `"table".Column::LeaseToken` fails.
        let select = Query::select()
            .columns(columns.iter().map(|column| (table.clone(), column.clone())))
            .from(table.clone())
            .and_where(Expr::val(1).eq(0))
            .to_owned();
        if let Err(source) = db.query_all(&select).await {
            let err = crate::error::classify::db_error(dialect.as_ref(), source);
            return Err(match err {
                OutboxError::Database { kind, source }
                    if kind == DbErrorKind::MissingSchema || kind == DbErrorKind::Other =>
                {
                    OutboxError::SchemaMissing {
                        prefix: tables.prefix.clone(),
                        source,
                    }
                }
                other => other,
            });
        }
    }
    Ok(())
}

/// Galera and multi-primary group replication take row locks on one node
/// only (conflicts surface at commit, as certification failures), so two
/// instances writing through two nodes could both hold a partition. One
/// writer node is safe and a start-up check cannot see which node the other
/// instances use: warn rather than refuse.
pub(crate) async fn warn_if_multi_primary(db: &DatabaseConnection, dialect: &dyn Dialect) {
    let Some(probe) = dialect.multi_primary_probe() else {
        return;
    };
    let rows = match db
        .query_all_raw(sea_orm::Statement::from_string(dialect.backend(), probe))
        .await
    {
        Ok(rows) => rows,
        Err(err) => {
            tracing::debug!(error = %err, "outbox could not check for a multi-primary cluster");
            return;
        }
    };
    for row in rows {
        let setting: String = row.try_get("", "Variable_name").unwrap_or_default();
        let value: String = row.try_get("", "Value").unwrap_or_default();
        tracing::warn!(
            setting = %setting,
            value = %value,
            "outbox: this server is one of several primaries, whose row locks do not see each other; \
             run every outbox instance against one writer node, or order per partition and \
             transactional exactly-once can break (see the guide: Galera and multi-primary MySQL)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_outbox_is_valid_as_the_default() {
        assert!(Tables::new(crate::table::DEFAULT_TABLE_PREFIX).is_ok());
    }
}
