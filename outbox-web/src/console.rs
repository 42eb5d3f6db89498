//! The console: its settings, its shared state and its router.

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use outbox_core::OutboxAdmin;

use crate::route;
use crate::sample::{SAMPLE_EVERY, Samples};

/// Decides whether a request may run an action, from its headers (a session
/// cookie, an `Authorization` header, a header set by an authenticating
/// proxy).
pub type Authorize = dyn Fn(&HeaderMap) -> bool + Send + Sync;

/// A web console for one outbox database: queues, partitions, dead letters
/// and instances, as an axum [`Router`] to mount under any path.
///
/// Read-only unless [`Console::allow_actions`] is set; actions (requeue,
/// discard a dead letter) are POSTs carrying a CSRF token, confirmed in the
/// page, and checked by the [`Console::authorize`] hook when there is one.
///
/// ```no_run
/// # async fn example(admin: outbox_core::OutboxAdmin) {
/// let console = outbox_web::Console::new(admin)
///     .allow_actions(true)
///     .authorize(|headers| headers.get("x-operator").is_some());
/// let app = axum::Router::<()>::new().nest("/outbox", console.router());
/// # let _ = app; }
/// ```
pub struct Console {
    admin: OutboxAdmin,
    actions: bool,
    authorize: Option<Arc<Authorize>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("admin", &self.admin)
            .field("actions", &self.actions)
            .field("authorize", &self.authorize.is_some())
            .finish()
    }
}

/// What every handler shares.
pub(crate) struct State {
    pub(crate) admin: OutboxAdmin,
    pub(crate) actions: bool,
    pub(crate) authorize: Option<Arc<Authorize>>,
    /// The synchronizer token every action form carries: a page from
    /// another origin cannot read it.
    pub(crate) csrf: String,
    pub(crate) samples: Mutex<Samples>,
}

impl State {
    /// Records each queue's settled count for the throughput chart.
    pub(crate) fn sample(&self, stats: &outbox_core::OutboxStats) {
        let now = Instant::now();
        if let Ok(mut samples) = self.samples.lock() {
            for queue in &stats.queues {
                let settled = queue.partitions.iter().map(|p| p.processed_seq).sum();
                samples.record(&queue.queue, now, settled);
            }
        }
    }
}

impl Console {
    /// A read-only console on `admin`'s database and tables.
    pub fn new(admin: OutboxAdmin) -> Self {
        Self {
            admin,
            actions: false,
            authorize: None,
        }
    }

    /// Whether the console offers actions: requeue and discard a dead
    /// letter. Default `false`.
    pub fn allow_actions(mut self, allow: bool) -> Self {
        self.actions = allow;
        self
    }

    /// Checks each action request with `hook`; a request it refuses gets
    /// 403. Default: none (any request that reaches the console may act,
    /// when actions are allowed).
    pub fn authorize(mut self, hook: impl Fn(&HeaderMap) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// The console's routes, to serve as is or to mount with
    /// [`Router::nest`]; links follow the mount path.
    ///
    /// Called inside a tokio runtime, it also samples each queue every
    /// 10 s (one stats read) for the throughput chart, until the router is
    /// dropped; elsewhere the chart fills as pages are loaded.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let state = Arc::new(State {
            admin: self.admin,
            actions: self.actions,
            authorize: self.authorize,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
            samples: Mutex::new(Samples::default()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sampler(Arc::downgrade(&state)));
        }
        Router::new()
            .route("/", get(route::queues))
            .route("/partitions", get(route::partitions))
            .route("/dead-letters", get(route::dead_letters))
            .route("/dead-letters/{id}", get(route::dead_letter))
            .route("/dead-letters/{id}/requeue", post(route::requeue))
            .route("/dead-letters/{id}/discard", post(route::discard))
            .route("/instances", get(route::instances))
            .route("/assets/console.css", get(route::css))
            .route("/assets/console.js", get(route::js))
            .with_state(state)
    }
}

/// Samples while the console's router lives.
async fn sampler(state: Weak<State>) {
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        match strong.admin.stats().await {
            Ok(stats) => strong.sample(&stats),
            Err(err) => tracing::debug!(error = %err, "outbox console could not sample"),
        }
        drop(strong);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}
