//! A database of the test's own: a SQLite temp file, or a fresh PostgreSQL
//! or MySQL database `orders_<random>` dropped afterwards.

use std::path::PathBuf;
use std::time::Duration;

use outbox_core::sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use outbox_test_support::{Server, available};

pub use orders_service::backend::Backend;

/// The test's database.
pub enum TestDatabase {
    /// A SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
    /// A PostgreSQL or MySQL database created for this test.
    Server {
        /// Which server.
        backend: Backend,
        /// The server's URL with the test's database.
        url: String,
        /// The database name.
        name: String,
        /// A connection to the server's default database, to drop it.
        admin: DatabaseConnection,
    },
}

/// `url` with its database (path) replaced by `name`, query kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Deletes the SQLite files of earlier runs that failed (a passing test
/// deletes its own), once they are an hour old: no running test still uses them.
fn sweep_sqlite_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if name.starts_with("orders-service-") && name.contains(".db") && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl TestDatabase {
    /// A database on `backend`, or `None` after a loud skip when the server
    /// is unreachable (a panic under `OUTBOX_REQUIRE_ALL_BACKENDS=1`).
    pub async fn create(backend: Backend, test: &str) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => {
                sweep_sqlite_leftovers();
                let path =
                    std::env::temp_dir().join(format!("orders-service-{}.db", super::suffix()));
                Some(TestDatabase::Sqlite { path })
            }
            Backend::Postgres | Backend::MySql => {
                let server = if backend == Backend::Postgres {
                    Server::Postgres
                } else {
                    Server::MySql
                };
                let base = server.url();
                if !available(server, &base) {
                    return None;
                }
                let mut options = ConnectOptions::new(base.clone());
                options
                    .max_connections(2)
                    .connect_timeout(Duration::from_secs(5))
                    .sqlx_logging(false);
                let admin = match Database::connect(options).await {
                    Ok(admin) => admin,
                    Err(err) => {
                        super::skip(test, &format!("cannot connect to {base}: {err}"));
                        return None;
                    }
                };
                let name = format!("orders_{}", super::suffix());
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("CREATE DATABASE");
                Some(TestDatabase::Server {
                    backend,
                    url: with_database(&base, &name),
                    name,
                    admin,
                })
            }
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            TestDatabase::Sqlite { .. } => Backend::Sqlite,
            TestDatabase::Server { backend, .. } => *backend,
        }
    }

    /// A new connection to the test's database.
    pub async fn connect(&self) -> DatabaseConnection {
        let mut options = ConnectOptions::new(self.url());
        options.max_connections(4).sqlx_logging(false);
        Database::connect(options)
            .await
            .expect("connect to the test database")
    }

    /// The URL for the service's `DATABASE_URL`.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite { path } => format!("sqlite://{}?mode=rwc", path.display()),
            TestDatabase::Server { url, .. } => url.clone(),
        }
    }

    /// Counts the rows of the service's `orders` table.
    pub async fn count_orders(&self) -> i64 {
        let db = self.connect().await;
        let row = db
            .query_one_raw(outbox_core::sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM orders",
            ))
            .await
            .expect("count orders")
            .expect("one row");
        let n = row.try_get::<i64>("", "n").expect("n");
        db.close().await.ok();
        n
    }

    /// Deletes the file or drops the database.
    pub async fn drop_database(self) {
        match self {
            TestDatabase::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            TestDatabase::Server {
                backend,
                name,
                admin,
                ..
            } => {
                // PostgreSQL refuses to drop a database with sessions left
                // (a killed service's); MySQL has no such check.
                let force = if backend == Backend::Postgres {
                    " WITH (FORCE)"
                } else {
                    ""
                };
                if let Err(err) = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
                    .await
                {
                    eprintln!("could not drop database {name}: {err}");
                }
                admin.close().await.ok();
            }
        }
    }
}

#[test]
fn database_is_replaced_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "orders_x"),
        "postgres://postgres@127.0.0.1:5432/orders_x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "o"),
        "postgres://u:p@h/o?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "o"),
        "postgres://h:5432/o"
    );
}
