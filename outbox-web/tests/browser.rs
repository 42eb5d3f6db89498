//! The console in a real headless Chromium, driven through chromedriver:
//! read the queue numbers, open a dead letter whose payload is a
//! `<script>`, requeue it, see it delivered.
//!
//! ```text
//! apt-get install -y chromium chromium-driver
//! cargo test -p outbox-web --test browser
//! OUTBOX_WRITE_SCREENSHOT=1 cargo test -p outbox-web --test browser   # docs/console.png
//! ```
//!
//! Without chromedriver it skips, loudly, unless
//! `OUTBOX_REQUIRE_ALL_BACKENDS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use outbox_core::sea_orm::{Database, DatabaseConnection, TransactionTrait};
use outbox_core::{
    DeadLetterScope, Delivery, EachMessage, LeasedMessageHandler, Message, OutboxHandle,
    OutboxSchema, Outcome, PartitionKey, Queue,
};
use outbox_sqlite::SqliteDialect;
use outbox_web::Console;

const SCRIPT: &str = "<script>window.__owned = 1</script>";
const HELD: u32 = 7;

fn chromedriver() -> Option<String> {
    ["/usr/bin/chromedriver", "/usr/local/bin/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

/// Rejects every message while `reject` is set.
#[derive(Clone)]
struct Gate(Arc<AtomicBool>);

#[async_trait::async_trait]
impl LeasedMessageHandler for Gate {
    async fn handle(&self, _: &Delivery) -> Outcome {
        if self.0.load(Ordering::SeqCst) {
            Outcome::reject("refused by the test")
        } else {
            Outcome::Success
        }
    }
}

/// Kills chromedriver however the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn database() -> DatabaseConnection {
    let path = std::env::temp_dir().join(format!(
        "outbox-web-browser-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    OutboxSchema::new(SqliteDialect).migrate(&db).await.unwrap();
    db
}

/// Queue `held` has a backlog nobody processes; queue `web` one dead letter.
async fn outbox(db: &DatabaseConnection, gate: &Gate) -> (OutboxHandle, i64) {
    let handle = outbox_core::Outbox::builder(db.clone(), SqliteDialect)
        .queue(Queue::leased("web", 2, EachMessage(gate.clone())))
        .queue(Queue::produce_only("held", 1))
        .start()
        .await
        .unwrap();
    let txn = db.begin().await.unwrap();
    let outbox = handle.outbox();
    outbox
        .enqueue(
            &txn,
            "web",
            PartitionKey::index(1),
            Message::new("text/html", SCRIPT),
        )
        .await
        .unwrap();
    outbox
        .enqueue_batch(
            &txn,
            "held",
            (0..HELD).map(|i| {
                (
                    PartitionKey::index(0),
                    Message::new("t", format!("held {i}")),
                )
            }),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let letters = outbox.dead_letters();
    for _ in 0..1500 {
        let list = letters
            .list(&DeadLetterScope::all().queue("web"), &Default::default())
            .await
            .unwrap();
        if let Some(letter) = list.letters.first() {
            return (handle, letter.id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no dead letter");
}

async fn connect(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,700"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver did not answer on {url}");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_shows_numbers_escapes_payloads_and_requeues() {
    let Some(driver) = chromedriver() else {
        outbox_test_support::skip(
            "console_in_chromium_shows_numbers_escapes_payloads_and_requeues",
            "no chromedriver (apt-get install chromium chromium-driver)",
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );

    let db = database().await;
    let gate = Gate(Arc::new(AtomicBool::new(true)));
    let (handle, id) = outbox(&db, &gate).await;
    let app = axum::Router::new().nest(
        "/console",
        Console::new(handle.outbox().admin())
            .allow_actions(true)
            .router(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/console", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = connect(port).await;
    // The queues page: the backlog nobody processes, the dead letter.
    client.goto(&base).await.unwrap();
    let held = "tr[data-queue=\"held\"]";
    assert_eq!(
        text(&client, &format!("{held} td[data-field=\"backlog\"]")).await,
        HELD.to_string()
    );
    assert_eq!(
        text(&client, &format!("{held} td[data-field=\"partitions\"]")).await,
        "1"
    );
    let web = "tr[data-queue=\"web\"]";
    assert_eq!(
        text(&client, &format!("{web} td[data-field=\"backlog\"]")).await,
        "0"
    );
    assert_eq!(
        text(&client, &format!("{web} td[data-field=\"dead\"]")).await,
        "1"
    );

    // The dead letter, from the list: its payload is text, not a script.
    client
        .goto(&format!("{base}/dead-letters?queue=web&status=pending"))
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css(&format!("tr[data-id=\"{id}\"] a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&client, "#payload").await, SCRIPT);
    let owned = client
        .execute("return typeof window.__owned;", vec![])
        .await
        .unwrap();
    assert_eq!(
        owned,
        serde_json::json!("undefined"),
        "the payload ran as a script"
    );
    assert_eq!(text(&client, "#status").await, "pending");

    // Requeue, confirmed in the page; the letter is delivered this time.
    gate.0.store(false, Ordering::SeqCst);
    client
        .find(Locator::Css("#requeue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client.accept_alert().await.unwrap();
    assert!(text(&client, "#notice").await.starts_with("Requeued"));
    assert_eq!(text(&client, "#status").await, "resolved");
    let mut delivered = false;
    for _ in 0..1500 {
        let stats = handle.stats().await.unwrap();
        let web = stats.queue("web").unwrap();
        if web.incoming + web.unprocessed == 0 && web.partitions[1].processed_seq == 2 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(delivered, "the requeued letter was not delivered");
    client.goto(&base).await.unwrap();
    assert_eq!(
        text(&client, &format!("{web} td[data-field=\"dead\"]")).await,
        "0"
    );

    if std::env::var("OUTBOX_WRITE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let png = client.screenshot().await.unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/console.png");
        std::fs::write(path, png).unwrap();
        let _ = writeln!(std::io::stderr(), "wrote {path}");
    }
    client.close().await.unwrap();
    handle.stop().await;
}
