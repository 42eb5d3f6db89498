//! Instances seen through their heartbeat rows, for operators.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Order, Query};

use crate::column::Column;
use crate::error::OutboxError;
use crate::outbox_admin::OutboxAdmin;

/// One instance's heartbeat row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The instance name ([`OutboxBuilder::instance_name`](crate::OutboxBuilder::instance_name)).
    pub name: String,
    /// When its heartbeat runs out (epoch ms, database clock).
    pub heartbeat_until_ms: i64,
    /// Whether its heartbeat is fresh now.
    pub alive: bool,
}

impl OutboxAdmin {
    /// Every instance with a heartbeat row (alive, or stopped without
    /// removing it and not yet forgotten), by name. One query.
    ///
    /// # Errors
    /// [`OutboxError::SchemaMissing`] when the tables do not exist;
    /// [`OutboxError::Database`] otherwise.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, OutboxError> {
        let err = |e| self.error(e);
        let select = Query::select()
            .columns([Column::Owner, Column::HeartbeatUntil])
            .expr_as(self.dialect.now_millis(), Alias::new("now_ms"))
            .from(self.tables.instance.clone())
            .order_by(Column::Owner, Order::Asc)
            .to_owned();
        let rows = self.db.query_all(&select).await.map_err(err)?;
        rows.iter()
            .map(|row| {
                let until: i64 = row.try_get("", Column::HeartbeatUntil.name())?;
                let now: i64 = row.try_get("", "now_ms")?;
                Ok(InstanceInfo {
                    name: row.try_get("", Column::Owner.name())?,
                    heartbeat_until_ms: until,
                    alive: until > now,
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(err)
    }
}
