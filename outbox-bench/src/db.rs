//! The run's database: a pool, the dialect, a fresh table prefix, cleanup.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
};
use outbox_core::{Dialect, OutboxSchema};

use crate::BoxError;
use crate::args::{Args, BackendArg};

/// One run's database.
pub(crate) struct BenchDb {
    pub(crate) backend: BackendArg,
    /// The pool everything of the run uses (producers and workers).
    pub(crate) db: DatabaseConnection,
    pub(crate) dialect: Arc<dyn Dialect>,
    /// `b<10 hex>_`, fresh for each run.
    pub(crate) prefix: String,
    pub(crate) url: String,
    /// Set when the run made its own SQLite file, to delete at the end.
    temp_sqlite: Option<PathBuf>,
    /// Statements sent through the pool, counted by sea-orm's metric
    /// callback: every prepared statement, but not `BEGIN`, `COMMIT`,
    /// `ROLLBACK`, savepoints or unprepared SQL.
    client_statements: Arc<AtomicU64>,
    /// `--statement-tally`: the same statements counted by their text.
    tally: Option<Arc<Mutex<HashMap<String, u64>>>>,
}

impl BenchDb {
    /// Connects with a pool of `producers + partitions + 8` connections (at
    /// most 64) and picks a fresh table prefix. On SQLite, switches the file
    /// to WAL first, as the outbox will at start, so that `--baseline`
    /// inserts into the same journal mode the outbox runs in.
    pub(crate) async fn connect(args: &Args) -> Result<Self, BoxError> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("b{}_", &tag[..10]);
        let bench = Self::open(
            args,
            &tag,
            prefix,
            args.database_url.clone(),
            args.producers,
        )
        .await?;
        if bench.backend == BackendArg::Sqlite {
            bench
                .db
                .execute_unprepared("PRAGMA journal_mode=WAL")
                .await?;
        }
        Ok(bench)
    }

    /// Connects to the parent's database and tables (`--role consumer`):
    /// `url`, the parent's `prefix`, a pool of `partitions + 8` connections
    /// (at most 64). Never creates or deletes a SQLite file.
    pub(crate) async fn attach(args: &Args, url: String, prefix: String) -> Result<Self, BoxError> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self::open(args, &tag, prefix, Some(url), 0).await
    }

    async fn open(
        args: &Args,
        tag: &str,
        prefix: String,
        url: Option<String>,
        producers: u32,
    ) -> Result<Self, BoxError> {
        let mut temp_sqlite = None;
        let (default_url, dialect): (String, Arc<dyn Dialect>) = match args.backend {
            BackendArg::Postgres => (
                "postgres://postgres@127.0.0.1:5432/test".into(),
                Arc::new(outbox_postgres::PostgresDialect),
            ),
            BackendArg::Mysql => (
                "mysql://root@127.0.0.1:3306/test".into(),
                Arc::new(outbox_mysql::MySqlDialect),
            ),
            BackendArg::Sqlite => {
                let path = std::env::temp_dir().join(format!("outbox-bench-{tag}.db"));
                let temp_url = format!("sqlite://{}?mode=rwc", path.display());
                if url.is_none() {
                    temp_sqlite = Some(path);
                }
                (temp_url, Arc::new(outbox_sqlite::SqliteDialect))
            }
        };
        let url = url.unwrap_or(default_url);
        let connections = (producers + args.partitions + 8).min(64);
        let ping_idle = args.ping_idle_secs.map(Duration::from_secs);
        let mut db = pool(&url, connections, ping_idle).await?;
        let client_statements = Arc::new(AtomicU64::new(0));
        let counter = client_statements.clone();
        let tally = args
            .statement_tally
            .then(|| Arc::new(Mutex::new(HashMap::new())));
        let texts = tally.clone();
        let strip = prefix.clone();
        db.set_metric_callback(move |info| {
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(texts) = &texts {
                let sql = info.statement.sql.replace(&strip, "");
                let key: String = sql.chars().take(72).collect();
                if let Ok(mut texts) = texts.lock() {
                    *texts.entry(key).or_insert(0) += 1;
                }
            }
        });
        Ok(Self {
            backend: args.backend,
            db,
            dialect,
            prefix,
            url,
            temp_sqlite,
            client_statements,
            tally,
        })
    }

    /// Creates the outbox tables under this run's prefix.
    pub(crate) async fn migrate(&self) -> Result<(), BoxError> {
        OutboxSchema::for_dialect(self.dialect.clone())
            .prefix(&self.prefix)?
            .migrate(&self.db)
            .await?;
        Ok(())
    }

    /// A table name under this run's prefix.
    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The sea-orm backend of the pool.
    pub(crate) fn db_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Statements sent through the pool so far (see the field).
    pub(crate) fn client_statements(&self) -> u64 {
        self.client_statements.load(Ordering::Relaxed)
    }

    /// Prints `--statement-tally`'s counts, most frequent first, per
    /// message of `messages`.
    pub(crate) fn print_statement_tally(&self, messages: u64) {
        let Some(tally) = &self.tally else {
            return;
        };
        let Ok(texts) = tally.lock() else {
            return;
        };
        let mut counts: Vec<(&String, &u64)> = texts.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let per = |n: u64| n as f64 / messages.max(1) as f64;
        let total: u64 = counts.iter().map(|(_, n)| **n).sum();
        eprintln!(
            "outbox-bench: statements per message by text ({:.3} in all):",
            per(total)
        );
        for (text, n) in counts {
            eprintln!("  {:>8.3}  {n:>8}  {text}", per(*n));
        }
    }

    /// Closes the pool and nothing else (the consumer child: the parent
    /// owns the tables and the file).
    pub(crate) async fn close(self) {
        if let Err(err) = self.db.close().await {
            eprintln!("outbox-bench: closing the pool: {err}");
        }
    }

    /// Drops every table of this run (never a database) and closes the pool;
    /// deletes the SQLite file if the run made it. Failures are reported on
    /// stderr, not returned: cleanup runs after the result is known.
    pub(crate) async fn cleanup(self) {
        if self.temp_sqlite.is_none() {
            // The library's own teardown knows every table and function its
            // schema made (the instance table, PostgreSQL's notify triggers).
            let schema = OutboxSchema::for_dialect(self.dialect.clone()).prefix(&self.prefix);
            let dropped = match schema {
                Ok(schema) => schema.drop_tables(&self.db).await.map_err(BoxError::from),
                Err(err) => Err(err.into()),
            };
            if let Err(err) = dropped {
                eprintln!("outbox-bench: cleanup: dropping the outbox tables: {err}");
            }
            let sql = format!("DROP TABLE IF EXISTS {}", self.table("baseline"));
            if let Err(err) = self.db.execute_unprepared(&sql).await {
                eprintln!("outbox-bench: cleanup: {sql}: {err}");
            }
        }
        if let Err(err) = self.db.close().await {
            eprintln!("outbox-bench: cleanup: closing the pool: {err}");
        }
        if let Some(path) = self.temp_sqlite {
            for suffix in ["", "-wal", "-shm"] {
                let file = format!("{}{suffix}", path.display());
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => eprintln!("outbox-bench: cleanup: removing {file}: {err}"),
                }
            }
        }
    }
}

/// A pool of at most `connections` connections to `url`.
/// With `ping_idle`, a connection is pinged on acquire only after that much
/// idle time; without, on every acquire (sea-orm's default).
pub(crate) async fn pool(
    url: &str,
    connections: u32,
    ping_idle: Option<Duration>,
) -> Result<DatabaseConnection, BoxError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if let Some(idle) = ping_idle {
        options.test_before_acquire_if_idle_for(idle);
    }
    Database::connect(options)
        .await
        .map_err(|err| format!("cannot connect to {}: {err}", redact(url)).into())
}

/// The URL without its passwords, for the log.
pub(crate) fn redact(url: &str) -> String {
    outbox_core::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/test?password=secret"),
            "mysql://root@127.0.0.1/test?password=***"
        );
    }
}
