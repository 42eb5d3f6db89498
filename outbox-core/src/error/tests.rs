//! `docs/errors.md` quotes every error's message: these tests build each
//! variant (triggering it where that needs no database) and compare its
//! text with the doc's, and check that the doc lists exactly the variants
//! the code declares.

use std::collections::BTreeMap;
use std::time::Duration;

use sea_orm::DbErr;

use super::{ConfigError, DbErrorKind, OutboxError};
use crate::message::Message;
use crate::queue::Queue;

const DOC: &str = include_str!("../../../docs/errors.md");
const SOURCE: &str = include_str!("../error.rs");

/// The variant names an enum declares in `error.rs`: lines indented by
/// four spaces that start with a capital letter, between `pub enum {name} {`
/// and the closing brace.
fn declared(name: &str) -> Vec<String> {
    let start = format!("pub enum {name} {{");
    let body = SOURCE
        .split_once(&start)
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once("\n}\n"))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("error.rs declares no enum {name}"));
    body.lines()
        .filter_map(|line| line.strip_prefix("    "))
        .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|line| ident(line).to_owned())
        .collect()
}

/// The leading identifier of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The text of a ``` `` code span `` ``` (double backticks, so the message
/// may hold single ones).
fn code_span(text: &str) -> Option<&str> {
    text.trim().strip_prefix("`` ")?.strip_suffix(" ``")
}

/// The messages `docs/errors.md` lists under the section `## `{enum_name}`
/// variants`, by variant: `### `Variant ...`` headings each followed by a
/// `Message: `` ... ``` line, or table rows `| `Variant ...` | `` ... `` |`.
fn documented(enum_name: &str) -> BTreeMap<String, String> {
    let heading = format!("## `{enum_name}` variants");
    let mut in_section = false;
    let mut variant: Option<String> = None;
    let mut messages = BTreeMap::new();
    let mut add = |name: String, message: &str| {
        let previous = messages.insert(name.clone(), message.to_owned());
        assert!(previous.is_none(), "docs/errors.md lists {name} twice");
    };
    for line in DOC.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == heading;
            variant = None;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(title) = line.strip_prefix("### `") {
            variant = Some(ident(title).to_owned());
        } else if let Some(text) = line.strip_prefix("Message: ") {
            let name = variant
                .take()
                .unwrap_or_else(|| panic!("a message with no ### heading above: {line}"));
            let message = code_span(text)
                .unwrap_or_else(|| panic!("{name}: the message is not a `` code span ``: {line}"));
            add(name, message);
        } else if let Some(row) = line.strip_prefix("| `") {
            let cells: Vec<&str> = row.split('|').collect();
            let message = cells
                .get(1)
                .and_then(|cell| code_span(cell))
                .unwrap_or_else(|| panic!("the second cell is not a `` code span ``: {line}"));
            add(ident(row).to_owned(), message);
        }
    }
    assert!(
        !messages.is_empty(),
        "docs/errors.md has no section {heading:?}"
    );
    messages
}

/// Every `OutboxError` variant, with the values its documented message shows.
fn outbox_examples() -> Vec<OutboxError> {
    let db_err = || DbErr::Custom("the driver's error".into());
    let id = uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_002a);
    let message = Message::new("OrderPlaced", b"{}".to_vec());
    vec![
        OutboxError::UnknownQueue {
            queue: "orders".into(),
        },
        OutboxError::PartitionOutOfRange {
            queue: "orders".into(),
            partition: 4,
            partitions: 4,
        },
        OutboxError::AcknowledgeOutOfRange {
            queue: "orders".into(),
            partition: 2,
            seq: 9,
            processed_seq: 5,
            highest_seq: 8,
        },
        err(Message::new("OrderPlaced", vec![0; 2_000]).validate(1_024)),
        err(crate::queue::validate_queue_name("new orders")),
        err(message.clone().header("", "x").validate(1_024)),
        err(Message::new("", b"{}".to_vec()).validate(1_024)),
        err(crate::table::Tables::new("Shop")),
        err(Queue::produce_only("orders", 0).validate()),
        OutboxError::DuplicateQueue {
            queue: "orders".into(),
        },
        OutboxError::PartitionsNotDrained {
            queue: "orders".into(),
            partitions: 2,
            undrained: vec![2, 3],
            messages: 17,
        },
        OutboxError::InstanceNameInUse {
            name: "shop-1".into(),
            expires_in: Duration::from_secs(3),
        },
        OutboxError::DialectMismatch {
            dialect: "postgres",
            connection: "sqlite".into(),
        },
        OutboxError::SchemaMissing {
            prefix: "outbox_".into(),
            source: db_err(),
        },
        err(serde_json::from_str::<u32>("x").map_err(OutboxError::Json)),
        OutboxError::DuplicateMessageId { message_id: id },
        OutboxError::MessageIdInUse { message_id: id },
        OutboxError::Database {
            kind: DbErrorKind::Conflict,
            source: db_err(),
        },
        OutboxError::CannotConnect {
            target: crate::connect::target("postgres://app:s3cret@db.internal/shop"),
            source: db_err(),
        },
        OutboxError::Internal {
            detail: "enqueue wrote no message".into(),
        },
        OutboxError::DeadLetterNotFound { id: 42 },
        err("archived".parse::<crate::DeadLetterStatus>()),
        OutboxError::PartitionRowMissing {
            queue: "orders".into(),
            partition: 5,
        },
        OutboxError::MessageStillQueued { message_id: id },
    ]
}

