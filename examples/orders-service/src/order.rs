//! An order: the request that places it, its checks, its row and the
//! `OrderPlaced` event that announces it.

use std::time::{SystemTime, UNIX_EPOCH};

use outbox_core::sea_orm::sea_query::{Expr, Query};
use outbox_core::sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The service's business table.
pub const ORDERS_TABLE: &str = "orders";
/// The outbox queue the events go to, keyed by customer.
pub const ORDERS_QUEUE: &str = "orders";
/// The payload type of the event.
pub const ORDER_PLACED: &str = "OrderPlaced";
/// Longest customer id, in bytes (the column is 128 characters).
pub const MAX_CUSTOMER_LEN: usize = 128;
/// Most line items in one order.
pub const MAX_ITEMS: usize = 1000;

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewOrder {
    /// The customer id; also the partition key, so a customer's events keep
    /// their order.
    pub customer: String,
    /// The line items, at least one.
    pub items: Vec<LineItem>,
    /// The total in cents, zero or more.
    pub total_cents: i64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// The stock-keeping unit.
    pub sku: String,
    /// How many, at least one.
    pub qty: i64,
}

/// Why an order was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidOrder {
    /// `customer` is empty or blank.
    #[error("customer must not be empty")]
    EmptyCustomer,
    /// `customer` is too long or holds control characters.
    #[error("customer must be at most {MAX_CUSTOMER_LEN} bytes without control characters")]
    BadCustomer,
    /// `items` is empty.
    #[error("items must hold at least one item")]
    NoItems,
    /// `items` is too long.
    #[error("items holds {0} items; at most {MAX_ITEMS} are accepted")]
    TooManyItems(usize),
    /// An item has an empty sku.
    #[error("items[{index}].sku must not be empty")]
    EmptySku {
        /// The item's position.
        index: usize,
    },
    /// An item's quantity is zero or negative.
    #[error("items[{index}].qty must be at least 1, got {qty}")]
    BadQuantity {
        /// The item's position.
        index: usize,
        /// The quantity given.
        qty: i64,
    },
    /// The total is negative.
    #[error("total_cents must not be negative, got {0}")]
    NegativeTotal(i64),
}

impl NewOrder {
    /// Checks everything that can be checked without the database.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), InvalidOrder> {
        if self.customer.trim().is_empty() {
            return Err(InvalidOrder::EmptyCustomer);
        }
        if self.customer.len() > MAX_CUSTOMER_LEN || self.customer.chars().any(char::is_control) {
            return Err(InvalidOrder::BadCustomer);
        }
        if self.items.is_empty() {
            return Err(InvalidOrder::NoItems);
        }
        if self.items.len() > MAX_ITEMS {
            return Err(InvalidOrder::TooManyItems(self.items.len()));
        }
        for (index, item) in self.items.iter().enumerate() {
            if item.sku.trim().is_empty() {
                return Err(InvalidOrder::EmptySku { index });
            }
            if item.qty <= 0 {
                return Err(InvalidOrder::BadQuantity {
                    index,
                    qty: item.qty,
                });
            }
        }
        if self.total_cents < 0 {
            return Err(InvalidOrder::NegativeTotal(self.total_cents));
        }
        Ok(())
    }

    /// The event for this order, with a new UUID v7 id and the current time.
    pub fn place(self) -> OrderPlaced {
        OrderPlaced {
            order_id: Uuid::now_v7().to_string(),
            customer: self.customer,
            items: self.items,
            total_cents: self.total_cents,
            placed_at_ms: now_ms(),
        }
    }
}

/// The payload of the `OrderPlaced` message, and the content of the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order id (a UUID v7 string), also the row's primary key.
    pub order_id: String,
    /// The customer id.
    pub customer: String,
    /// The line items.
    pub items: Vec<LineItem>,
    /// The total in cents.
    pub total_cents: i64,
    /// When the order was placed, in milliseconds since the Unix epoch.
    pub placed_at_ms: i64,
}

impl OrderPlaced {
    /// Inserts the order row on `conn` (the caller's transaction).
    ///
    /// # Errors
    /// The database's error.
    pub async fn insert(&self, conn: &impl ConnectionTrait) -> Result<(), DbErr> {
        let items = serde_json::to_string(&self.items).map_err(|e| DbErr::Custom(e.to_string()))?;
        let mut insert = Query::insert();
        insert
            .into_table(ORDERS_TABLE)
            .columns(["id", "customer", "items", "total_cents", "created_at"])
            .values([
                Expr::val(self.order_id.clone()),
                Expr::val(self.customer.clone()),
                Expr::val(items),
                Expr::val(self.total_cents),
                Expr::val(self.placed_at_ms),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        conn.execute(&insert).await?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(customer: &str, items: &[(&str, i64)], total_cents: i64) -> NewOrder {
        NewOrder {
            customer: customer.to_owned(),
            items: items
                .iter()
                .map(|(sku, qty)| LineItem {
                    sku: (*sku).to_owned(),
                    qty: *qty,
                })
                .collect(),
            total_cents,
        }
    }

    #[test]
    fn a_sound_order_passes() {
        assert_eq!(order("c1", &[("s1", 2)], 1200).validate(), Ok(()));
        assert_eq!(order("c1", &[("s1", 1)], 0).validate(), Ok(()));
    }

    #[test]
    fn each_rule_refuses_its_case() {
        assert_eq!(
            order(" ", &[("s1", 1)], 1).validate(),
            Err(InvalidOrder::EmptyCustomer)
        );
        assert_eq!(
            order(&"c".repeat(129), &[("s1", 1)], 1).validate(),
            Err(InvalidOrder::BadCustomer)
        );
        assert_eq!(order("c1", &[], 1).validate(), Err(InvalidOrder::NoItems));
        assert_eq!(
            order("c1", &[("s1", 1), ("", 1)], 1).validate(),
            Err(InvalidOrder::EmptySku { index: 1 })
        );
        assert_eq!(
            order("c1", &[("s1", 0)], 1).validate(),
            Err(InvalidOrder::BadQuantity { index: 0, qty: 0 })
        );
        assert_eq!(
            order("c1", &[("s1", -3)], 1).validate(),
            Err(InvalidOrder::BadQuantity { index: 0, qty: -3 })
        );
        assert_eq!(
            order("c1", &[("s1", 1)], -1).validate(),
            Err(InvalidOrder::NegativeTotal(-1))
        );
    }

    #[test]
    fn placing_gives_a_uuid_v7_id() {
        let placed = order("c1", &[("s1", 1)], 1).place();
        let id: Uuid = placed.order_id.parse().unwrap_or_default();
        assert_eq!(id.get_version_num(), 7);
    }
}
