//! What must hold of the stream after a load: every confirmed order exactly
//! once, uncertain ones at most once, nothing else; each customer's orders in
//! the order they were placed; each partition's `Outbox-Seq` dense from 1.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::load::{Outcome, Posted, tag};
use super::nats::StreamMessage;

/// Counts from a check, for the test's summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages on the stream.
    pub messages: usize,
    /// Orders confirmed by a 201.
    pub confirmed: usize,
    /// Orders whose answer was lost.
    pub uncertain: usize,
    /// Uncertain orders that did commit (their message arrived).
    pub uncertain_arrived: usize,
}

/// Compares what was posted with what the stream holds; returns every
/// problem found (empty when all holds) and the counts.
pub fn check(
    posted: &[Posted],
    messages: &[StreamMessage],
    prefix: &str,
) -> (Vec<String>, Summary) {
    let mut problems = Vec::new();
    let mut summary = Summary {
        messages: messages.len(),
        ..Summary::default()
    };

    let mut by_tag: HashMap<String, &Posted> = HashMap::new();
    for p in posted {
        by_tag.insert(tag(&p.customer, p.index), p);
        match p.outcome {
            Outcome::Confirmed { .. } => summary.confirmed += 1,
            Outcome::Uncertain => summary.uncertain += 1,
        }
    }

    let mut seen_tags: HashMap<String, usize> = HashMap::new();
    let mut seen_msg_ids: HashSet<String> = HashSet::new();
    let mut per_customer: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut per_partition: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    let mut partition_of: HashMap<String, u32> = HashMap::new();

    for m in messages {
        let at = format!("stream message {}", m.stream_seq);
        let Some(sku) = m.payload["items"][0]["sku"].as_str() else {
            problems.push(format!("{at} has no tagged item: {}", m.payload));
            continue;
        };
        let Some(p) = by_tag.get(sku) else {
            problems.push(format!("{at} is order {sku}, which was never posted"));
            continue;
        };
        *seen_tags.entry(sku.to_owned()).or_default() += 1;
        match &m.msg_id {
            Some(id) if !seen_msg_ids.insert(id.clone()) => {
                problems.push(format!("{at}: Nats-Msg-Id {id} appears twice"));
            }
            Some(_) => {}
            None => problems.push(format!("{at} has no Nats-Msg-Id")),
        }
        if let Outcome::Confirmed {
            order_id,
            message_id,
            trace_id,
        } = &p.outcome
        {
            // The request's trace travels with its message to the broker.
            match (trace_id, &m.traceparent) {
                (Some(trace_id), Some(traceparent))
                    if traceparent.starts_with(&format!("00-{trace_id}-")) => {}
                (trace_id, traceparent) => problems.push(format!(
                    "{at} ({sku}) has traceparent {traceparent:?}, the POST returned trace id {trace_id:?}"
                )),
            }
            if m.payload["order_id"].as_str() != Some(order_id.as_str()) {
                problems.push(format!(
                    "{at} ({sku}) carries order id {}, the POST returned {order_id}",
                    m.payload["order_id"]
                ));
            }
            if m.msg_id.as_deref() != Some(message_id.as_str()) {
                problems.push(format!(
                    "{at} ({sku}) has Nats-Msg-Id {:?}, the POST returned message id {message_id}",
                    m.msg_id
                ));
            }
        }
        if m.payload["customer"].as_str() != Some(p.customer.as_str()) {
            problems.push(format!(
                "{at} ({sku}) names customer {}",
                m.payload["customer"]
            ));
        }
        if m.content_type.as_deref() != Some("application/json") {
            problems.push(format!("{at} has content-type {:?}", m.content_type));
        }
        match (m.partition, m.seq) {
            (Some(partition), Some(seq)) => {
                per_partition.entry(partition).or_default().push(seq);
                if m.subject != format!("{prefix}.{partition}") {
                    problems.push(format!(
                        "{at} went to subject {}, expected {prefix}.{partition}",
                        m.subject
                    ));
                }
                if let Some(previous) = partition_of.insert(p.customer.clone(), partition)
                    && previous != partition
                {
                    problems.push(format!(
                        "{} moved from partition {previous} to {partition}",
                        p.customer
                    ));
                }
            }
            _ => problems.push(format!("{at} lacks Outbox-Partition or Outbox-Seq")),
        }
        per_customer
            .entry(p.customer.clone())
            .or_default()
            .push(p.index);
    }

    for p in posted {
        let key = tag(&p.customer, p.index);
        let n = seen_tags.get(&key).copied().unwrap_or(0);
        match (&p.outcome, n) {
            (Outcome::Confirmed { .. }, 1) => {}
            (Outcome::Confirmed { .. }, 0) => problems.push(format!("order {key} is missing")),
            (Outcome::Uncertain, 0) => {}
            (Outcome::Uncertain, 1) => summary.uncertain_arrived += 1,
            (_, n) => problems.push(format!("order {key} arrived {n} times")),
        }
    }

    for (customer, indexes) in &per_customer {
        if indexes.windows(2).any(|w| w[0] >= w[1]) {
            problems.push(format!(
                "{customer}'s orders arrived out of order: {indexes:?}"
            ));
        }
    }
    for (partition, seqs) in &per_partition {
        let dense: Vec<i64> = (1..).take(seqs.len()).collect();
        if *seqs != dense {
            problems.push(format!(
                "partition {partition} has Outbox-Seq {seqs:?}, expected 1..={}",
                seqs.len()
            ));
        }
    }
    (problems, summary)
}
