//! [`OutboxBuilder`]: configuring an outbox instance and starting it. The
//! start-up checks live with what they check (`migration`, `repartition`,
//! `worker::membership`), and the workers are spawned by `worker::start`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::{Notify, watch};

use crate::dialect::Dialect;
use crate::error::{ConfigError, OutboxError};
use crate::handle::OutboxHandle;
use crate::outbox::{Outbox, QueueRuntime, Shared};
use crate::profile::Profile;
use crate::queue::{Mode, Queue};
use crate::table::{DEFAULT_TABLE_PREFIX, Tables};
use crate::trace_context::TracePropagator;
use crate::worker::{Shutdown, WorkerConfig};

/// Builds an outbox: queues, table prefix, worker settings. Nothing is checked
/// or started until [`OutboxBuilder::start`].
pub struct OutboxBuilder {
    db: DatabaseConnection,
    dialect: Arc<dyn Dialect>,
    prefix: String,
    queues: Vec<Queue>,
    max_payload_bytes: usize,
    profile: Profile,
    overrides: Overrides,
    owner: String,
    run_workers: bool,
    listen: bool,
    trace: Option<Arc<dyn TracePropagator>>,
    processor_connections: usize,
    gauge_interval: Option<Duration>,
}

/// Messages per partition a sequencer pass can move at least, unless the
/// sequencer batch is set explicitly.
const SEQUENCED_PER_PARTITION: u32 = 4;

/// Processors that may use a database connection at once, unless set.
pub const DEFAULT_PROCESSOR_CONNECTIONS: usize = 16;

/// Settings given one by one, which win over the profile's.
#[derive(Debug, Default)]
struct Overrides {
    poll_interval: Option<Duration>,
    sequencer_batch: Option<u32>,
    vacuum_interval: Option<Duration>,
    vacuum_batch: Option<u32>,
}

impl std::fmt::Debug for OutboxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxBuilder")
            .field("dialect", &self.dialect.name())
            .field("prefix", &self.prefix)
            .field("queues", &self.queues)
            .field("profile", &self.profile)
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl Outbox {
    /// Starts configuring an outbox on `db`, speaking `dialect`.
    pub fn builder(db: DatabaseConnection, dialect: impl Dialect) -> OutboxBuilder {
        OutboxBuilder::new(db, Arc::new(dialect))
    }
}

impl OutboxBuilder {
    /// Starts configuring an outbox on `db` with a shared dialect; see [`Outbox::builder`].
    pub fn new(db: DatabaseConnection, dialect: Arc<dyn Dialect>) -> Self {
        Self {
            db,
            dialect,
            prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            queues: Vec::new(),
            max_payload_bytes: 1024 * 1024,
            profile: Profile::default(),
            overrides: Overrides::default(),
            owner: format!("outbox-{}", uuid::Uuid::new_v4()),
            run_workers: true,
            listen: true,
            trace: crate::trace_context::default_propagator(),
            processor_connections: DEFAULT_PROCESSOR_CONNECTIONS,
            gauge_interval: Some(crate::metric::DEFAULT_GAUGE_INTERVAL),
        }
    }

    /// Starts from a preset of worker settings ([`Profile::default`] unless
    /// set). Settings given one by one win over the profile's, whatever the
    /// order of the calls.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// The worker settings: the profile's, with the overrides applied.
    fn worker_config(&self) -> WorkerConfig {
        let (p, o) = (&self.profile, &self.overrides);
        WorkerConfig {
            poll_interval: o.poll_interval.unwrap_or(p.poll_interval),
            sequencer_batch: o.sequencer_batch.unwrap_or_else(|| {
                // A pass costs a row lock and an update per partition it
                // fills: with many partitions, a profile's batch would fill
                // each with a message or two. Unless set explicitly, move at
                // least a few messages per partition per pass.
                let partitions: u32 = self.queues.iter().map(|q| q.partitions).sum();
                let floor = Ord::min(partitions.saturating_mul(SEQUENCED_PER_PARTITION), 10_000);
                Ord::max(p.sequencer_batch, floor)
            }),
            vacuum_interval: o.vacuum_interval.unwrap_or(p.vacuum_interval),
            vacuum_batch: o.vacuum_batch.unwrap_or(p.vacuum_batch),
            owner: self.owner.clone(),
        }
    }