/// Every `ConfigError` variant, with the values its documented message shows.
fn config_examples() -> Vec<ConfigError> {
    let queue = || "orders".to_owned();
    let ms = Duration::from_millis;
    let secs = Duration::from_secs;
    vec![
        ConfigError::NoQueue,
        ConfigError::Partitions {
            queue: queue(),
            partitions: 5000,
        },
        ConfigError::BatchSize {
            queue: queue(),
            batch_size: 0,
        },
        ConfigError::ZeroHandlerTimeout { queue: queue() },
        ConfigError::LeaseTooLong {
            queue: queue(),
            lease: secs(25 * 3600),
        },
        ConfigError::LeaseShorterThanHandlerTimeout {
            queue: queue(),
            lease: secs(5),
            handler_timeout: secs(10),
            headroom: secs(2),
        },
        ConfigError::RetryJitter {
            queue: queue(),
            jitter: 1.5,
        },
        ConfigError::RetryBaseOverCap {
            queue: queue(),
            base: ms(500),
            cap: ms(100),
        },
        ConfigError::ProfileBatchSize { batch_size: 0 },
        ConfigError::PollInterval {
            interval: Duration::ZERO,
        },
        ConfigError::VacuumInterval {
            interval: secs(7200),
        },
        ConfigError::GaugeInterval { interval: ms(10) },
        ConfigError::SequencerBatch { batch_size: 0 },
        ConfigError::VacuumBatch { batch_size: 10_001 },
        ConfigError::MaxPayloadBytes { bytes: 0 },
        ConfigError::ProcessorConnections { connections: 5000 },
        ConfigError::InstanceName {
            name: String::new(),
        },
        ConfigError::LeaseOwner {
            owner: String::new(),
        },
        ConfigError::LeaseDuration {
            lease: Duration::ZERO,
        },
    ]
}

fn err<T: std::fmt::Debug>(result: Result<T, OutboxError>) -> OutboxError {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err,
    }
}

/// The variant's name, from its `Debug` text (`Name { .. }`, `Name(..)`).
fn name_of(value: &impl std::fmt::Debug) -> String {
    ident(&format!("{value:?}")).to_owned()
}

/// Compares the examples with the doc and the doc with the declarations;
/// every difference is listed, with the text to paste.
fn check(enum_name: &str, examples: Vec<(String, String)>) {
    let declared = declared(enum_name);
    let documented = documented(enum_name);
    let mut problems = Vec::new();
    for name in &declared {
        if !documented.contains_key(name) {
            problems.push(format!(
                "{enum_name}::{name} is declared but not documented"
            ));
        }
        if !examples.iter().any(|(example, _)| example == name) {
            problems.push(format!(
                "{enum_name}::{name} has no example in error/tests.rs"
            ));
        }
    }
    for name in documented.keys() {
        if !declared.contains(name) {
            problems.push(format!(
                "{enum_name}::{name} is documented but not declared"
            ));
        }
    }
    for (name, text) in &examples {
        match documented.get(name) {
            Some(doc) if doc == text => {}
            Some(doc) => problems.push(format!(
                "{enum_name}::{name}: the code says\n    Message: `` {text} ``\nthe doc says\n    Message: `` {doc} ``"
            )),
            None => {}
        }
    }
    assert!(
        problems.is_empty(),
        "docs/errors.md and the code disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_outbox_error_message_is_the_documented_one() {
    let examples = outbox_examples()
        .iter()
        .map(|e| (name_of(e), e.to_string()))
        .collect();
    check("OutboxError", examples);
}

#[test]
fn every_config_error_message_is_the_documented_one() {
    let examples = config_examples()
        .iter()
        .map(|e| (name_of(e), e.to_string()))
        .collect();
    check("ConfigError", examples);
    // Inside an `OutboxError`, the text is the `ConfigError`'s own.
    let err = OutboxError::from(ConfigError::NoQueue);
    assert_eq!(err.to_string(), ConfigError::NoQueue.to_string());
}
