//! The outbox schema as sea-orm-migration values, and a one-call migrate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sea_query::{
    Alias, ColumnDef, ConditionalStatement, Expr, ExprTrait, Index, IndexCreateStatement, Query,
    Table, TableCreateStatement, TableName, TableRef,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::column::Column;
use crate::dialect::{ColumnKind, Dialect};
use crate::error::{DbErrorKind, OutboxError};
use crate::table::Tables;

mod upgrade;
mod v1;

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
        if upgrade::move_v1_messages(self, db).await? {
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

    /// Every table and index statement of schema v2, in order, for this backend.
    pub(crate) fn statements(&self) -> Vec<Statement> {
        self.table_statements(self.tables_and_indexes())
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

    pub(super) fn column(&self, name: &'static str, kind: ColumnKind) -> ColumnDef {
        let mut def = ColumnDef::new_with_type(name, self.dialect.column_type(kind));
        def.not_null();
        def
    }

    pub(super) fn auto_id(&self) -> ColumnDef {
        let mut def = ColumnDef::new(Column::Id);
        def.big_integer().not_null().auto_increment().primary_key();
        def
    }

    pub(super) fn index(
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

    /// Schema v2's tables and their indexes, in creation order.
    pub(crate) fn tables_and_indexes(
        &self,
    ) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
        use ColumnKind::{BigInt, Bytes, MessageId, Name, Text};
        let t = &self.tables;
        let mut seq = self.column(Column::Seq.name(), BigInt);
        seq.null();
        let mut message = Table::create()
            .table(t.message.clone())
            .if_not_exists()
            .col(self.auto_id())
            .col(self.column(Column::PartitionId.name(), BigInt))
            .col(seq)
            .col(self.column(Column::MessageId.name(), MessageId))
            .col(self.column(Column::Payload.name(), Bytes))
            .col(self.column(Column::PayloadType.name(), Name))
            .col(self.column(Column::Headers.name(), Text))
            .col(self.column(Column::CreatedAt.name(), BigInt))
            .to_owned();
        if let Some(options) = self.dialect.message_table_options() {
            message.extra(options);
        }
        let mut tables = shared_tables(self);
        let dead_letter = tables.pop();
        tables.push((message, self.message_indexes()));
        tables.extend(dead_letter);
        tables
    }

    /// The message table's indexes. A message is inserted with `seq` NULL,
    /// numbered by one UPDATE, and deleted by vacuum: the sequencer finds
    /// unsequenced messages oldest first (overall and per partition), the
    /// processor reads a partition's messages by `seq`, and a message id is
    /// unique. With partial indexes each index holds only the rows it
    /// serves, so numbering a message adds one entry (to the seq index) and
    /// enqueuing three.
    fn message_indexes(&self) -> Vec<IndexCreateStatement> {
        let t = &self.tables;
        let unsequenced = || Expr::col(Column::Seq).is_null();
        let by_message_id = self
            .index(
                &t.message,
                "message_message_id",
                &[Column::MessageId.name()],
            )
            .unique()
            .to_owned();
        if self.dialect.partial_indexes() {
            vec![
                by_message_id,
                self.index(&t.message, "message_unsequenced", &[Column::Id.name()])
                    .and_where(unsequenced())
                    .to_owned(),
                self.index(
                    &t.message,
                    "message_partition_unsequenced",
                    &[Column::PartitionId.name(), Column::Id.name()],
                )
                .and_where(unsequenced())
                .to_owned(),
                self.index(
                    &t.message,
                    "message_partition_seq",
                    &[Column::PartitionId.name(), Column::Seq.name()],
                )
                .unique()
                .and_where(Expr::col(Column::Seq).is_not_null())
                .to_owned(),
            ]
        } else {
            // Without partial indexes: NULLs do not collide in a unique
            // index, and (seq, id) starts with the unsequenced rows in id
            // order; (partition_id, seq) ends with the primary key, so it
            // also finds a partition's unsequenced rows in id order.
            vec![
                by_message_id,
                self.index(
                    &t.message,
                    "message_unsequenced",
                    &[Column::Seq.name(), Column::Id.name()],
                ),
                self.index(
                    &t.message,
                    "message_partition_seq",
                    &[Column::PartitionId.name(), Column::Seq.name()],
                )
                .unique()
                .to_owned(),
            ]
        }
    }
}

/// The tables schema v1 and v2 share: instance, partition, dead letter.
fn shared_tables(schema: &OutboxSchema) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
    use ColumnKind::{BigInt, Bytes, Int, MessageId, Name, Text};
    let t = &schema.tables;
    let nullable = |mut def: ColumnDef| {
        def.null();
        def
    };
    let with_default = |mut def: ColumnDef, value: i64| {
        def.default(value);
        def
    };
    let column = |name: Column, kind| schema.column(name.name(), kind);

    let partition = Table::create()
        .table(t.partition.clone())
        .if_not_exists()
        .col(schema.auto_id())
        .col(column(Column::QueueName, Name))
        .col(column(Column::PartitionNo, Int))
        .col(with_default(column(Column::NextSeq, BigInt), 1))
        .col(with_default(column(Column::ProcessedSeq, BigInt), 0))
        .col(with_default(column(Column::Attempts, Int), 0))
        .col(nullable(column(Column::LastError, Text)))
        .col(with_default(column(Column::RetryAt, BigInt), 0))
        .col(nullable(column(Column::LeaseOwner, Name)))
        .col(with_default(column(Column::LeaseUntil, BigInt), 0))
        .col(with_default(column(Column::LeaseToken, BigInt), 0))
        .to_owned();
    let partition_indexes = vec![
        schema
            .index(
                &t.partition,
                "partition_queue_no",
                &[Column::QueueName.name(), Column::PartitionNo.name()],
            )
            .unique()
            .to_owned(),
    ];

    let dead_letter = Table::create()
        .table(t.dead_letter.clone())
        .if_not_exists()
        .col(schema.auto_id())
        .col(column(Column::QueueName, Name))
        .col(column(Column::PartitionNo, Int))
        .col(column(Column::Seq, BigInt))
        .col(column(Column::MessageId, MessageId))
        .col(column(Column::Payload, Bytes))
        .col(column(Column::PayloadType, Name))
        .col(column(Column::Headers, Text))
        .col(column(Column::CreatedAt, BigInt))
        .col(column(Column::FailedAt, BigInt))
        .col(column(Column::Attempts, Int))
        .col(column(Column::LastError, Text))
        .col(column(Column::Status, Name))
        .col(nullable(column(Column::Deadline, BigInt)))
        .col(nullable(column(Column::CompletedAt, BigInt)))
        .to_owned();
    let dead_letter_indexes = vec![
        schema.index(
            &t.dead_letter,
            "dead_letter_scope",
            &[
                Column::Status.name(),
                Column::QueueName.name(),
                Column::PartitionNo.name(),
            ],
        ),
        schema.index(
            &t.dead_letter,
            "dead_letter_failed_at",
            &[Column::FailedAt.name()],
        ),
        schema.index(
            &t.dead_letter,
            "dead_letter_message_id",
            &[Column::MessageId.name()],
        ),
    ];

    let instance = Table::create()
        .table(t.instance.clone())
        .if_not_exists()
        .col(column(Column::Owner, Name).primary_key().to_owned())
        .col(column(Column::HeartbeatUntil, BigInt))
        .col(with_default(column(Column::Incarnation, BigInt), 0))
        .to_owned();

    vec![
        (instance, Vec::new()),
        (partition, partition_indexes),
        (dead_letter, dead_letter_indexes),
    ]
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
            .table_statements(v1::tables_and_indexes(&self.schema));
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
/// DDL statement anyway, and the move is one transaction of its own.
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
