//! The transaction [`Outbox::transaction`] hands its callback: the database
//! transaction and the outbox to enqueue with, in one value.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult,
    SqliteTransactionMode, Statement, TransactionError, TransactionOptions, TransactionTrait,
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

impl Outbox {
    /// Runs `callback` in a transaction on the outbox's connection, commits,
    /// and only then wakes the sequencer. Returns what the callback returned.
    ///
    /// The callback gets an [`OutboxTransaction`]: enqueue with
    /// [`tx.enqueue`](OutboxTransaction::enqueue) and write your rows with it
    /// as with any sea-orm connection. Return an error (for example with `?`:
    /// [`OutboxError`] converts into `Box<dyn Error + Send + Sync>`, `anyhow`
    /// and the like) to roll everything back.
    ///
    /// ```no_run
    /// # use outbox_core::{Message, Outbox};
    /// # use outbox_core::sea_orm::ConnectionTrait;
    /// # type BoxError = Box<dyn std::error::Error + Send + Sync>;
    /// # async fn example(outbox: &Outbox) -> Result<(), BoxError> {
    /// let message_id = outbox
    ///     .transaction(|tx| {
    ///         Box::pin(async move {
    ///             tx.execute_unprepared("INSERT INTO orders (customer) VALUES ('alice')")
    ///                 .await?;
    ///             let message = Message::json("OrderPlaced", &serde_json::json!({ "customer": "alice" }))?;
    ///             Ok::<_, BoxError>(tx.enqueue("orders", "alice", message).await?)
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// On SQLite the transaction begins with `BEGIN IMMEDIATE`: it waits (up
    /// to the pool's busy timeout, 5 s by default in sqlx) for the single
    /// write lock before the callback runs, so a callback that reads and then
    /// writes cannot fail with "database is locked" because another writer
    /// committed in between. Do the same in transactions you begin yourself
    /// (`TransactionOptions::sqlite_transaction_mode`). Other backends begin
    /// an ordinary transaction.
    ///
    /// # Errors
    /// The callback's error (the transaction is rolled back), or a
    /// connection/commit error.
    ///
    /// # Cancel safety
    /// Dropped before the commit, the transaction is dropped and sea-orm
    /// rolls it back: nothing is written. Dropped during the commit, the
    /// commit may or may not land, and the workers are not woken (they find
    /// the messages at their next poll).
    pub async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c OutboxTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        // On SQLite the transaction takes the write lock when it begins
        // (`BEGIN IMMEDIATE`), so a callback that reads before it writes
        // waits for the lock within the busy timeout rather than failing at
        // once with "database is locked" (SQLITE_BUSY_SNAPSHOT) when another
        // writer committed in between. Other backends ignore the setting.
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let txn = self
            .shared
            .db
            .begin_with_options(options)
            .await
            .map_err(TransactionError::Connection)?;
        let tx = OutboxTransaction {
            txn,
            outbox: self.clone(),
        };
        let result = callback(&tx).await;
        match result {
            Ok(value) => {
                tx.txn
                    .commit()
                    .await
                    .map_err(TransactionError::Connection)?;
                self.notify();
                Ok(value)
            }
            Err(err) => {
                tx.txn
                    .rollback()
                    .await
                    .map_err(TransactionError::Connection)?;
                Err(TransactionError::Transaction(err))
            }
        }
    }
}
