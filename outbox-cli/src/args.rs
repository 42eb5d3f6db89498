//! The command line: global options, subcommands and dead-letter filters.

use clap::{Args, Parser, Subcommand};

/// Operate an outbox database: create its tables, read its stats, inspect
/// and recover dead letters.
///
/// The backend follows the URL scheme: postgres:// (or postgresql://),
/// mysql:// (MySQL and MariaDB), sqlite:// (sqlite:///abs/path.db).
///
/// Exit status: 0 done; 1 the operation failed (database error, unknown id);
/// 2 bad arguments, URL or filter; 3 the database cannot be reached;
/// 4 the outbox tables are missing (run `outbox migrate`).
#[derive(Debug, Parser)]
#[command(name = "outbox", version)]
pub struct Cli {
    /// Database URL; defaults to the DATABASE_URL environment variable.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Prefix of the outbox tables.
    #[arg(long, global = true, value_name = "PREFIX", default_value = "outbox_")]
    pub table_prefix: String,

    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the outbox tables and indexes that do not exist yet (safe to re-run).
    Migrate,
    /// Backlog, age, cursor, lease, retry state and dead letters, per queue and partition.
    Stats {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Show idle partitions too.
        #[arg(long)]
        all: bool,
    },
    /// Inspect and recover dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Serve the web console (queues, partitions, dead letters, instances)
    /// until interrupted.
    Console {
        /// Address to listen on; keep it on loopback unless something in
        /// front authenticates the operators.
        #[arg(long, default_value = "127.0.0.1:8089", value_name = "ADDR")]
        bind: std::net::SocketAddr,
        /// Offer requeue and discard of dead letters (read-only otherwise).
        #[arg(long)]
        allow_actions: bool,
    },
}

/// The dead-letter subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// One page of dead letters, oldest first.
    List {
        /// The filters.
        #[command(flatten)]
        filter: Filter,
        /// Letters per page (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed under the previous page).
        #[arg(long, value_name = "ID")]
        cursor: Option<i64>,
    },
    /// One dead letter in full: payload, headers, last error and attempts.
    Show {
        /// The dead letter's id.
        id: i64,
    },
    /// How many dead letters match the filters.
    Count {
        /// The filters.
        #[command(flatten)]
        filter: Filter,
    },
    /// Put pending dead letters back into their queues as new messages (same
    /// message id and headers, new sequence number) and mark them resolved.
    Requeue {
        /// The filters (pending letters only).
        #[command(flatten)]
        filter: Filter,
        /// Requeue at most this many (default: every matching letter).
        #[arg(long)]
        limit: Option<u64>,
        /// Needed to act on every pending letter when no filter is given.
        #[arg(long)]
        all: bool,
    },
    /// Give up on pending (and reprocessing) dead letters: mark them discarded.
    Discard {
        /// The filters.
        #[command(flatten)]
        filter: Filter,
        /// Needed to act on every open letter when no filter is given.
        #[arg(long)]
        all: bool,
    },
    /// Delete resolved and discarded dead letters finished at least AGE ago.
    Cleanup {
        /// The age, as a number and a unit: 30m, 24h, 7d (units ms, s, m, h, d, w; 1h30m works).
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// The filters.
        #[command(flatten)]
        filter: Filter,
    },
}

/// Which dead letters: every given filter must match.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this partition number.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Only this payload type.
    #[arg(long)]
    pub payload_type: Option<String>,
    /// Only this status: pending, reprocessing, resolved or discarded (repeatable).
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<String>,
    /// Only letters that failed at or after this time: epoch milliseconds or
    /// RFC 3339 (2026-05-01T12:00:00Z, 2026-05-01T14:00:00+02:00, 2026-05-01).
    #[arg(long, value_name = "TIME")]
    pub failed_after: Option<String>,
    /// Only letters that failed before this time (same formats).
    #[arg(long, value_name = "TIME")]
    pub failed_before: Option<String>,
    /// Only this dead-letter id (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
}
