//! Customers placing orders over HTTP, each one order after the other (so
//! each customer's orders have a known order), all customers at once.
//!
//! Each order is tagged: its one item's sku is `<customer>#<index>`. A
//! request whose connection could not be made is sent again (it never left);
//! one whose answer was lost (the service was killed) is recorded as
//! uncertain: it may or may not have committed, so its message may arrive,
//! at most once.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::http::{self, HttpError};

/// What became of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 201: the order and its message are committed.
    Confirmed {
        /// The order id returned.
        order_id: String,
        /// The message id returned.
        message_id: String,
        /// The request's trace id returned.
        trace_id: Option<String>,
    },
    /// Sent, but the answer was lost.
    Uncertain,
}

/// One order placed (or attempted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The customer.
    pub customer: String,
    /// Its position in the customer's sequence, from 0.
    pub index: usize,
    /// What became of it.
    pub outcome: Outcome,
}

/// The tag of an order, carried in its item's sku.
pub fn tag(customer: &str, index: usize) -> String {
    format!("{customer}#{index}")
}

/// A running load.
pub struct Load {
    addr: watch::Sender<SocketAddr>,
    confirmed: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Vec<Posted>>>,
}

impl Load {
    /// Starts `customers` customers placing `per_customer` orders each on `addr`.
    pub fn start(addr: SocketAddr, customers: usize, per_customer: usize) -> Load {
        Self::start_range(addr, customers, 0..per_customer)
    }

    /// Starts `customers` customers placing their orders `indexes` (a
    /// continuation of an earlier load, say) on `addr`.
    pub fn start_range(addr: SocketAddr, customers: usize, indexes: Range<usize>) -> Load {
        let (tx, rx) = watch::channel(addr);
        let confirmed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..customers)
            .map(|c| {
                let customer = format!("customer-{c}");
                tokio::spawn(place_orders(
                    customer,
                    indexes.clone(),
                    rx.clone(),
                    confirmed.clone(),
                ))
            })
            .collect();
        Load {
            addr: tx,
            confirmed,
            tasks,
        }
    }

    /// Points the customers to a restarted service.
    pub fn redirect(&self, addr: SocketAddr) {
        self.addr.send_replace(addr);
    }

    /// Orders confirmed so far.
    pub fn confirmed(&self) -> usize {
        self.confirmed.load(Ordering::SeqCst)
    }

    /// Waits for every customer to finish (at most 5 minutes).
    pub async fn finish(self) -> Vec<Posted> {
        let mut all = Vec::new();
        for task in self.tasks {
            let posted = tokio::time::timeout(Duration::from_secs(300), task)
                .await
                .expect("customers finish within 5 minutes")
                .expect("customer task");
            all.extend(posted);
        }
        all
    }
}

async fn place_orders(
    customer: String,
    indexes: Range<usize>,
    addr: watch::Receiver<SocketAddr>,
    confirmed: Arc<AtomicUsize>,
) -> Vec<Posted> {
    let mut posted = Vec::with_capacity(indexes.len());
    for index in indexes {
        let body = serde_json::json!({
            "customer": customer,
            "items": [{"sku": tag(&customer, index), "qty": 1 + index % 3}],
            "total_cents": 100 * index,
        })
        .to_string();
        let mut refused = 0;
        let outcome = loop {
            let target = *addr.borrow();
            match http::request(
                target,
                "POST",
                "/orders",
                Some(("application/json", body.as_bytes())),
            )
            .await
            {
                Ok(response) if response.status == 201 => {
                    let json = response.json();
                    confirmed.fetch_add(1, Ordering::SeqCst);
                    break Outcome::Confirmed {
                        order_id: json["id"].as_str().expect("id").to_owned(),
                        message_id: json["message_id"].as_str().expect("message_id").to_owned(),
                        trace_id: json["trace_id"].as_str().map(str::to_owned),
                    };
                }
                Ok(response) => panic!(
                    "POST /orders for {} answered {}: {}",
                    tag(&customer, index),
                    response.status,
                    response.body
                ),
                Err(HttpError::Connect(err)) => {
                    // Not sent: the service is down; wait for it (or its successor).
                    refused += 1;
                    assert!(refused < 3000, "no service to post to for 150 s: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(HttpError::Lost(why)) => {
                    eprintln!(
                        "{}: answer lost from {target} ({why}): uncertain",
                        tag(&customer, index)
                    );
                    break Outcome::Uncertain;
                }
            }
        };
        posted.push(Posted {
            customer: customer.clone(),
            index,
            outcome,
        });
    }
    posted
}