    /// Registers a queue. Each name once.
    pub fn queue(mut self, queue: Queue) -> Self {
        self.queues.push(queue);
        self
    }

    /// The table prefix, `[a-z][a-z0-9_]{0,39}`. Default `outbox_`.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Largest payload `enqueue` accepts. Default 1 MiB, range 1 byte to 64 MiB.
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// How often idle workers look at the tables when no wakeup came (work
    /// enqueued by another process, a lost wakeup). Default: the profile's
    /// (500 ms in [`Profile::default`]), range 1 ms to 1 h.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.overrides.poll_interval = Some(interval);
        self
    }

    /// Incoming messages the sequencer moves per transaction. Default: the
    /// profile's (1,000 in [`Profile::default`]), raised to 4 per partition
    /// of the registered queues (at most 10,000) so that a pass over many
    /// partitions still moves several messages into each; range 1 to 10,000.
    pub fn sequencer_batch(mut self, batch: u32) -> Self {
        self.overrides.sequencer_batch = Some(batch);
        self
    }

    /// Pause between vacuum passes. Default: the profile's (1 s in
    /// [`Profile::default`]), range 1 ms to 1 h.
    pub fn vacuum_interval(mut self, interval: Duration) -> Self {
        self.overrides.vacuum_interval = Some(interval);
        self
    }

    /// Rows vacuum deletes per statement. Default: the profile's (1,000 in
    /// [`Profile::default`]), range 1 to 10,000.
    pub fn vacuum_batch(mut self, batch: u32) -> Self {
        self.overrides.vacuum_batch = Some(batch);
        self
    }

    /// This instance's name in lease rows. Default `outbox-<random uuid>`;
    /// must be unique among running instances: `start` refuses a name that
    /// a running instance uses ([`OutboxError::InstanceNameInUse`]). A
    /// stable name per replica lets a replacement take the partitions of a
    /// crashed predecessor at once, without waiting for their leases:
    /// `start` then waits for the predecessor's heartbeat to run out (at
    /// most 3 s).
    pub fn instance_name(mut self, name: impl Into<String>) -> Self {
        self.owner = name.into();
        self
    }

    /// Whether `start` runs the sequencer, processors and vacuum. Default
    /// `true`; `false` gives a producer-only instance (its queues still need
    /// registering, for enqueue to know their partitions).
    pub fn run_workers(mut self, run: bool) -> Self {
        self.run_workers = run;
        self
    }

    /// How many partitions' processors may use a database connection at the
    /// same time: to read a batch or acknowledge it in leased mode (the
    /// handler itself runs outside the limit), for the whole step, handler
    /// included, in transactional mode (whose handler runs in the
    /// processor's transaction). Default 16, range 1 to 4,096.
    ///
    /// With many partitions under load, processors that wait for their turn
    /// find more messages when they get it: the same messages move in fewer,
    /// larger batches (at 1,024 partitions, a tenth of the statements per
    /// message), and the rest of the pool stays free for the application's
    /// own transactions. An idle or lightly loaded outbox never waits here.
    pub fn processor_connections(mut self, connections: usize) -> Self {
        self.processor_connections = connections;
        self
    }

    /// Uses `propagator` to carry trace context from enqueue to delivery
    /// (see [`TracePropagator`]). Default: see
    /// [`propagate_trace_context`](Self::propagate_trace_context).
    pub fn trace_propagator(mut self, propagator: impl TracePropagator) -> Self {
        self.trace = Some(Arc::new(propagator));
        self
    }

    /// Whether enqueue writes the current span's trace context into each
    /// message's headers and the handler's `outbox.handle` span links to it.
    /// Default: on with the `opentelemetry` cargo feature (W3C
    /// `traceparent`/`tracestate`, `W3cTraceContext`), off without (no
    /// propagator). `false` turns it off; `true` keeps the propagator in place.
    pub fn propagate_trace_context(mut self, propagate: bool) -> Self {
        self.trace = if propagate {
            self.trace.or_else(crate::trace_context::default_propagator)
        } else {
            None
        };
        self
    }

    /// Whether to listen for other processes' notifications where the
    /// backend has them (PostgreSQL LISTEN/NOTIFY). Default `true`. Turn it
    /// off behind a pooler that does not pass notifications (PgBouncer in
    /// transaction mode): workers then rely on in-process wakeups and the
    /// poll interval, as on MySQL and SQLite.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// How often the metric gauges (backlog, oldest age, dead letters,
    /// blocked and owned partitions, live instances) are read: one
    /// [`OutboxAdmin::stats`](crate::OutboxAdmin::stats) read for all queues
    /// per interval (see [`metric`](crate::metric)). Default 15 s, range
    /// 100 ms to 1 h; `None` reads none and leaves the gauges unset.
    pub fn gauge_interval(mut self, interval: Option<Duration>) -> Self {
        self.gauge_interval = interval;
        self
    }

    fn validate(&self, config: &WorkerConfig) -> Result<Tables, OutboxError> {
        let tables = Tables::new(&self.prefix)?;
        let connection = self.db.get_database_backend();
        if connection != self.dialect.backend() {
            return Err(OutboxError::DialectMismatch {
                dialect: self.dialect.name(),
                connection: format!("{connection:?}").to_lowercase(),
            });
        }
        if self.queues.is_empty() {
            return Err(ConfigError::NoQueue.into());
        }
        let mut names = HashSet::new();
        for queue in &self.queues {
            queue.validate()?;
            if !names.insert(queue.name.as_str()) {
                return Err(OutboxError::DuplicateQueue {
                    queue: queue.name.clone(),
                });
            }
        }
        let in_range =
            |d: Duration| d >= Duration::from_millis(1) && d <= Duration::from_secs(3600);
        if let Some(interval) = self.gauge_interval
            && !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval)
        {
            return Err(ConfigError::GaugeInterval { interval }.into());
        }
        if !in_range(config.poll_interval) {
            return Err(ConfigError::PollInterval {
                interval: config.poll_interval,
            }
            .into());
        }
        if !in_range(config.vacuum_interval) {
            return Err(ConfigError::VacuumInterval {
                interval: config.vacuum_interval,
            }
            .into());
        }
        if !(1..=10_000).contains(&config.sequencer_batch) {
            return Err(ConfigError::SequencerBatch {
                batch_size: config.sequencer_batch,
            }
            .into());
        }
        if !(1..=10_000).contains(&config.vacuum_batch) {
            return Err(ConfigError::VacuumBatch {
                batch_size: config.vacuum_batch,
            }
            .into());
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::MaxPayloadBytes {
                bytes: self.max_payload_bytes,
            }
            .into());
        }
        if !(1..=4096).contains(&self.processor_connections) {
            return Err(ConfigError::ProcessorConnections {
                connections: self.processor_connections,
            }
            .into());
        }
        if config.owner.is_empty() || config.owner.len() > 128 {
            return Err(ConfigError::InstanceName {
                name: config.owner.clone(),
            }
            .into());
        }
        Ok(tables)
    }

    /// Checks the configuration and the schema, creates missing partition
    /// rows, and starts the workers.
    ///
    /// # Errors
    /// Configuration errors ([`OutboxError::Config`],
    /// [`OutboxError::InvalidQueueName`], [`OutboxError::DuplicateQueue`],
    /// [`OutboxError::InvalidTablePrefix`], [`OutboxError::DialectMismatch`]),
    /// [`OutboxError::SchemaMissing`] when the tables are absent or old,
    /// [`OutboxError::PartitionsNotDrained`] when a queue's partition count
    /// shrank while the partitions it drops hold messages,
    /// [`OutboxError::InstanceNameInUse`] when another running instance has
    /// this instance's name, or a database error.
    pub async fn start(mut self) -> Result<OutboxHandle, OutboxError> {
        let config = self.worker_config();
        if !(1..=10_000).contains(&self.profile.batch_size) {
            return Err(ConfigError::ProfileBatchSize {
                batch_size: self.profile.batch_size,
            }
            .into());
        }
        for queue in &mut self.queues {
            queue.batch_size = Some(queue.batch_size.unwrap_or(self.profile.batch_size));
        }
        let tables = self.validate(&config)?;
        let dialect = self.dialect.clone();
        for statement in dialect.startup_statements() {
            self.db
                .execute_unprepared(statement)
                .await
                .map_err(|e| crate::error::classify::db_error(dialect.as_ref(), e))?;
        }
        crate::migration::warn_if_multi_primary(&self.db, dialect.as_ref()).await;
        crate::migration::check_schema(&self.db, &dialect, &tables).await?;
        crate::repartition::check(&self.db, dialect.as_ref(), &tables, &self.queues).await?;
        let incarnation = if self.run_workers {
            crate::worker::membership::claim(&self.db, dialect.as_ref(), &tables, &config.owner)
                .await?
        } else {
            0
        };
        let partition_ids = crate::repartition::ensure_partitions(
            &self.db,
            dialect.as_ref(),
            &tables,
            &self.queues,
        )
        .await?;

        let mut queues = HashMap::new();
        let mut partition_wakers = HashMap::new();
        let mut partition_names = HashMap::new();
        for queue in &self.queues {
            let ids: Vec<i64> = (0..queue.partitions)
                .map(|n| partition_ids.get(&(queue.name.clone(), n)).copied())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    OutboxError::internal(format_args!(
                        "partition rows of queue {:?} are missing after start wrote them",
                        queue.name
                    ))
                })?;
            for (n, id) in ids.iter().enumerate() {
                partition_names.insert(
                    *id,
                    (queue.name.clone(), u32::try_from(n).unwrap_or(u32::MAX)),
                );
            }
            if self.run_workers && !matches!(queue.mode, Mode::ProduceOnly) {
                for id in &ids {
                    partition_wakers.insert(*id, Arc::new(Notify::new()));
                }
            }
            queues.insert(
                queue.name.clone(),
                QueueRuntime {
                    config: queue.clone(),
                    partition_ids: ids,
                },
            );
        }
        let dialect_for_notify = dialect.clone();
        let prefix_for_notify = tables.prefix.clone();
        let shared = Arc::new(Shared {
            db: self.db,
            dialect,
            tables,
            queues,
            max_payload_bytes: self.max_payload_bytes,
            sequencer_wake: Notify::new(),
            listening: std::sync::atomic::AtomicBool::new(false),
            partition_names,
            events: crate::event::EventHub::default(),
            metrics: crate::metric::Metrics::new(self.queues.iter().map(|q| q.name.as_str())),
            ownership: crate::worker::ownership::Ownership::new(
                self.queues.iter().map(|q| q.name.as_str()),
            ),
            notify_on_enqueue: crate::outbox::notify_on_enqueue(
                dialect_for_notify.as_ref(),
                &prefix_for_notify,
                self.run_workers,
            ),
            partition_wakers,
            trace: self.trace,
            processor_permits: tokio::sync::Semaphore::new(self.processor_connections),
        });
        let (stop, stop_rx) = watch::channel(false);
        let tasks = crate::worker::start(
            &shared,
            &config,
            crate::worker::Launch {
                gauge_interval: self.gauge_interval,
                workers: self.run_workers.then_some(incarnation),
                listen: self.listen,
            },
            &stop,
            Shutdown(stop_rx),
        )
        .await;
        Ok(OutboxHandle::new(Outbox { shared }, stop, tasks))
    }
}
