//! LISTEN/NOTIFY: triggers that notify on commit, and the listener.

use outbox_core::WakeupListener;
use outbox_core::sea_orm::sqlx::postgres::PgListener;
use outbox_core::sea_orm::{DatabaseConnection, DbErr, RuntimeErr};

/// Notifies a channel inside the current transaction: `$1` channel, `$2` payload.
pub(crate) const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

/// Above this many partitions in one statement, the trigger sends `p*`
/// (look everywhere) rather than a list that could pass NOTIFY's 8,000-byte limit.
const MAX_LISTED_PARTITIONS: usize = 500;

/// A statement-level trigger: a sequencer commit that numbered messages
/// (the only UPDATE of the message table) notifies `p<id>,<id>,...` with the partition rows filled, so processors
/// in other instances wake. `pg_notify` inside the writing transaction is
/// delivered by the server only on commit.
///
/// Incoming rows have no trigger: every instance that runs workers has a
/// sequencer woken in-process, so only producer-only instances notify `i`
/// (with [`NOTIFY_SQL`], from `enqueue`). A trigger on every producer commit
/// would cost every commit NOTIFY's global queue lock.
pub(crate) fn triggers(prefix: &str, channel: &str) -> Vec<String> {
    let trigger = |name: &str, table: &str, referencing: &str, function: &str| {
        format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{name}' AND tgrelid = '{table}'::regclass) THEN \
                 CREATE TRIGGER {name} AFTER UPDATE ON {table} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}(); \
               END IF; \
             END $$"
        )
    };
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION {prefix}notify_sequenced() RETURNS trigger LANGUAGE plpgsql AS $$ \
             DECLARE ids text; n integer; \
             BEGIN \
               SELECT string_agg(DISTINCT partition_id::text, ','), count(DISTINCT partition_id) INTO ids, n FROM new_rows; \
               PERFORM pg_notify('{channel}', CASE WHEN n > {MAX_LISTED_PARTITIONS} THEN 'p*' ELSE 'p' || ids END); \
               RETURN NULL; \
             END $$"
        ),
        trigger(
            &format!("{prefix}message_notify"),
            &format!("{prefix}message"),
            "REFERENCING NEW TABLE AS new_rows",
            &format!("{prefix}notify_sequenced"),
        ),
    ]
}

/// A dedicated connection from the pool that LISTENs on the channel; sqlx
/// re-establishes it (and the LISTEN) after it drops.
struct Listener(PgListener);

fn db_err(err: outbox_core::sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
}

#[async_trait::async_trait]
impl WakeupListener for Listener {
    async fn recv(&mut self) -> Result<Option<String>, DbErr> {
        match self.0.try_recv().await.map_err(db_err)? {
            Some(notification) => Ok(Some(notification.payload().to_owned())),
            None => Ok(None),
        }
    }
}

pub(crate) async fn listen(
    db: &DatabaseConnection,
    channel: &str,
) -> Result<Option<Box<dyn WakeupListener>>, DbErr> {
    let mut listener = PgListener::connect_with(db.get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
    listener.listen(channel).await.map_err(db_err)?;
    Ok(Some(Box::new(Listener(listener))))
}
