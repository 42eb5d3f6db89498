//! The service's own sea-orm-migration `Migrator`: its `orders` table, then
//! the outbox tables.

use std::marker::PhantomData;

use outbox_core::sea_orm::sea_query::{ColumnDef, Table};
use outbox_core::sea_orm::{DatabaseConnection, DbErr};
use outbox_core::{Dialect, OutboxSchema};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};

use crate::backend::Backend;
use crate::order::ORDERS_TABLE;

/// The migrations of the service on backend `D`, in order: the `orders`
/// table, then [`OutboxSchema::migrations`].
///
/// `MigratorTrait` has no `self`, so the dialect is a type parameter; use
/// [`run`] to pick it from a [`Backend`].
#[derive(Debug, Default)]
pub struct Migrator<D>(PhantomData<D>);

impl<D: Dialect + Default> MigratorTrait for Migrator<D> {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![Box::new(CreateOrders)];
        migrations.extend(OutboxSchema::new(D::default()).migrations());
        migrations
    }
}

/// Applies every pending migration of the service (`Migrator::up(db, None)`).
///
/// # Errors
/// The database error of the first migration that fails.
pub async fn run(db: &DatabaseConnection, backend: Backend) -> Result<(), DbErr> {
    match backend {
        Backend::Sqlite => Migrator::<outbox_sqlite::SqliteDialect>::up(db, None).await,
        Backend::Postgres => Migrator::<outbox_postgres::PostgresDialect>::up(db, None).await,
        Backend::MySql => Migrator::<outbox_mysql::MySqlDialect>::up(db, None).await,
    }
}

/// Creates the `orders` table.
struct CreateOrders;

impl MigrationName for CreateOrders {
    fn name(&self) -> &str {
        "m20261128_000000_create_orders"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrders {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ORDERS_TABLE)
                    .if_not_exists()
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("customer").string_len(128).not_null())
                    .col(ColumnDef::new("items").text().not_null())
                    .col(ColumnDef::new("total_cents").big_integer().not_null())
                    .col(ColumnDef::new("created_at").big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ORDERS_TABLE).if_exists().to_owned())
            .await
    }
}
