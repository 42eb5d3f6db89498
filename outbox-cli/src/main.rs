//! `outbox`: the operator's tool for an outbox database.
//!
//! ```text
//! outbox --database-url postgres://app@db/shop stats
//! outbox dead-letters list --queue orders --status pending
//! outbox dead-letters show 42
//! outbox dead-letters requeue --queue orders --failed-after 2026-05-01T00:00:00Z
//! outbox dead-letters cleanup --older-than 7d
//! outbox console --bind 127.0.0.1:8089 --allow-actions
//! ```
//!
//! The URL can also come from `DATABASE_URL`; `--json` prints JSON for
//! scripts. On failure it prints one line to stderr and exits non-zero (see
//! `outbox --help` for the statuses).

mod args;
mod connect;
mod console;
mod filter;
mod render;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use outbox_core::{DeadLetterPage, DeadLetters, Dialect, OutboxAdmin, OutboxSchema};
use serde_json::{Value, json};

use crate::args::{Cli, Command, DeadLetterCommand};
use crate::connect::Failure;

/// Letters per requeue transaction.
const REQUEUE_BATCH: u64 = 500;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err)
            if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // No subcommand: the help, on stderr.
            let _ = err.print();
            return ExitCode::from(2);
        }
        Err(err) => {
            // Clap's message, on one line like every other failure.
            let rendered = err.render().to_string();
            let mut reason = rendered
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ")
                .to_owned();
            // Clap quotes the argument it refused, which may be a URL.
            for arg in std::env::args().filter(|arg| arg.contains("://")) {
                reason = outbox_core::redact_secrets(&reason, &arg);
            }
            let _ = writeln!(
                std::io::stderr(),
                "outbox: error: {} (see outbox --help)",
                render::one_line(&reason)
            );
            return ExitCode::from(2);
        }
    };
    let url = database_url(&cli);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // A driver's message may quote the URL, and a database error may
            // quote stored text: neither a password nor a terminal escape
            // may reach the operator's screen or log.
            let message = match &url {
                Some(url) => outbox_core::redact_secrets(failure.message(), url),
                None => failure.message().to_owned(),
            };
            let _ = writeln!(
                std::io::stderr(),
                "outbox: error: {}",
                render::one_line(&message)
            );
            ExitCode::from(failure.code())
        }
    }
}

/// What a command printed: text for people and the same as JSON.
struct Output {
    text: String,
    json: Value,
}

/// The URL from `--database-url` or `DATABASE_URL`.
fn database_url(cli: &Cli) -> Option<String> {
    cli.database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .filter(|url| !url.trim().is_empty())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let url = database_url(&cli).ok_or_else(|| {
        Failure::Usage("no database url: pass --database-url or set DATABASE_URL".into())
    })?;
    let dialect = connect::dialect_for(&url)?;
    // Check what needs no connection before making one.
    let scope_check = match &cli.command {
        Command::DeadLetters(command) => Some(check(command)?),
        _ => None,
    };
    let output = match &cli.command {
        Command::Migrate => migrate(&url, dialect, &cli.table_prefix).await?,
        Command::Stats { queue, all } => {
            let admin = admin(&url, dialect, &cli.table_prefix).await?;
            let stats = match queue {
                Some(queue) => admin.queue_stats(queue).await?,
                None => admin.stats().await?,
            };
            Output {
                text: render::stats_text(&stats, *all),
                json: render::stats_json(&stats),
            }
        }
        Command::DeadLetters(command) => {
            let admin = admin(&url, dialect, &cli.table_prefix).await?;
            let letters = admin.dead_letters();
            dead_letters(&letters, command, scope_check).await?
        }
        Command::Console {
            bind,
            allow_actions,
        } => {
            let admin = admin(&url, dialect, &cli.table_prefix).await?;
            console::serve(admin, *bind, *allow_actions).await?;
            return Ok(());
        }
    };
    let mut stdout = std::io::stdout().lock();
    let printed = if cli.json {
        writeln!(stdout, "{}", output.json)
    } else {
        writeln!(stdout, "{}", output.text)
    };
    printed.map_err(|e| Failure::Failed(format!("cannot write the output: {e}")))
}

async fn admin(url: &str, dialect: Arc<dyn Dialect>, prefix: &str) -> Result<OutboxAdmin, Failure> {
    let db = connect::connect(url).await?;
    Ok(OutboxAdmin::for_dialect(db, dialect, prefix)?)
}

