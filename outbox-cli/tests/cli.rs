//! The `outbox` binary against real databases: migrate, stats, and every
//! dead-letter command, on PostgreSQL, MySQL/MariaDB and SQLite, each with a
//! fresh table prefix (on SQLite, a fresh file).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_core::sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use outbox_core::{
    DeadLetterScope, Delivery, Dialect, EachMessage, LeasedMessageHandler, Message, OutboxAdmin,
    OutboxBuilder, Outcome, PartitionKey, Queue,
};
use outbox_test_support::{Server, available, eventually, skip};
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Postgres,
    MySql,
    Sqlite,
}

/// One test's database and prefix.
struct Env {
    url: String,
    prefix: String,
    dialect: Arc<dyn Dialect>,
    sqlite_path: Option<std::path::PathBuf>,
}

/// What a run of the binary returned.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a failure with `code` and a one-line reason containing `text`.
    fn fails(&self, code: i32, text: &str) {
        assert_eq!(
            self.code, code,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stderr.trim().lines().count(), 1, "{}", self.stderr);
        assert!(
            self.stderr.contains(text),
            "{:?} lacks {text:?}",
            self.stderr
        );
    }
}

fn outbox(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox"));
    command.args(args).env_remove("DATABASE_URL");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the outbox binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Env {
    /// A fresh prefix on a reachable server, or `None` after a loud skip.
    async fn new(backend: Backend, case: &str) -> Option<Env> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("c{}_", &tag[..10]);
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
                let path = std::env::temp_dir().join(format!("outbox-cli-{tag}.db"));
                (
                    format!("sqlite://{}", path.display()),
                    Arc::new(outbox_sqlite::SqliteDialect),
                    Some(path),
                )
            }
        };
        let server = match backend {
            Backend::Postgres => Some(Server::Postgres),
            Backend::MySql => Some(Server::MySql),
            Backend::Sqlite => None,
        };
        if let Some(server) = server {
            if !available(server, &url) {
                return None;
            }
            if let Err(err) = Database::connect(url.as_str()).await {
                let why = format!("cannot connect to {}: {err}", outbox_core::redact_url(&url));
                skip(&format!("{case} on {backend:?}"), &why);
                return None;
            }
        }
        Some(Env {
            url,
            prefix,
            dialect,
            sqlite_path,
        })
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--database-url", &self.url, "--table-prefix", &self.prefix];
        all.extend_from_slice(args);
        outbox(&all, &[])
    }

    /// Runs and expects success.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(run.stderr.is_empty(), "{args:?}: {}", run.stderr);
        run
    }

    async fn db(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str()).await.expect("connect")
    }

    fn builder(&self, db: DatabaseConnection) -> OutboxBuilder {
        OutboxBuilder::new(db, self.dialect.clone())
            .table_prefix(self.prefix.clone())
            .poll_interval(Duration::from_millis(50))
            .vacuum_interval(Duration::from_millis(50))
    }

    async fn cleanup(&self, db: DatabaseConnection) {
        if let Some(path) = &self.sqlite_path {
            db.close().await.ok();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            return;
        }
        for table in ["partition", "message", "dead_letter", "instance"] {
            let sql = format!("DROP TABLE IF EXISTS {}{table}", self.prefix);
            let _ = db.execute_unprepared(&sql).await;
        }
        // PostgreSQL's trigger function; a harmless error elsewhere.
        let sql = format!(
            "DROP FUNCTION IF EXISTS {}notify_sequenced() CASCADE",
            self.prefix
        );
        let _ = db.execute_unprepared(&sql).await;
        db.close().await.ok();
    }
}

/// Rejects payloads starting with `bad` until `cured`; records what it accepts.
#[derive(Clone, Default)]
struct Shop {
    cured: Arc<Mutex<bool>>,
    accepted: Arc<Mutex<Vec<(String, i64, uuid::Uuid)>>>,
}

#[async_trait::async_trait]
impl LeasedMessageHandler for Shop {
    async fn handle(&self, message: &Delivery) -> Outcome {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        if payload.starts_with("bad") && !*self.cured.lock().unwrap() {
            return Outcome::reject(format!("cannot ship {payload}: address missing"));
        }
        self.accepted
            .lock()
            .unwrap()
            .push((payload, message.seq, message.message_id));
        Outcome::Success
    }
}

