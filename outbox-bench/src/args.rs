//! Command-line flags.

use clap::{Parser, ValueEnum};

/// The database to run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite (a temp file unless `--database-url` is given).
    Sqlite,
}

impl BackendArg {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }
}

/// The delivery mode of the benchmark queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// The handler runs in the transaction that holds the partition.
    Transactional,
    /// The handler runs outside any transaction under a lease.
    Leased,
}

impl ModeArg {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Transactional => "transactional",
            Self::Leased => "leased",
        }
    }
}

/// Runs one outbox benchmark scenario against a real database and prints one
/// JSON object as the last line of stdout; progress goes to stderr.
///
/// Exits 1 if a message was lost or delivered out of order (or, in
/// transactional mode, delivered twice), 2 on an error.
#[derive(Debug, Clone, Parser)]
#[command(name = "outbox-bench", version)]
pub(crate) struct Args {
    /// The backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    pub(crate) backend: BackendArg,

    /// Connection URL. Defaults: postgres://postgres@127.0.0.1:5432/test,
    /// mysql://root@127.0.0.1:3306/test, a fresh temp SQLite file (deleted
    /// afterwards).
    #[arg(long)]
    pub(crate) database_url: Option<String>,

    /// Delivery mode of the queue.
    #[arg(long, value_enum, default_value_t = ModeArg::Leased)]
    pub(crate) mode: ModeArg,

    /// Messages to enqueue in total.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub(crate) messages: u64,

    /// Partitions of the queue.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) partitions: u32,

    /// Messages per producer transaction (more than 1 uses enqueue_batch).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) batch: u32,

    /// Concurrent producer tasks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) producers: u32,

    /// Payload size in bytes (at least 16: producer id and sequence number).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub(crate) payload_bytes: u64,

    /// Total messages per second across producers; omitted: as fast as possible.
    #[arg(long)]
    pub(crate) rate: Option<f64>,

    /// First insert the same rows into a plain table, for comparison.
    #[arg(long)]
    pub(crate) baseline: bool,

    /// Measure the database statements of an idle outbox over this many
    /// seconds instead of running messages.
    #[arg(long)]
    pub(crate) idle_seconds: Option<f64>,
}

impl Args {
    /// Checks what clap cannot.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("--rate must be a positive number, not {rate}"));
        }
        if let Some(idle) = self.idle_seconds
            && !(idle.is_finite() && idle > 0.0 && idle <= 86_400.0)
        {
            return Err(format!(
                "--idle-seconds must be between 0 and 86400, not {idle}"
            ));
        }
        if self.idle_seconds.is_some() && self.baseline {
            return Err("--baseline and --idle-seconds exclude each other".into());
        }
        Ok(())
    }
}
