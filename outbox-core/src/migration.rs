//! The outbox schema as sea-orm-migration values, and a one-call migrate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sea_query::{
    Alias, ColumnDef, Expr, ExprTrait, Index, IndexCreateStatement, Query, Table,
    TableCreateStatement, TableName, TableRef,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::column::Column;
use crate::dialect::{ColumnKind, Dialect};
use crate::error::{DbErrorKind, OutboxError};
use crate::table::Tables;

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
    pub fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTables {
                name: format!("m20261128_000001_{}create_tables", self.tables.prefix),
                schema: self.clone(),
            }),
            Box::new(AddColumns {
                name: format!(
                    "m20261201_000002_{}instance_incarnation",
                    self.tables.prefix
                ),
                schema: self.clone(),
            }),
        ]
    }

    /// Creates the tables and indexes that do not exist yet.
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
            &t.outgoing,
            &t.incoming,
            &t.body,
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
        self.add_columns(db).await
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
        let mut incarnation = self.column(Column::Incarnation.name(), BigInt);
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

    /// Every DDL statement of the schema, in order, for this backend.
    pub(crate) fn statements(&self) -> Vec<Statement> {
        let backend = self.dialect.backend();
        let inline = self.dialect.indexes_inline();
        let mut out = Vec::new();
        for (mut table, indexes) in self.tables_and_indexes() {
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
        let prefix = &self.tables.prefix;
        for sql in self
            .dialect
            .wakeup_schema(prefix, &crate::wakeup::channel(prefix))
        {
            out.push(Statement::from_string(backend, sql));
        }
        out
    }

    fn column(&self, name: &'static str, kind: ColumnKind) -> ColumnDef {
        let mut def = ColumnDef::new_with_type(name, self.dialect.column_type(kind));
        def.not_null();
        def
    }

    fn auto_id(&self) -> ColumnDef {
        let mut def = ColumnDef::new(Column::Id);
        def.big_integer().not_null().auto_increment().primary_key();
        def
    }

    fn index(
        &self,
        table: &sea_orm::sea_query::Alias,
        suffix: &str,
        columns: &[&'static str],
    ) -> IndexCreateStatement {
        let mut index = Index::create();
        index
            .name(self.tables.name(suffix))
            .table(table.clone())
            .if_not_exists();
        for column in columns {
            index.col(*column);
        }
        index
    }

    fn tables_and_indexes(&self) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
        use ColumnKind::{BigInt, Bytes, Int, MessageId, Name, Text};
        let t = &self.tables;
        let nullable = |mut def: ColumnDef| {
            def.null();
            def
        };
        let with_default = |mut def: ColumnDef, value: i64| {
            def.default(value);
            def
        };

        let partition = Table::create()
            .table(t.partition.clone())
            .if_not_exists()
            .col(self.auto_id())
            .col(self.column(Column::QueueName.name(), Name))
            .col(self.column(Column::PartitionNo.name(), Int))
            .col(with_default(self.column(Column::NextSeq.name(), BigInt), 1))
            .col(with_default(
                self.column(Column::ProcessedSeq.name(), BigInt),
                0,
            ))
            .col(with_default(self.column(Column::Attempts.name(), Int), 0))
            .col(nullable(self.column(Column::LastError.name(), Text)))
            .col(with_default(self.column(Column::RetryAt.name(), BigInt), 0))
            .col(nullable(self.column(Column::LeaseOwner.name(), Name)))
            .col(with_default(
                self.column(Column::LeaseUntil.name(), BigInt),
                0,
            ))
            .col(with_default(
                self.column(Column::LeaseToken.name(), BigInt),
                0,
            ))
            .to_owned();
        let partition_indexes = vec![
            self.index(
                &t.partition,
                "partition_queue_no",
                &[Column::QueueName.name(), Column::PartitionNo.name()],
            )
            .unique()
            .to_owned(),
        ];

        let body = Table::create()
            .table(t.body.clone())
            .if_not_exists()
            .col(
                self.column(Column::MessageId.name(), MessageId)
                    .primary_key()
                    .to_owned(),
            )
            .col(self.column(Column::Payload.name(), Bytes))
            .col(self.column(Column::PayloadType.name(), Name))
            .col(self.column(Column::Headers.name(), Text))
            .col(self.column(Column::CreatedAt.name(), BigInt))
            .to_owned();

        let incoming = Table::create()
            .table(t.incoming.clone())
            .if_not_exists()
            .col(self.auto_id())
            .col(self.column(Column::PartitionId.name(), BigInt))
            .col(self.column(Column::MessageId.name(), MessageId))
            .to_owned();
        let incoming_indexes = vec![self.index(
            &t.incoming,
            "incoming_partition_id",
            &[Column::PartitionId.name(), Column::Id.name()],
        )];

        let outgoing = Table::create()
            .table(t.outgoing.clone())
            .if_not_exists()
            .col(self.column(Column::PartitionId.name(), BigInt))
            .col(self.column(Column::Seq.name(), BigInt))
            .col(self.column(Column::MessageId.name(), MessageId))
            .primary_key(Index::create().col(Column::PartitionId).col(Column::Seq))
            .to_owned();

        let dead_letter = Table::create()
            .table(t.dead_letter.clone())
            .if_not_exists()
            .col(self.auto_id())
            .col(self.column(Column::QueueName.name(), Name))
            .col(self.column(Column::PartitionNo.name(), Int))
            .col(self.column(Column::Seq.name(), BigInt))
            .col(self.column(Column::MessageId.name(), MessageId))
            .col(self.column(Column::Payload.name(), Bytes))
            .col(self.column(Column::PayloadType.name(), Name))
            .col(self.column(Column::Headers.name(), Text))
            .col(self.column(Column::CreatedAt.name(), BigInt))
            .col(self.column(Column::FailedAt.name(), BigInt))
            .col(self.column(Column::Attempts.name(), Int))
            .col(self.column(Column::LastError.name(), Text))
            .col(self.column(Column::Status.name(), Name))
            .col(nullable(self.column(Column::Deadline.name(), BigInt)))
            .col(nullable(self.column(Column::CompletedAt.name(), BigInt)))
            .to_owned();
        let dead_letter_indexes = vec![
            self.index(
                &t.dead_letter,
                "dead_letter_scope",
                &[
                    Column::Status.name(),
                    Column::QueueName.name(),
                    Column::PartitionNo.name(),
                ],
            ),
            self.index(
                &t.dead_letter,
                "dead_letter_failed_at",
                &[Column::FailedAt.name()],
            ),
            self.index(
                &t.dead_letter,
                "dead_letter_message_id",
                &[Column::MessageId.name()],
            ),
        ];

        let instance = Table::create()
            .table(t.instance.clone())
            .if_not_exists()
            .col(
                self.column(Column::Owner.name(), Name)
                    .primary_key()
                    .to_owned(),
            )
            .col(self.column(Column::HeartbeatUntil.name(), BigInt))
            .col(with_default(
                self.column(Column::Incarnation.name(), BigInt),
                0,
            ))
            .to_owned();

        vec![
            (instance, Vec::new()),
            (partition, partition_indexes),
            (body, Vec::new()),
            (incoming, incoming_indexes),
            (outgoing, Vec::new()),
            (dead_letter, dead_letter_indexes),
        ]
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
        for statement in self.schema.statements() {
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
