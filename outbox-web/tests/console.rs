//! The console's routes against a running outbox on each backend: pages,
//! escaping, and actions with their guards. The databases come from the
//! conformance suite's harness, so a missing server is skipped loudly (and
//! fails under `OUTBOX_REQUIRE_ALL_BACKENDS=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use outbox_core::sea_orm::TransactionTrait;
use outbox_core::{
    DeadLetterScope, Delivery, EachMessage, LeasedMessageHandler, Message, OutboxHandle, Outcome,
    PartitionKey, Queue,
};
use outbox_tests::{Backend, TestDb};
use outbox_web::Console;
use tower::ServiceExt;

const SCRIPT: &str = "<script>alert('owned')</script>";

/// Rejects every message while `reject` is set.
#[derive(Clone)]
struct Gate(Arc<AtomicBool>);

#[async_trait::async_trait]
impl LeasedMessageHandler for Gate {
    async fn handle(&self, _: &Delivery) -> Outcome {
        if self.0.load(Ordering::SeqCst) {
            Outcome::reject("<b>boom</b>")
        } else {
            Outcome::Success
        }
    }
}

/// An outbox whose queue `web` holds one dead letter with a `<script>` payload.
async fn outbox_with_a_dead_letter(db: &TestDb, gate: &Gate) -> (OutboxHandle, i64) {
    let handle = db
        .builder()
        .queue(Queue::leased("web", 2, EachMessage(gate.clone())))
        .start()
        .await
        .unwrap();
    let txn = db.db.begin().await.unwrap();
    handle
        .outbox()
        .enqueue(
            &txn,
            "web",
            PartitionKey::index(1),
            Message::new("text/html", SCRIPT).header("x-trace", "\"><img src=x>"),
        )
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let letters = handle.outbox().dead_letters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = letters
            .list(&DeadLetterScope::all().queue("web"), &Default::default())
            .await
            .unwrap();
        if let Some(letter) = list.letters.first() {
            return (handle, letter.id);
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn post(app: &Router, uri: &str, form: &str, operator: bool) -> (StatusCode, String) {
    let mut request =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if operator {
        request = request.header("x-operator", "ada");
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(form.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location.unwrap_or_else(|| String::from_utf8(body.to_vec()).unwrap()),
    )
}

fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[start..start + 32].to_owned()
}

macro_rules! on_every_backend {
    ($case:ident: $($test:ident => $backend:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(db) = TestDb::connect($backend, stringify!($test)).await {
                    $case(&db).await;
                    db.cleanup().await;
                }
            }
        )*
    };
}

on_every_backend!(pages_escape_what_they_show_and_actions_are_guarded:
    pages_escape_and_actions_are_guarded_on_sqlite => Backend::Sqlite,
    pages_escape_and_actions_are_guarded_on_postgres => Backend::Postgres,
    pages_escape_and_actions_are_guarded_on_mysql => Backend::MySql,
);

async fn pages_escape_what_they_show_and_actions_are_guarded(db: &TestDb) {
    let gate = Gate(Arc::new(AtomicBool::new(true)));
    let (handle, id) = outbox_with_a_dead_letter(db, &gate).await;
    let admin = handle.outbox().admin();

    // Read-only, mounted under /ops/outbox.
    let read_only: Router = Router::new().nest("/ops/outbox", Console::new(admin.clone()).router());
    let (status, page) = get(&read_only, "/ops/outbox").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("data-queue=\"web\""), "{page}");
    assert!(
        page.contains("href=\"/ops/outbox/assets/console.css\""),
        "links follow the mount path"
    );
    let (status, css) = get(&read_only, "/ops/outbox/assets/console.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("table"));
    let (_, partitions) = get(&read_only, "/ops/outbox/partitions?queue=web").await;
    assert_eq!(
        partitions.matches("data-partition=").count(),
        2,
        "{partitions}"
    );
    let (_, list) = get(
        &read_only,
        "/ops/outbox/dead-letters?queue=web&status=pending",
    )
    .await;
    assert!(list.contains(&format!("data-id=\"{id}\"")), "{list}");
    assert!(
        list.contains("&lt;b&gt;boom&lt;/b&gt;") && !list.contains("<b>boom"),
        "{list}"
    );
    let (_, letter) = get(&read_only, &format!("/ops/outbox/dead-letters/{id}")).await;
    assert!(
        letter.contains("&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"),
        "{letter}"
    );
    assert!(!letter.contains(SCRIPT), "a payload is never markup");
    assert!(
        letter.contains("&quot;&gt;&lt;img src=x&gt;"),
        "headers are escaped: {letter}"
    );
    assert!(
        !letter.contains("name=\"csrf\""),
        "no action forms when read-only"
    );
    let (status, _) = post(
        &read_only,
        &format!("/ops/outbox/dead-letters/{id}/requeue"),
        "csrf=x",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, page) = get(&read_only, "/ops/outbox/dead-letters/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    let (_, instances) = get(&read_only, "/ops/outbox/instances").await;
    assert!(
        instances.contains("<span class=\"ok\">yes</span>"),
        "{instances}"
    );

    // With actions, behind a hook.
    let acting: Router = Console::new(admin.clone())
        .allow_actions(true)
        .authorize(|headers| headers.get("x-operator").is_some())
        .router();
    let (_, letter) = get(&acting, &format!("/dead-letters/{id}")).await;
    let token = csrf_of(&letter);
    assert!(
        letter.contains("data-confirm="),
        "actions ask for confirmation"
    );
    let uri = format!("/dead-letters/{id}/requeue");
    assert_eq!(
        post(&acting, &uri, "csrf=wrong", true).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(
        post(&acting, &uri, "", true).await.0.is_client_error(),
        "no token"
    );
    let form = format!("csrf={token}");
    assert_eq!(
        post(&acting, &uri, &form, false).await.0,
        StatusCode::FORBIDDEN,
        "the hook refuses"
    );
    gate.0.store(false, Ordering::SeqCst);
    let (status, location) = post(&acting, &uri, &form, true).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/dead-letters/{id}?done=requeued"));
    let (_, letter) = get(&acting, &location).await;
    assert!(
        letter.contains("id=\"notice\"") && letter.contains("<td id=\"status\">resolved</td>"),
        "{letter}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = handle.stats().await.unwrap();
        let q = stats.queue("web").unwrap();
        if q.unprocessed + q.incoming == 0 && q.partitions[1].processed_seq == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "requeued letter not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop().await;
}
