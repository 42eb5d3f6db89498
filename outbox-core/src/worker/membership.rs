//! Membership: which instances are alive, and each one's fair share of a
//! queue's partitions.
//!
//! Every instance with workers upserts a heartbeat row every
//! [`HEARTBEAT`] and counts the live rows. A worker takes a new partition
//! lease only while its instance holds fewer than
//! `ceil(partitions / live instances)` of the queue, and an instance over
//! its share gives leases back after a batch, so partitions spread over the
//! instances and move when one joins or leaves. A dead instance's heartbeat
//! runs out after [`HEARTBEAT_TTL`] and its leases after their length; its
//! partitions are then taken by the others.
//!
//! The heartbeat row is keyed by the instance name, and leases are re-taken
//! at once by their owner's name, so two live instances with one name would
//! take each other's leases. Each start therefore claims the row with an
//! incarnation of its own ([`claim`]): a start whose name has a live row of
//! another incarnation is refused. While running, a heartbeat that finds
//! its row taken by another incarnation (its own had lapsed and a namesake
//! started) stands the instance down: it takes no partition until the row
//! is its own again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::column::Column;
use crate::dialect::Dialect;
use crate::error::{DbErrorKind, OutboxError};
use crate::outbox::Shared;
use crate::table::Tables;
use crate::worker::shutdown::{Shutdown, error_backoff};

/// How often an instance writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a heartbeat counts an instance as alive.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
/// A heartbeat row that ran out this long ago belongs to an instance that
/// is gone (killed, never stopped); the next beat of any instance deletes it.
pub const HEARTBEAT_FORGET: Duration = Duration::from_secs(60);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The heartbeat row of an instance name, as another incarnation left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    heartbeat_until: i64,
    incarnation: i64,
    now: i64,
}

/// Writes `owner`'s heartbeat row as `incarnation` if the row is missing or
/// has run out; otherwise returns the live row.
async fn try_claim(
    db: &DatabaseConnection,
    dialect: &dyn Dialect,
    tables: &Tables,
    owner: &str,
    incarnation: i64,
) -> Result<Option<Holder>, OutboxError> {
    let err = |e| crate::error::classify::db_error(dialect, e);
    let now = dialect.now_millis();
    let until = now.clone().add(millis(HEARTBEAT_TTL));
    let take_expired = Query::update()
        .table(tables.instance.clone())
        .value(Column::HeartbeatUntil, until.clone())
        .value(Column::Incarnation, incarnation)
        .and_where(Expr::col(Column::Owner).eq(owner))
        .and_where(Expr::col(Column::HeartbeatUntil).lte(now.clone()))
        .to_owned();
    let insert = Query::insert()
        .into_table(tables.instance.clone())
        .columns([Column::Owner, Column::HeartbeatUntil, Column::Incarnation])
        .values([Expr::val(owner), until, Expr::val(incarnation)])
        .map_err(OutboxError::internal)?
        .to_owned();
    let select = Query::select()
        .columns([Column::HeartbeatUntil, Column::Incarnation])
        .expr_as(now, Alias::new("now_ms"))
        .from(tables.instance.clone())
        .and_where(Expr::col(Column::Owner).eq(owner))
        .to_owned();
    loop {
        if db
            .execute(&take_expired)
            .await
            .map_err(err)?
            .rows_affected()
            > 0
        {
            return Ok(None);
        }
        match db.execute(&insert).await.map_err(err) {
            Ok(_) => return Ok(None),
            Err(OutboxError::Database {
                kind: DbErrorKind::UniqueViolation,
                ..
            }) => {}
            Err(other) => return Err(other),
        }
        // None: deleted in between (its instance stopped), so free again.
        if let Some(row) = db.query_one(&select).await.map_err(err)? {
            return Ok(Some(Holder {
                heartbeat_until: row
                    .try_get("", Column::HeartbeatUntil.name())
                    .map_err(err)?,
                incarnation: row.try_get("", Column::Incarnation.name()).map_err(err)?,
                now: row.try_get("", "now_ms").map_err(err)?,
            }));
        }
    }
}