async fn operator_recovers_dead_letters(backend: Backend, case: &str) {
    let Some(env) = Env::new(backend, case).await else {
        return;
    };
    // The schema, made by the tool itself (twice: migrate is re-runnable).
    let created = env.ok(&["migrate"]).stdout;
    assert!(
        created.contains("up to date") && created.contains("created at schema version 2"),
        "{created}"
    );
    let again = env.ok(&["migrate", "--json"]).stdout;
    let again: serde_json::Value = serde_json::from_str(&again).expect("migrate --json");
    assert_eq!(
        (&again["version_before"], &again["version_after"]),
        (&serde_json::json!(2), &serde_json::json!(2))
    );
    let db = env.db().await;

    // Two poison messages among good ones.
    let shop = Shop::default();
    let handle = env
        .builder(db.clone())
        .queue(Queue::leased("orders", 2, EachMessage(shop.clone())))
        .start()
        .await
        .unwrap();
    let txn = db.begin().await.unwrap();
    let messages = [
        (0u32, "OrderPlaced", "ok-1"),
        (0, "OrderPlaced", "bad-1"),
        (0, "OrderPlaced", "ok-2"),
        (1, "OrderCancelled", "bad-2"),
    ];
    let mut ids = std::collections::HashMap::new();
    for (partition, payload_type, payload) in messages {
        let message =
            Message::new(payload_type, payload.as_bytes().to_vec()).header("trace", "abc");
        let id = handle
            .outbox()
            .enqueue(&txn, "orders", PartitionKey::index(partition), message)
            .await
            .unwrap();
        ids.insert(payload, id);
    }
    txn.commit().await.unwrap();
    handle.outbox().notify();
    let admin = OutboxAdmin::for_dialect(db.clone(), env.dialect.clone(), &env.prefix).unwrap();
    eventually("two dead letters", || async {
        admin
            .dead_letters()
            .count(&DeadLetterScope::all())
            .await
            .unwrap()
            >= 2
    })
    .await;
    eventually("good messages", || {
        std::future::ready(shop.accepted.lock().unwrap().len() == 2)
    })
    .await;
    handle.stop().await;

    // Stats.
    let stats = env.ok(&["stats", "--json"]).json();
    let orders = &stats["queues"][0];
    assert_eq!(orders["queue"], "orders");
    assert_eq!(orders["dead_letters"]["pending"], 2);
    assert_eq!(orders["partitions"][0]["processed_seq"], 3);
    assert_eq!(orders["partitions"][1]["processed_seq"], 1);
    assert_eq!(orders["unprocessed"], 0);
    let text = env.ok(&["stats", "--all"]).stdout;
    assert!(text.contains("QUEUE") && text.contains("orders"), "{text}");
    env.run(&["stats", "--queue", "ordres"])
        .fails(1, "no queue \"ordres\" in the outbox tables");

    // Count, list, show.
    assert_eq!(env.ok(&["dead-letters", "count"]).stdout.trim(), "2");
    assert_eq!(
        env.ok(&[
            "dead-letters",
            "count",
            "--queue",
            "orders",
            "--partition",
            "1"
        ])
        .stdout
        .trim(),
        "1"
    );
    assert_eq!(
        env.ok(&["dead-letters", "count", "--status", "resolved"])
            .stdout
            .trim(),
        "0"
    );
    assert_eq!(
        env.ok(&["dead-letters", "count", "--payload-type", "OrderCancelled"])
            .stdout
            .trim(),
        "1"
    );
    assert_eq!(
        env.ok(&[
            "dead-letters",
            "count",
            "--failed-after",
            "2000-01-01T00:00:00Z"
        ])
        .stdout
        .trim(),
        "2"
    );
    assert_eq!(
        env.ok(&["dead-letters", "count", "--failed-before", "2000-01-01"])
            .stdout
            .trim(),
        "0"
    );
    let list = env.ok(&["dead-letters", "list", "--json"]).json();
    let letters = list["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(list["next_cursor"], Value::Null);
    let bad1 = letters
        .iter()
        .find(|l| l["message_id"] == ids["bad-1"].to_string())
        .expect("bad-1 listed");
    let bad1_id = bad1["id"].as_i64().unwrap().to_string();
    assert_eq!(bad1["status"], "pending");
    assert_eq!(
        (bad1["partition"].as_i64(), bad1["seq"].as_i64()),
        (Some(0), Some(2))
    );
    let page = env.ok(&["dead-letters", "list", "--limit", "1"]).stdout;
    assert!(page.contains("--cursor"), "{page}");
    let shown = env.ok(&["dead-letters", "show", &bad1_id, "--json"]).json();
    assert_eq!(shown["payload_utf8"], "bad-1");
    assert_eq!(shown["headers"]["trace"], "abc");
    assert_eq!(shown["attempts"], 1);
    assert!(
        shown["last_error"]
            .as_str()
            .unwrap()
            .contains("address missing")
    );
    let text = env.ok(&["dead-letters", "show", &bad1_id]).stdout;
    assert!(
        text.contains("bad-1") && text.contains("trace: abc"),
        "{text}"
    );
    env.run(&["dead-letters", "show", "999999"])
        .fails(1, "no dead letter with id 999999");

    // Requeue one: it is delivered again with its id, after the partition's messages.
    env.run(&["dead-letters", "requeue"]).fails(2, "--all");
    let requeued = env
        .ok(&["dead-letters", "requeue", "--id", &bad1_id, "--json"])
        .json();
    assert_eq!(requeued["requeued"], 1);
    assert_eq!(
        requeued["letters"][0]["message_id"],
        ids["bad-1"].to_string()
    );
    *shop.cured.lock().unwrap() = true;
    let handle = env
        .builder(db.clone())
        .queue(Queue::leased("orders", 2, EachMessage(shop.clone())))
        .start()
        .await
        .unwrap();
    eventually("the requeued message", || {
        std::future::ready(shop.accepted.lock().unwrap().len() == 3)
    })
    .await;
    handle.stop().await;
    let (payload, seq, message_id) = shop.accepted.lock().unwrap()[2].clone();
    assert_eq!(
        (payload.as_str(), seq, message_id),
        ("bad-1", 4, ids["bad-1"])
    );
    assert_eq!(
        env.ok(&["dead-letters", "count", "--status", "resolved"])
            .stdout
            .trim(),
        "1"
    );

    // Discard the other, then clean both up.
    let discarded = env
        .ok(&["dead-letters", "discard", "--queue", "orders"])
        .stdout;
    assert_eq!(discarded.trim(), "discarded 1 dead letter");
    let kept = env
        .ok(&["dead-letters", "cleanup", "--older-than", "1h", "--json"])
        .json();
    assert_eq!(kept["deleted"], 0);
    let deleted = env
        .ok(&["dead-letters", "cleanup", "--older-than", "0s", "--json"])
        .json();
    assert_eq!(deleted["deleted"], 2);
    assert_eq!(env.ok(&["dead-letters", "count"]).stdout.trim(), "0");

    // DATABASE_URL works in place of the flag.
    let from_env = outbox(
        &["--table-prefix", &env.prefix, "dead-letters", "count"],
        &[("DATABASE_URL", &env.url)],
    );
    assert_eq!(
        (from_env.code, from_env.stdout.trim()),
        (0, "0"),
        "{}",
        from_env.stderr
    );

    // Bad filters and a missing schema: one line, non-zero.
    env.run(&["dead-letters", "list", "--failed-after", "yesterday"])
        .fails(2, "--failed-after");
    env.run(&["dead-letters", "list", "--status", "done"])
        .fails(2, "--status");
    env.run(&["dead-letters", "cleanup", "--older-than", "soon"])
        .fails(2, "--older-than");
    env.run(&["dead-letters", "list", "--limit", "0"])
        .fails(2, "page limit");
    outbox(
        &[
            "--database-url",
            &env.url,
            "--table-prefix",
            "Bad-Prefix",
            "stats",
        ],
        &[],
    )
    .fails(2, "table prefix");
    env.run(&["dead-letters", "count", "--partition", "first"])
        .fails(2, "--partition");
    let other_prefix = format!("z{}", &env.prefix[1..]);
    let missing = outbox(
        &[
            "--database-url",
            &env.url,
            "--table-prefix",
            &other_prefix,
            "stats",
        ],
        &[],
    );
    missing.fails(4, "outbox migrate");

    let distinct: HashSet<uuid::Uuid> = shop
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, id)| *id)
        .collect();
    assert_eq!(distinct.len(), 3);
    env.cleanup(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_dead_letters_on_postgres() {
    operator_recovers_dead_letters(
        Backend::Postgres,
        "operator_recovers_dead_letters_on_postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_dead_letters_on_mysql() {
    operator_recovers_dead_letters(Backend::MySql, "operator_recovers_dead_letters_on_mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_dead_letters_on_sqlite() {
    operator_recovers_dead_letters(Backend::Sqlite, "operator_recovers_dead_letters_on_sqlite")
        .await;
}

/// Without a usable URL or server the tool says why on one line and exits non-zero.
#[test]
fn bad_url_and_unreachable_server_exit_non_zero_with_one_line() {
    outbox(&["stats"], &[]).fails(2, "DATABASE_URL");
    outbox(&["--database-url", "redis://127.0.0.1/0", "stats"], &[]).fails(2, "postgres://");
    outbox(
        &["--database-url", "not a url", "dead-letters", "count"],
        &[],
    )
    .fails(2, "not a database url");
    outbox(
        &[
            "--database-url",
            "postgres://postgres:secret@127.0.0.1:1/test",
            "stats",
        ],
        &[],
    )
    .fails(
        3,
        "cannot connect to postgres://postgres:***@127.0.0.1:1/test",
    );
    let missing =
        std::env::temp_dir().join(format!("outbox-cli-missing-{}.db", uuid::Uuid::new_v4()));
    outbox(
        &[
            "--database-url",
            &format!("sqlite://{}", missing.display()),
            "stats",
        ],
        &[],
    )
    .fails(3, "cannot connect");
}

/// Rejects every message with a reason full of terminal escapes.
#[derive(Clone, Default)]
struct Hostile;

/// A reason that would clear the screen, recolour it, retitle the window
/// and ring the bell if printed raw.
const HOSTILE_REASON: &str = "refused \u{1b}[2J\u{1b}[31mred\r\u{7} \u{9b}1m\u{202e}desrever";

#[async_trait::async_trait]
impl LeasedMessageHandler for Hostile {
    async fn handle(&self, _message: &Delivery) -> Outcome {
        Outcome::reject(HOSTILE_REASON)
    }
}

/// Whether `c` may reach a terminal as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Asserts that human output holds no control character but line breaks.
fn assert_printable(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| *c != '\n' && is_unsafe(*c))
        .collect();
    assert!(
        raw.is_empty(),
        "{what} prints control characters raw: {raw:?} in {text:?}"
    );
    // Reasons are stored sanitized (the escape replaced by U+FFFD); what
    // the outbox stores as given (payloads, headers, owners) shows escaped.
    assert!(
        text.contains("\\u{1b}") || text.contains('\u{fffd}'),
        "{what} shows the escape neither as \\u{{1b}} nor replaced: {text:?}"
    );
}

async fn hostile_text_is_escaped_in_human_output(backend: Backend, case: &str) {
    let Some(env) = Env::new(backend, case).await else {
        return;
    };
    env.ok(&["migrate"]);
    let db = env.db().await;
    let handle = env
        .builder(db.clone())
        .queue(Queue::leased("orders", 2, EachMessage(Hostile)))
        .start()
        .await
        .unwrap();
    let payload = "first line\n\u{1b}]0;pwned\u{7}second line\r\u{9b}31m\u{7f}";
    let header = "abc\u{1b}[5mblink\u{1b}[0m";
    let txn = db.begin().await.unwrap();
    handle
        .outbox()
        .enqueue(
            &txn,
            "orders",
            PartitionKey::index(0),
            Message::new("OrderPlaced", payload.as_bytes().to_vec()).header("trace", header),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    handle.outbox().notify();
    let admin = OutboxAdmin::for_dialect(db.clone(), env.dialect.clone(), &env.prefix).unwrap();
    eventually("a dead letter", || async {
        admin
            .dead_letters()
            .count(&DeadLetterScope::all())
            .await
            .unwrap()
            >= 1
    })
    .await;
    handle.stop().await;

    // Partition 1 as a live instance with a hostile name would leave it:
    // leased and blocked in retry with a hostile error.
    let owner = "worker\u{1b}[8mhidden";
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let backend_kind = db.get_database_backend();
    let p = |n: usize| match backend {
        Backend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    db.execute_raw(outbox_core::sea_orm::Statement::from_sql_and_values(
        backend_kind,
        format!(
            "UPDATE {}partition SET lease_owner = {}, lease_until = {}, attempts = 2, \
             last_error = {}, retry_at = {} WHERE queue_name = 'orders' AND partition_no = 1",
            env.prefix,
            p(1),
            p(2),
            p(3),
            p(4)
        ),
        [
            owner.into(),
            (now_ms + 3_600_000).into(),
            HOSTILE_REASON.into(),
            (now_ms + 3_600_000).into(),
        ],
    ))
    .await
    .unwrap();

    let list = env.ok(&["dead-letters", "list"]).stdout;
    assert_printable("dead-letters list", &list);
    let letters = env.ok(&["dead-letters", "list", "--json"]).json();
    let letter = &letters["letters"][0];
    // The outbox stores reasons with control characters replaced.
    let stored_reason: String = HOSTILE_REASON
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    assert_eq!(letter["last_error"], stored_reason.as_str());
    let id = letter["id"].as_i64().unwrap().to_string();
    let shown = env.ok(&["dead-letters", "show", &id]).stdout;
    assert_printable("dead-letters show", &shown);
    assert!(
        shown.contains("first line\n\\u{1b}]0;pwned\\u{7}second line\\r"),
        "the payload's line break is kept, its escapes shown: {shown}"
    );
    let shown = env.ok(&["dead-letters", "show", &id, "--json"]).json();
    assert_eq!(shown["payload_utf8"], payload);
    assert_eq!(shown["headers"]["trace"], header);
    assert_eq!(shown["last_error"], stored_reason.as_str());
    let stats = env.ok(&["stats", "--all"]).stdout;
    assert_printable("stats", &stats);
    assert!(stats.contains("worker\\u{1b}[8mhidden"), "{stats}");
    let stats = env.ok(&["stats", "--json"]).json();
    let partition = &stats["queues"][0]["partitions"][1];
    assert_eq!(partition["lease_owner"], owner);
    assert_eq!(partition["last_error"], HOSTILE_REASON);
    env.cleanup(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_escaped_in_human_output_on_postgres() {
    hostile_text_is_escaped_in_human_output(
        Backend::Postgres,
        "hostile_text_is_escaped_in_human_output_on_postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_escaped_in_human_output_on_mysql() {
    hostile_text_is_escaped_in_human_output(
        Backend::MySql,
        "hostile_text_is_escaped_in_human_output_on_mysql",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_escaped_in_human_output_on_sqlite() {
    hostile_text_is_escaped_in_human_output(
        Backend::Sqlite,
        "hostile_text_is_escaped_in_human_output_on_sqlite",
    )
    .await;
}

/// No password in a URL, in its userinfo or in a query parameter (any
/// case, percent-encoded), reaches stdout or stderr, whatever fails: an
/// unreachable server (the driver's error and ours), an unsupported scheme,
/// a URL where clap expects something else. The runs go in parallel: each
/// unreachable one waits out the 5 s connect timeout.
#[test]
fn passwords_never_reach_the_output() {
    let urls = [
        "postgres://postgres@127.0.0.1:1/test?password=secret",
        "postgres://postgres@127.0.0.1:1/test?sslmode=disable&PASSWORD=secret",
        "postgres://postgres:secret@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?pass%77ord=secret",
        "mysql://root@127.0.0.1:1/test?password=secret",
        "mysql://root@127.0.0.1:1/test?pwd=secret",
        "mysql://root:secret@127.0.0.1:1/test",
        "redis://u:secret@127.0.0.1/0?pass=secret",
    ];
    // Arguments, and environment variables.
    type Invocation<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let mut runs: Vec<Invocation> = Vec::new();
    for url in urls {
        runs.push((vec!["--database-url", url, "dead-letters", "list"], vec![]));
        runs.push((vec!["stats"], vec![("DATABASE_URL", url)]));
    }
    // Clap quotes the argument it refuses.
    runs.push((
        vec!["--database-url", "postgres://h/db", "stats", urls[0]],
        vec![],
    ));
    runs.push((
        vec!["--database-url", "postgres://h/db", "stats", urls[2]],
        vec![],
    ));
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(args, env)| scope.spawn(move || (args, outbox(args, env))))
            .collect();
        for handle in handles {
            let (args, run) = handle.join().unwrap();
            assert_ne!(run.code, 0, "{args:?}");
            assert!(
                !run.stdout.contains("secret") && !run.stderr.contains("secret"),
                "{args:?} printed a password: stdout {:?} stderr {:?}",
                run.stdout,
                run.stderr
            );
        }
    });
}
