//! Connecting to a backend, isolating each test, skipping loudly.

use std::sync::Arc;
use std::time::Duration;

use outbox_core::sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use outbox_core::{Dialect, Outbox, OutboxBuilder, OutboxSchema, redact_url};
use outbox_test_support::{Server, available, skip};

/// The backends the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, at `OUTBOX_TEST_POSTGRES_URL`.
    Postgres,
    /// MySQL or MariaDB, at `OUTBOX_TEST_MYSQL_URL`.
    MySql,
    /// SQLite, a temp file per test.
    Sqlite,
}

impl Backend {
    /// The server it needs, if any.
    fn server(self) -> Option<Server> {
        match self {
            Backend::Postgres => Some(Server::Postgres),
            Backend::MySql => Some(Server::MySql),
            Backend::Sqlite => None,
        }
    }
}

/// One test's database: a connection, the dialect, and a table prefix (or
/// SQLite file) no other test uses.
#[derive(Clone)]
pub struct TestDb {
    /// The backend.
    pub backend: Backend,
    /// A pool for this test.
    pub db: DatabaseConnection,
    /// The dialect for `backend`.
    pub dialect: Arc<dyn Dialect>,
    /// This test's table prefix.
    pub prefix: String,
    url: String,
    sqlite_path: Option<std::path::PathBuf>,
}

impl TestDb {
    /// Connects for one test, migrates its tables, or returns `None` after
    /// printing why the backend is skipped (a panic under
    /// `OUTBOX_REQUIRE_ALL_BACKENDS=1`).
    pub async fn connect(backend: Backend, case: &str) -> Option<TestDb> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}_", &tag[..10]);
        let (url, dialect, sqlite_path): (String, Arc<dyn Dialect>, _) = match backend {
            Backend::Postgres => (
                Server::Postgres.url(),
                Arc::new(outbox_postgres::PostgresDialect),
                None,
            ),
            Backend::MySql => (
                Server::MySql.url(),
                Arc::new(outbox_mysql::MySqlDialect),
                None,
            ),
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("outbox-test-{tag}.db"));
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Arc::new(outbox_sqlite::SqliteDialect),
                    Some(path),
                )
            }
        };
        if let Some(server) = backend.server()
            && !available(server, &url)
        {
            return None;
        }
        let db = match pool(&url).await {
            Ok(db) => db,
            Err(err) => {
                let why = format!("cannot connect to {}: {err}", redact_url(&url));
                skip(&format!("{case} on {backend:?}"), &why);
                return None;
            }
        };
        let test = TestDb {
            backend,
            db,
            dialect,
            prefix,
            url,
            sqlite_path,
        };
        test.schema().migrate(&test.db).await.expect("migrate");
        Some(test)
    }

    /// The schema for this test's prefix.
    pub fn schema(&self) -> OutboxSchema {
        OutboxSchema::for_dialect(self.dialect.clone())
            .prefix(&self.prefix)
            .expect("prefix")
    }

    /// A builder on this test's pool and prefix, with short intervals.
    pub fn builder(&self) -> OutboxBuilder {
        self.builder_on(self.db.clone())
    }

    /// A builder on another pool (a second instance).
    pub fn builder_on(&self, db: DatabaseConnection) -> OutboxBuilder {
        OutboxBuilder::new(db, self.dialect.clone())
            .table_prefix(self.prefix.clone())
            .poll_interval(Duration::from_millis(50))
            .vacuum_interval(Duration::from_millis(50))
    }

    /// The database URL (for child processes).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A second, separate pool to the same database.
    pub async fn another_pool(&self) -> DatabaseConnection {
        pool(&self.url).await.expect("second pool")
    }

    /// A table name with this test's prefix.
    pub fn table(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `SELECT COUNT(*)` of a prefixed table.
    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) AS n FROM {}", self.table(table)))
            .await
    }

    /// Messages not yet sequenced (`seq` NULL in the message table).
    pub async fn unsequenced(&self) -> i64 {
        self.scalar(&format!(
            "SELECT COUNT(*) AS n FROM {} WHERE seq IS NULL",
            self.table("message")
        ))
        .await
    }

    /// Runs a query returning one integer column named `n`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(outbox_core::sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect(sql)
            .expect("one row");
        row.try_get::<i64>("", "n").expect("integer column n")
    }

    /// Runs a statement.
    pub async fn exec(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.expect(sql);
    }

    /// Drops this test's tables (or file).
    pub async fn cleanup(&self) {
        if let Some(path) = &self.sqlite_path {
            self.db.clone().close().await.ok();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            return;
        }
        let _ = self.schema().drop_tables(&self.db).await;
        let _ = self
            .db
            .execute_unprepared(&format!("DROP TABLE IF EXISTS {}", self.table("side")))
            .await;
        self.db.clone().close().await.ok();
    }

    /// Creates `<prefix>side (message_id <bytes> PRIMARY KEY, seq BIGINT)`,
    /// the table transactional handlers write to.
    pub async fn create_side_table(&self) {
        let bytes = match self.backend {
            Backend::Postgres => "BYTEA",
            Backend::MySql => "BINARY(16)",
            Backend::Sqlite => "BLOB",
        };
        self.exec(&format!(
            "CREATE TABLE {} (message_id {bytes} NOT NULL PRIMARY KEY, seq BIGINT NOT NULL)",
            self.table("side")
        ))
        .await;
    }

    /// An INSERT into the side table for a handler to run in its transaction.
    pub fn side_insert(&self, message_id: uuid::Uuid, seq: i64) -> outbox_core::sea_orm::Statement {
        let backend = self.db.get_database_backend();
        let placeholder = if self.backend == Backend::Postgres {
            ("$1", "$2")
        } else {
            ("?", "?")
        };
        outbox_core::sea_orm::Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO {} (message_id, seq) VALUES ({}, {})",
                self.table("side"),
                placeholder.0,
                placeholder.1
            ),
            [message_id.as_bytes().to_vec().into(), seq.into()],
        )
    }

    /// Starts a producer-only instance for `queue` with `partitions`.
    pub async fn producer(&self, queue: &str, partitions: u32) -> outbox_core::OutboxHandle {
        self.builder()
            .queue(outbox_core::Queue::produce_only(queue, partitions))
            .run_workers(false)
            .start()
            .await
            .expect("producer start")
    }

    /// Sequences what waits in incoming without processing or vacuuming any
    /// queue a case registers: an instance with workers whose only queue is
    /// `z`.
    pub async fn sequence_all(&self) {
        let sequencer = self
            .builder()
            .queue(outbox_core::Queue::produce_only("z", 1))
            .start()
            .await
            .expect("sequencer start");
        let sequenced = crate::poll_until(std::time::Duration::from_secs(60), || async {
            self.unsequenced().await == 0
        })
        .await;
        assert!(
            sequenced,
            "timed out waiting until incoming rows are sequenced"
        );
        sequencer.stop().await;
    }

    /// Sanity: the outbox type is usable from cases.
    pub fn outbox_type_name() -> &'static str {
        std::any::type_name::<Outbox>()
    }
}

async fn pool(url: &str) -> Result<DatabaseConnection, outbox_core::sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(16)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}