/// Claims `owner`'s heartbeat row for a new incarnation at start, and
/// returns it.
///
/// A row that is live but unchanged may be a crashed instance's (a
/// replacement started under its name): it runs out within
/// [`HEARTBEAT_TTL`], and is then taken. A live instance rewrites its row
/// every [`HEARTBEAT`]: seeing it change means the name is in use.
///
/// # Errors
/// [`OutboxError::InstanceNameInUse`], or a database error.
pub(crate) async fn claim(
    db: &DatabaseConnection,
    dialect: &dyn Dialect,
    tables: &Tables,
    owner: &str,
) -> Result<i64, OutboxError> {
    // Positive, and never the 0 of rows written before incarnations existed.
    let incarnation = Ord::max(rand::random::<i64>() & i64::MAX, 1);
    let give_up = tokio::time::Instant::now() + HEARTBEAT_TTL + HEARTBEAT;
    let mut first: Option<(i64, i64)> = None;
    loop {
        let Some(holder) = try_claim(db, dialect, tables, owner, incarnation).await? else {
            return Ok(incarnation);
        };
        let seen = (holder.heartbeat_until, holder.incarnation);
        let changed = first.is_some_and(|first| first != seen);
        first.get_or_insert(seen);
        if changed || tokio::time::Instant::now() >= give_up {
            return Err(OutboxError::InstanceNameInUse {
                name: owner.to_owned(),
                expires_in: Duration::from_millis(
                    u64::try_from(holder.heartbeat_until - holder.now).unwrap_or(0),
                ),
            });
        }
        let left = u64::try_from(holder.heartbeat_until - holder.now).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(left.clamp(10, 200))).await;
    }
}

/// Heartbeats until stop, then removes this instance's row.
pub(crate) async fn run(
    shared: Arc<Shared>,
    owner: String,
    incarnation: i64,
    mut shutdown: Shutdown,
) {
    let mut errors = 0;
    while !shutdown.is_set() {
        let pause = match beat(&shared, &owner, incarnation).await {
            Ok(()) => {
                errors = 0;
                HEARTBEAT
            }
            Err(err) => {
                errors += 1;
                tracing::warn!(error = %err, "outbox heartbeat failed");
                error_backoff(errors).min(HEARTBEAT)
            }
        };
        shutdown.sleep(pause).await;
    }
    let leave = Query::delete()
        .from_table(shared.tables.instance.clone())
        .and_where(Expr::col(Column::Owner).eq(owner.as_str()))
        .and_where(Expr::col(Column::Incarnation).eq(incarnation))
        .to_owned();
    if let Err(err) = shared.db.execute(&leave).await {
        tracing::warn!(error = %err, "outbox could not remove its heartbeat on stop");
    }
}

/// Writes this instance's heartbeat and counts the live instances.
async fn beat(shared: &Shared, owner: &str, incarnation: i64) -> Result<(), OutboxError> {
    let err = |e| shared.db_error(e);
    let now = shared.dialect.now_millis();
    let renew = Query::update()
        .table(shared.tables.instance.clone())
        .value(
            Column::HeartbeatUntil,
            now.clone().add(millis(HEARTBEAT_TTL)),
        )
        .and_where(Expr::col(Column::Owner).eq(owner))
        .and_where(Expr::col(Column::Incarnation).eq(incarnation))
        .to_owned();
    let ours = shared
        .db
        .execute(&renew)
        .await
        .map_err(err)?
        .rows_affected()
        > 0
        || try_claim(
            &shared.db,
            shared.dialect.as_ref(),
            &shared.tables,
            owner,
            incarnation,
        )
        .await?
        .is_none();
    let taken = &shared.ownership.name_taken;
    match (ours, taken.swap(!ours, Ordering::Relaxed)) {
        (false, false) => tracing::error!(
            instance = owner,
            "outbox instance name is used by another running instance; this one takes no partition until the name is free: give each instance its own name"
        ),
        (true, true) => tracing::warn!(
            instance = owner,
            "outbox instance name is free again; this instance takes partitions again"
        ),
        _ => {}
    }
    let count = Query::select()
        .expr_as(Expr::col(Column::Owner).count(), Alias::new("n"))
        .from(shared.tables.instance.clone())
        .and_where(Expr::col(Column::HeartbeatUntil).gt(now))
        .to_owned();
    let live: i64 = match shared.db.query_one(&count).await.map_err(err)? {
        Some(row) => row.try_get("", "n").map_err(err)?,
        None => 1,
    };
    shared
        .ownership
        .live_instances
        .store(usize::try_from(live).unwrap_or(1).max(1), Ordering::Relaxed);
    // An instance that was killed never deletes its row, and nobody else
    // would: rows would pile up with every crash or rolling deploy under
    // fresh names. One statement on a table with a row per instance; when
    // nothing is that old it deletes (and on PostgreSQL writes) nothing.
    let forget = Query::delete()
        .from_table(shared.tables.instance.clone())
        .and_where(
            Expr::col(Column::HeartbeatUntil)
                .lt(shared.dialect.now_millis().sub(millis(HEARTBEAT_FORGET))),
        )
        .to_owned();
    shared.db.execute(&forget).await.map_err(err)?;
    Ok(())
}
