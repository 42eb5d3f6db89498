use std::sync::Arc;
use std::time::Duration;

use outbox_core::{ConfigError, OutboxBuilder, OutboxError, Profile, Queue, RetryPolicy};
use sea_orm_migration::SchemaManager;

use crate::{Backend, Recorder, TestDb};

async fn start_err(builder: OutboxBuilder) -> OutboxError {
    match builder.start().await {
        Ok(handle) => {
            handle.stop().await;
            panic!("start accepted a bad configuration");
        }
        Err(err) => err,
    }
}

/// Configuration errors are reported by `start()`, each with its own variant.
pub async fn bad_configuration_fails_at_start(db: TestDb) {
    let rec = Recorder::default();
    let err = start_err(db.builder().queue(Queue::leased("q", 0, rec.clone()))).await;
    assert!(
        matches!(
            err,
            OutboxError::Config(ConfigError::Partitions { ref queue, partitions: 0, .. }) if queue == "q"
        ),
        "{err:?}"
    );
    let err = start_err(db.builder().queue(Queue::leased("q", 5000, rec.clone()))).await;
    assert!(
        matches!(
            err,
            OutboxError::Config(ConfigError::Partitions {
                partitions: 5000,
                ..
            })
        ),
        "{err:?}"
    );
    for connections in [0, 4097] {
        let err = start_err(
            db.builder()
                .processor_connections(connections)
                .queue(Queue::leased("q", 1, rec.clone())),
        )
        .await;
        assert!(
            matches!(
                err,
                OutboxError::Config(ConfigError::ProcessorConnections { connections: c, .. }) if c == connections
            ),
            "{err:?}"
        );
    }
    let err = start_err(db.builder().queue(Queue::leased("", 1, rec.clone()))).await;
    assert!(
        matches!(err, OutboxError::InvalidQueueName { .. }),
        "{err:?}"
    );
    for name in ["a'b", "q; DROP TABLE x", &"q".repeat(65)] {
        let err = start_err(db.builder().queue(Queue::leased(name, 1, rec.clone()))).await;
        assert!(
            matches!(err, OutboxError::InvalidQueueName { .. }),
            "{name:?}: {err:?}"
        );
    }
    let err = start_err(
        db.builder()
            .queue(Queue::leased("q", 1, rec.clone()))
            .queue(Queue::produce_only("q", 2)),
    )
    .await;
    assert!(matches!(err, OutboxError::DuplicateQueue { .. }), "{err:?}");
    let err = start_err(
        db.builder()
            .table_prefix("Bad-Prefix")
            .queue(Queue::produce_only("q", 1)),
    )
    .await;
    assert!(
        matches!(err, OutboxError::InvalidTablePrefix { .. }),
        "{err:?}"
    );
    let err = start_err(
        db.builder().queue(
            Queue::leased("q", 1, rec.clone())
                .lease(Duration::from_secs(5))
                .handler_timeout(Duration::from_secs(10)),
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            OutboxError::Config(ConfigError::LeaseShorterThanHandlerTimeout { .. })
        ),
        "{err:?}"
    );
    // Transactional mode too: a handler that outlives the lease could have
    // its batch taken over and rolled back, again and again.
    let err = start_err(
        db.builder().queue(
            Queue::transactional("q", 1, Noop)
                .lease(Duration::from_secs(5))
                .handler_timeout(Duration::from_secs(10)),
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            OutboxError::Config(ConfigError::LeaseShorterThanHandlerTimeout { .. })
        ),
        "{err:?}"
    );
    let err = start_err(
        db.builder().queue(
            Queue::leased("q", 1, rec.clone())
                .lease(Duration::from_secs(25 * 3600))
                .handler_timeout(Duration::from_secs(10)),
        ),
    )
    .await;
    assert!(
        matches!(err, OutboxError::Config(ConfigError::LeaseTooLong { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("24 hours"), "{err}");
    let err = start_err(
        db.builder()
            .queue(Queue::leased("q", 1, rec.clone()).batch_size(0)),
    )
    .await;
    assert!(
        matches!(
            err,
            OutboxError::Config(ConfigError::BatchSize { batch_size: 0, .. })
        ),
        "{err:?}"
    );
    let err = start_err(db.builder()).await;
    assert!(
        matches!(err, OutboxError::Config(ConfigError::NoQueue)),
        "{err:?}"
    );
    // One setting out of range at a time: each is its own variant, carrying
    // the value given.
    let leased = || Queue::leased("q", 1, rec.clone());
    let ms = Duration::from_millis;
    let cases: Vec<(OutboxBuilder, ConfigError)> = vec![
        (
            db.builder().queue(leased().handler_timeout(Duration::ZERO)),
            ConfigError::ZeroHandlerTimeout { queue: "q".into() },
        ),
        (
            db.builder()
                // The setter clamps; the public field does not.
                .queue(leased().retry(RetryPolicy {
                    jitter: 1.5,
                    ..RetryPolicy::default()
                })),
            ConfigError::RetryJitter {
                queue: "q".into(),
                jitter: 1.5,
            },
        ),
        (
            db.builder()
                .queue(leased().retry(RetryPolicy::exponential(ms(500), ms(100)))),
            ConfigError::RetryBaseOverCap {
                queue: "q".into(),
                base: ms(500),
                cap: ms(100),
            },
        ),
        (
            db.builder()
                .profile(Profile {
                    batch_size: 0,
                    ..Profile::default()
                })
                .queue(leased()),
            ConfigError::ProfileBatchSize { batch_size: 0 },
        ),
        (
            db.builder().poll_interval(Duration::ZERO).queue(leased()),
            ConfigError::PollInterval {
                interval: Duration::ZERO,
            },
        ),
        (
            db.builder()
                .vacuum_interval(Duration::from_secs(7200))
                .queue(leased()),
            ConfigError::VacuumInterval {
                interval: Duration::from_secs(7200),
            },
        ),
        (
            db.builder().gauge_interval(Some(ms(10))).queue(leased()),
            ConfigError::GaugeInterval { interval: ms(10) },
        ),
        (
            db.builder().sequencer_batch(0).queue(leased()),
            ConfigError::SequencerBatch { batch_size: 0 },
        ),
        (
            db.builder().vacuum_batch(10_001).queue(leased()),
            ConfigError::VacuumBatch { batch_size: 10_001 },
        ),
        (
            db.builder().max_payload_bytes(0).queue(leased()),
            ConfigError::MaxPayloadBytes { bytes: 0 },
        ),
        (
            db.builder().instance_name("").queue(leased()),
            ConfigError::InstanceName {
                name: String::new(),
            },
        ),
    ];
    for (builder, expected) in cases {
        match builder.start().await {
            Err(OutboxError::Config(got)) => assert_eq!(got, expected),
            Err(other) => panic!("expected {expected:?}, got {other:?}"),
            Ok(handle) => {
                handle.stop().await;
                panic!("start accepted a bad configuration: expected {expected:?}");
            }
        }
    }

    let wrong: Arc<dyn outbox_core::Dialect> = match db.backend {
        Backend::Sqlite => Arc::new(outbox_postgres::PostgresDialect),
        Backend::Postgres | Backend::MySql => Arc::new(outbox_sqlite::SqliteDialect),
    };
    let err =
        start_err(OutboxBuilder::new(db.db.clone(), wrong).queue(Queue::produce_only("q", 1)))
            .await;
    assert!(
        matches!(err, OutboxError::DialectMismatch { .. }),
        "{err:?}"
    );

    let unmigrated = format!("{}x_", db.prefix);
    let err = start_err(
        db.builder()
            .table_prefix(unmigrated)
            .queue(Queue::produce_only("q", 1)),
    )
    .await;
    assert!(matches!(err, OutboxError::SchemaMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("migrate"),
        "the message should say how to fix it: {err}"
    );

    // Tables from an older version (a column missing) are reported the same
    // way, at start, not as a failing worker later.
    let old_prefix = format!("{}o_", db.prefix);
    let old = db.schema().prefix(&old_prefix).unwrap();
    old.migrate(&db.db).await.unwrap();
    db.exec(&format!(
        "ALTER TABLE {old_prefix}partition DROP COLUMN lease_token"
    ))
    .await;
    let err = start_err(
        db.builder()
            .table_prefix(old_prefix)
            .queue(Queue::produce_only("q", 1)),
    )
    .await;
    assert!(matches!(err, OutboxError::SchemaMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("out of date"), "{err}");
    if db.backend != Backend::Sqlite {
        old.drop_tables(&db.db).await.unwrap();
    }
    assert!(rec.is_empty());
}

/// A transactional handler that is never called.
struct Noop;

#[async_trait::async_trait]
impl outbox_core::TransactionalHandler for Noop {
    async fn handle(
        &self,
        _: &outbox_core::DatabaseTransaction,
        _: &outbox_core::Batch,
    ) -> outbox_core::BatchResult {
        outbox_core::BatchResult::success()
    }
}

/// Migrations can run again, from two pools at once, and through sea-orm-migration.
pub async fn migrations_are_rerunnable_and_concurrent(db: TestDb) {
    // Already migrated by the harness: running again is harmless.
    db.schema().migrate(&db.db).await.unwrap();
    for migration in db.schema().migrations() {
        migration.up(&SchemaManager::new(&db.db)).await.unwrap();
        assert!(sea_orm_migration::MigrationName::name(migration.as_ref()).contains(&db.prefix));
    }
    // A fresh prefix migrated by two pools at once.
    let other = db.another_pool().await;
    let fresh = db.schema().prefix(&format!("{}c_", db.prefix)).unwrap();
    let (a, b) = tokio::join!(fresh.migrate(&db.db), fresh.migrate(&other));
    a.unwrap();
    b.unwrap();
    let handle = db
        .builder()
        .table_prefix(format!("{}c_", db.prefix))
        .queue(Queue::produce_only("q", 2))
        .start()
        .await
        .unwrap();
    handle.stop().await;
    if db.backend != Backend::Sqlite {
        fresh.drop_tables(&db.db).await.unwrap();
    }
    other.close().await.ok();
}
