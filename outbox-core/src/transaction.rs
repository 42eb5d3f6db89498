//! The transaction [`Outbox::transaction`] hands its callback: the database
//! transaction and the outbox to enqueue with, in one value.

use std::ops::Deref;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
};
use uuid::Uuid;

use crate::error::OutboxError;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::partition::PartitionKey;

/// A transaction begun by [`Outbox::transaction`], which commits it and then
/// wakes the workers: write your rows with it and enqueue in it, with no
/// outbox to clone into the callback.
///
/// It is a connection ([`ConnectionTrait`]) wherever sea-orm takes one
/// (`model.insert(tx)`, `Entity::find().all(tx)`, `tx.execute_unprepared(..)`),
/// and derefs to the [`DatabaseTransaction`] for code that wants that type.
///
/// ```no_run
/// # use outbox_core::{Message, Outbox};
/// # use outbox_core::sea_orm::ConnectionTrait;
/// # async fn example(outbox: &Outbox) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// outbox
///     .transaction(|tx| {
///         Box::pin(async move {
///             tx.execute_unprepared("UPDATE stock SET count = count - 1 WHERE sku = 's1'")
///                 .await?;
///             tx.enqueue("orders", "customer-7", Message::new("StockTaken", b"s1".to_vec()))
///                 .await?;
///             Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
///         })
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OutboxTransaction {
    pub(crate) txn: DatabaseTransaction,
    pub(crate) outbox: Outbox,
}

impl OutboxTransaction {
    /// Enqueues one message in this transaction, as [`Outbox::enqueue`].
    /// The commit of [`Outbox::transaction`] wakes the workers.
    ///
    /// # Errors
    /// As [`Outbox::enqueue`]; return the error from the callback and the
    /// transaction is rolled back.
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Outbox::enqueue`].
    pub async fn enqueue(
        &self,
        queue: &str,
        key: impl Into<PartitionKey>,
        message: Message,
    ) -> Result<Uuid, OutboxError> {
        self.outbox.enqueue(&self.txn, queue, key, message).await
    }

    /// Enqueues several messages to one queue in this transaction, as
    /// [`Outbox::enqueue_batch`].
    ///
    /// # Errors
    /// As [`Outbox::enqueue_batch`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Outbox::enqueue`].
    pub async fn enqueue_batch<I, K>(
        &self,
        queue: &str,
        messages: I,
    ) -> Result<Vec<Uuid>, OutboxError>
    where
        I: IntoIterator<Item = (K, Message)>,
        K: Into<PartitionKey>,
    {
        self.outbox.enqueue_batch(&self.txn, queue, messages).await
    }

    /// The outbox this transaction enqueues to.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The database transaction.
    pub fn transaction(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Deref for OutboxTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for OutboxTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        self.txn.is_mock_connection()
    }
}