async fn migrate(url: &str, dialect: Arc<dyn Dialect>, prefix: &str) -> Result<Output, Failure> {
    let schema = OutboxSchema::for_dialect(dialect.clone()).prefix(prefix)?;
    let db = connect::connect(&connect::create_if_missing(url)).await?;
    let before = schema.version(&db).await?;
    schema.migrate(&db).await?;
    let after = schema.version(&db).await?;
    let change = match before {
        0 => format!("created at schema version {after}"),
        b if b == after => format!("already at schema version {after}"),
        b => format!("upgraded from schema version {b} to {after}"),
    };
    Ok(Output {
        text: format!(
            "the outbox tables with prefix {prefix:?} are up to date ({}): {change}",
            dialect.name()
        ),
        json: json!({
            "migrated": true,
            "prefix": prefix,
            "backend": dialect.name(),
            "version_before": before,
            "version_after": after,
        }),
    })
}

/// The parsed scope and age of a dead-letter command, checked before connecting.
struct Checked {
    scope: outbox_core::DeadLetterScope,
    age: Option<std::time::Duration>,
}

fn check(command: &DeadLetterCommand) -> Result<Checked, Failure> {
    let (filter, age, needs_filter) = match command {
        DeadLetterCommand::List { filter, .. } | DeadLetterCommand::Count { filter } => {
            (Some(filter), None, false)
        }
        DeadLetterCommand::Show { .. } => (None, None, false),
        DeadLetterCommand::Requeue { filter, all, .. }
        | DeadLetterCommand::Discard { filter, all } => (Some(filter), None, !*all),
        DeadLetterCommand::Cleanup {
            filter, older_than, ..
        } => (
            Some(filter),
            Some(
                filter::parse_age(older_than)
                    .map_err(|e| Failure::Usage(format!("--older-than: {e}")))?,
            ),
            false,
        ),
    };
    let scope = match filter {
        Some(filter) => filter::scope(filter).map_err(Failure::Usage)?,
        None => outbox_core::DeadLetterScope::all(),
    };
    if needs_filter && scope.is_unfiltered() {
        return Err(Failure::Usage(
            "this acts on every dead letter: give a filter (--queue, --id, --status, ...) or pass --all".into(),
        ));
    }
    Ok(Checked { scope, age })
}

async fn dead_letters(
    letters: &DeadLetters,
    command: &DeadLetterCommand,
    checked: Option<Checked>,
) -> Result<Output, Failure> {
    let Checked { scope, age } =
        checked.ok_or_else(|| Failure::Failed("scope not checked".into()))?;
    Ok(match command {
        DeadLetterCommand::List { limit, cursor, .. } => {
            let mut page = DeadLetterPage::new(*limit);
            if let Some(cursor) = cursor {
                page = page.cursor(*cursor);
            }
            let list = letters.list(&scope, &page).await?;
            Output {
                text: render::list_text(&list),
                json: render::list_json(&list),
            }
        }
        DeadLetterCommand::Show { id } => {
            let letter = letters.get(*id).await?;
            Output {
                text: render::letter_text(&letter),
                json: render::letter_json(&letter),
            }
        }
        DeadLetterCommand::Count { .. } => {
            let n = letters.count(&scope).await?;
            Output {
                text: n.to_string(),
                json: json!({ "count": n }),
            }
        }
        DeadLetterCommand::Requeue { limit, .. } => {
            let mut done = Vec::new();
            let mut left = limit.unwrap_or(u64::MAX);
            while left > 0 {
                let batch = left.min(REQUEUE_BATCH);
                let moved = letters
                    .requeue(&scope, u32::try_from(batch).unwrap_or(1))
                    .await;
                let moved = match moved {
                    Ok(moved) => moved,
                    Err(err) if !done.is_empty() => {
                        let failure = Failure::from(err);
                        return Err(Failure::Failed(format!(
                            "{} ({} requeued before this)",
                            failure.message(),
                            render::plural(done.len() as u64, "dead letter")
                        )));
                    }
                    Err(err) => return Err(err.into()),
                };
                let n = moved.len() as u64;
                done.extend(moved);
                left -= n.min(left);
                if n < batch {
                    break;
                }
            }
            Output {
                text: render::requeued_text(&done),
                json: render::requeued_json(&done),
            }
        }
        DeadLetterCommand::Discard { .. } => {
            let n = letters.discard(&scope).await?;
            Output {
                text: format!("discarded {}", render::plural(n, "dead letter")),
                json: json!({ "discarded": n }),
            }
        }
        DeadLetterCommand::Cleanup { older_than, .. } => {
            let age = age.unwrap_or_default();
            let n = letters.cleanup(&scope, age).await?;
            Output {
                text: format!(
                    "deleted {} resolved or discarded at least {older_than} ago",
                    render::plural(n, "dead letter")
                ),
                json: json!({ "deleted": n }),
            }
        }
    })
}
