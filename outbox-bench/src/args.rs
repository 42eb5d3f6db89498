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

/// The worker settings preset, `outbox_core::Profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileArg {
    /// `Profile::low_latency()`: 50 ms polls, 20 messages per handler call.
    #[value(name = "low_latency")]
    LowLatency,
    /// `Profile::default()`: 500 ms polls, 100 messages per handler call.
    #[value(name = "default")]
    Default,
    /// `Profile::high_throughput()`: 1 s polls, 500 messages per handler call.
    #[value(name = "high_throughput")]
    HighThroughput,
}

impl ProfileArg {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::LowLatency => "low_latency",
            Self::Default => "default",
            Self::HighThroughput => "high_throughput",
        }
    }

    pub(crate) fn profile(self) -> outbox_core::Profile {
        match self {
            Self::LowLatency => outbox_core::Profile::low_latency(),
            Self::Default => outbox_core::Profile::default(),
            Self::HighThroughput => outbox_core::Profile::high_throughput(),
        }
    }
}

/// What this process does (hidden: `--split-process` sets it for its child).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    /// Runs the outbox workers and the handler only, for a parent that
    /// produces (see `split.rs`).
    Consumer,
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

    /// Soak: send `--rate` messages per second for this many seconds (the
    /// message count, replacing `--messages`, is rate × seconds) and report
    /// the outbox tables' rows and bytes and this process's RSS after the
    /// first tenth of the run and at its end (see `soak.rs`).
    #[arg(long)]
    pub(crate) soak_seconds: Option<f64>,

    /// Worker settings preset (`OutboxBuilder::profile`).
    #[arg(long, value_enum, default_value_t = ProfileArg::Default)]
    pub(crate) profile: ProfileArg,

    /// Overrides the profile's poll interval, in milliseconds
    /// (`OutboxBuilder::poll_interval`); omitted: the profile's.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) poll_interval_ms: Option<u64>,

    /// Do not LISTEN for other processes' notifications
    /// (`OutboxBuilder::listen(false)`): the consumer relies on in-process
    /// wakeups and polling, as before cross-process wakeups existed.
    #[arg(long)]
    pub(crate) no_listen: bool,

    /// Ping a pooled connection before handing it out only when it has been
    /// idle this many seconds (`ConnectOptions::test_before_acquire_if_idle_for`).
    /// Omitted: sea-orm's default, a ping on every acquire (one more round
    /// trip per transaction or pooled statement, for the baseline too).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) ping_idle_secs: Option<u64>,

    /// Install a Prometheus metrics recorder (metrics-exporter-prometheus,
    /// no HTTP listener) before the outbox starts, so the outbox's metrics
    /// are recorded: run with and without it to see what they cost.
    #[arg(long)]
    pub(crate) metrics_recorder: bool,

    /// Count the statements the run's pool sends by their text (table
    /// prefix removed, the first 72 characters), and print the counts per
    /// message to stderr at the end: where `client_statements_per_msg`
    /// comes from. Costs a lock per statement: not for throughput figures.
    #[arg(long)]
    pub(crate) statement_tally: bool,

    /// Every producer writes every message to one partition key, so all
    /// of them contend for one partition: the outbox must not make a
    /// producer wait for another (issue 15's hot-key row, with
    /// `--producers 16`).
    #[arg(long)]
    pub(crate) hot_key: bool,

    /// Enqueue every message with no outbox worker running (a producer-only
    /// instance), then start the consuming outbox and time the drain
    /// (`drain_msgs_per_sec`, `drain_peak_rss_mib`).
    #[arg(long)]
    pub(crate) backlog: bool,

    /// Run the outbox workers and the handler in a child process (this
    /// binary again), the producers with a producer-only outbox in this one.
    /// Commit and delivery times are wall-clock microseconds in both.
    #[arg(long)]
    pub(crate) split_process: bool,

    /// Internal: the role of a child process of `--split-process`.
    #[arg(long, value_enum, hide = true)]
    pub(crate) role: Option<RoleArg>,

    /// Internal (child): the parent's table prefix.
    #[arg(long, hide = true)]
    pub(crate) table_prefix: Option<String>,

    /// Internal (child): the clock origin, Unix epoch microseconds.
    #[arg(long, hide = true)]
    pub(crate) clock_origin_us: Option<u64>,

    /// Internal (child): where to write what the handler saw.
    #[arg(long, hide = true)]
    pub(crate) result_file: Option<std::path::PathBuf>,
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
        if let Some(soak) = self.soak_seconds {
            if !(soak.is_finite() && soak > 0.0 && soak <= 7.0 * 86_400.0) {
                return Err(format!(
                    "--soak-seconds must be between 0 and 604800, not {soak}"
                ));
            }
            if self.rate.is_none() {
                return Err("--soak-seconds needs --rate".into());
            }
            if self.idle_seconds.is_some() || self.backlog || self.split_process {
                return Err(
                    "--soak-seconds excludes --idle-seconds, --backlog and --split-process".into(),
                );
            }
        }
        if self.idle_seconds.is_some() && (self.baseline || self.backlog || self.split_process) {
            return Err("--idle-seconds excludes --baseline, --backlog and --split-process".into());
        }
        if self.backlog && self.rate.is_some() {
            return Err("--backlog enqueues as fast as possible: drop --rate".into());
        }
        if self.role.is_some() {
            if self.split_process || self.idle_seconds.is_some() || self.baseline {
                return Err("--role is internal to --split-process".into());
            }
            if self.table_prefix.is_none()
                || self.clock_origin_us.is_none()
                || self.result_file.is_none()
            {
                return Err(
                    "--role consumer needs --table-prefix, --clock-origin-us and --result-file"
                        .into(),
                );
            }
        }
        Ok(())
    }
}
