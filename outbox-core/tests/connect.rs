//! `outbox_core::connect` on a database that cannot be reached: a typed
//! error naming host and port, without the password, within the connect
//! timeout. Nothing listens on port 1, so no server is needed.

use std::time::{Duration, Instant};

use outbox_core::{DEFAULT_CONNECT_TIMEOUT, OutboxError};

async fn refused(url: &str) -> (OutboxError, Duration) {
    let started = Instant::now();
    match outbox_core::connect(url).await {
        Ok(_) => panic!("{url}: connected to a closed port"),
        Err(err) => (err, started.elapsed()),
    }
}

fn assert_cannot_connect(err: &OutboxError, expected_target: &str) {
    match err {
        OutboxError::CannotConnect { target, .. } => assert_eq!(target, expected_target),
        other => panic!("expected CannotConnect, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to {expected_target}: ")),
        "{text}"
    );
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    assert!(
        std::error::Error::source(err).is_some(),
        "the cause is in source()"
    );
}

#[tokio::test]
async fn unreachable_postgres_is_cannot_connect_naming_host_and_port() {
    let (err, elapsed) = refused("postgres://app:s3cret@127.0.0.1:1/shop").await;
    assert_cannot_connect(&err, "127.0.0.1:1");
    assert!(
        elapsed < DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn unreachable_mysql_is_cannot_connect_naming_host_and_port() {
    let (err, elapsed) = refused("mysql://root:s3cret@127.0.0.1:1/shop").await;
    assert_cannot_connect(&err, "127.0.0.1:1");
    assert!(
        elapsed < DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn sqlite_file_in_a_missing_directory_is_cannot_connect_naming_the_path() {
    let dir = std::env::temp_dir().join(format!("outbox-missing-{}", uuid::Uuid::new_v4()));
    let path = dir.join("shop.db");
    let (err, _) = refused(&format!("sqlite://{}?mode=rwc", path.display())).await;
    assert_cannot_connect(&err, &path.display().to_string());
}

#[tokio::test]
async fn a_url_without_a_driver_is_cannot_connect_without_the_password() {
    let (err, _) = refused("redis://app:s3cret@127.0.0.1:1/0").await;
    assert!(matches!(err, OutboxError::CannotConnect { .. }), "{err:?}");
    let chain = format!(
        "{err:?} {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(!chain.contains("s3cret"), "{chain}");
}
