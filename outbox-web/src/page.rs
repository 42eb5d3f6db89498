//! The console's pages, as HTML strings. Every value from the database
//! goes through [`escape`]; numbers are formatted, never taken as text.

use std::fmt::Write;

use outbox_core::{
    DeadLetter, DeadLetterList, DeadLetterStatus, InstanceInfo, OutboxStats, QueueStats,
};

use crate::escape::{escape, url_encode};
use crate::payload;
use crate::sample::chart;

const STATUSES: [DeadLetterStatus; 4] = [
    DeadLetterStatus::Pending,
    DeadLetterStatus::Reprocessing,
    DeadLetterStatus::Resolved,
    DeadLetterStatus::Discarded,
];

/// The frame around every page. `title` is escaped here; `body` is HTML.
fn layout(base: &str, title: &str, body: &str) -> String {
    let b = escape(base);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} · outbox</title><link rel=\"stylesheet\" href=\"{b}/assets/console.css\"></head><body>\
<header><strong>outbox</strong><a href=\"{b}/\">Queues</a><a href=\"{b}/partitions\">Partitions</a>\
<a href=\"{b}/dead-letters\">Dead letters</a><a href=\"{b}/instances\">Instances</a></header>\
<main><h1>{title}</h1>{body}</main><script src=\"{b}/assets/console.js\"></script></body></html>",
        title = escape(title),
    )
}

/// An error page.
pub(crate) fn error(base: &str, message: &str) -> String {
    layout(
        base,
        "Error",
        &format!(
            "<div class=\"error\" id=\"error\">{}</div>",
            escape(message)
        ),
    )
}

/// Milliseconds as a short age: `950 ms`, `12.3 s`, `4 min`, `2.5 h`.
fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..7_200_000 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn queue_row(base: &str, q: &QueueStats, rates: &[f64]) -> String {
    let name = escape(&q.queue);
    let link = url_encode(&q.queue);
    let leased = q.partitions.iter().filter(|p| p.lease_held).count();
    let rate = rates.last().copied().unwrap_or(0.0);
    let blocked = if q.blocked_partitions > 0 {
        format!("<span class=\"bad\">{}</span>", q.blocked_partitions)
    } else {
        "0".to_owned()
    };
    let pending = q.dead_letters.pending;
    let dead = if pending > 0 {
        format!(
            "<a class=\"bad\" href=\"{b}/dead-letters?queue={link}&amp;status=pending\">{pending}</a>",
            b = escape(base)
        )
    } else {
        "0".to_owned()
    };
    format!(
        "<tr data-queue=\"{name}\"><td><a href=\"{b}/partitions?queue={link}\">{name}</a></td>\
<td class=\"num\" data-field=\"backlog\">{backlog}</td>\
<td class=\"num\" data-field=\"incoming\">{incoming}</td>\
<td class=\"num\" data-field=\"unprocessed\">{unprocessed}</td>\
<td class=\"num\" data-field=\"oldest\">{oldest}</td>\
<td class=\"num\" data-field=\"partitions\">{parts}</td>\
<td class=\"num\" data-field=\"leased\">{leased}</td>\
<td class=\"num\" data-field=\"blocked\">{blocked}</td>\
<td class=\"num\" data-field=\"dead\">{dead}</td>\
<td class=\"num\" data-field=\"rate\">{rate:.1}/s</td><td>{chart}</td></tr>",
        b = escape(base),
        backlog = q.incoming + q.unprocessed,
        incoming = q.incoming,
        unprocessed = q.unprocessed,
        oldest = q.oldest_unprocessed_age_ms.map_or("-".to_owned(), age),
        parts = q.partitions.len(),
        chart = chart(rates),
    )
}

/// The queues page: backlog, oldest age, partition states, throughput.
pub(crate) fn queues(base: &str, stats: &OutboxStats, rates: impl Fn(&str) -> Vec<f64>) -> String {
    let mut body = String::from(
        "<p><label><input type=\"checkbox\" id=\"auto-refresh\"> refresh every 5 s</label> \
<span class=\"muted\">Throughput: messages settled per second, sampled every 10 s over the last 10 minutes.</span></p>",
    );
    if stats.queues.is_empty() {
        body.push_str("<p class=\"muted\">No queue has partition rows or dead letters yet.</p>");
    } else {
        body.push_str(
            "<table id=\"queues\"><tr><th>queue</th><th>backlog</th><th>incoming</th><th>sequenced</th>\
<th>oldest</th><th>partitions</th><th>leased</th><th>blocked</th><th>pending dead letters</th>\
<th>throughput</th><th>last minutes</th></tr>",
        );
        for q in &stats.queues {
            body.push_str(&queue_row(base, q, &rates(&q.queue)));
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<p class=\"muted\">Read at {} (database clock).</p>",
        utc(stats.now_ms)
    );
    layout(base, "Queues", &body)
}

/// The partitions page: owner, lease, cursor, last error, blocked.
pub(crate) fn partitions(base: &str, stats: &OutboxStats, queue: Option<&str>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<form method=\"get\"><label>queue <input name=\"queue\" value=\"{}\"></label> <button>show</button></form>",
        escape(queue.unwrap_or(""))
    );
    body.push_str(
        "<table id=\"partitions\"><tr><th>queue</th><th>partition</th><th>owner</th><th>lease</th>\
<th>cursor</th><th>next seq</th><th>sequenced</th><th>incoming</th><th>oldest</th>\
<th>attempts</th><th>blocked</th><th>last error</th></tr>",
    );
    for q in &stats.queues {
        for p in &q.partitions {
            let lease = match (p.lease_held, p.lease_until_ms) {
                (true, Some(until)) => format!(
                    "held, {} left",
                    age(u64::try_from(until - stats.now_ms).unwrap_or(0))
                ),
                (false, Some(_)) => "expired".to_owned(),
                _ => "-".to_owned(),
            };
            let blocked = if p.blocked_by_retry {
                match p.retry_at_ms {
                    Some(at) => format!("<span class=\"bad\">yes</span>, next try {}", utc(at)),
                    None => "<span class=\"bad\">yes</span>".to_owned(),
                }
            } else {
                "no".to_owned()
            };
            let _ = write!(
                body,
                "<tr data-queue=\"{qn}\" data-partition=\"{pn}\"><td>{qn}</td><td class=\"num\">{pn}</td><td>{owner}</td><td>{lease}</td>\
<td class=\"num\">{cursor}</td><td class=\"num\">{next}</td><td class=\"num\">{unprocessed}</td>\
<td class=\"num\">{incoming}</td><td class=\"num\">{oldest}</td><td class=\"num\">{attempts}</td>\
<td>{blocked}</td><td>{error}</td></tr>",
                qn = escape(&q.queue),
                pn = p.partition,
                owner = escape(p.lease_owner.as_deref().unwrap_or("-")),
                cursor = p.processed_seq,
                next = p.next_seq,
                unprocessed = p.unprocessed,
                incoming = p.incoming,
                oldest = p.oldest_unprocessed_age_ms.map_or("-".to_owned(), age),
                attempts = p.attempts,
                error = escape(p.last_error.as_deref().unwrap_or("")),
            );
        }
    }
    body.push_str("</table>");
    layout(base, "Partitions", &body)
}

/// The dead-letter list, with its filter.
pub(crate) fn dead_letters(
    base: &str,
    list: &DeadLetterList,
    queue: Option<&str>,
    status: Option<DeadLetterStatus>,
) -> String {
    let b = escape(base);
    let mut body = String::new();
    let _ = write!(
        body,
        "<form method=\"get\" id=\"filter\"><label>queue <input name=\"queue\" value=\"{}\"></label> \
<label>status <select name=\"status\"><option value=\"\">any</option>",
        escape(queue.unwrap_or(""))
    );
    for s in STATUSES {
        let selected = if status == Some(s) { " selected" } else { "" };
        let _ = write!(body, "<option{selected}>{}</option>", s.as_str());
    }
    body.push_str("</select></label> <button>filter</button></form>");
    body.push_str(
        "<table id=\"dead-letters\"><tr><th>id</th><th>queue</th><th>partition</th><th>seq</th>\
<th>type</th><th>status</th><th>attempts</th><th>failed at</th><th>last error</th></tr>",
    );
    for l in &list.letters {
        let _ = write!(
            body,
            "<tr data-id=\"{id}\"><td><a href=\"{b}/dead-letters/{id}\">{id}</a></td><td>{queue}</td>\
<td class=\"num\">{partition}</td><td class=\"num\">{seq}</td><td>{ty}</td><td>{status}</td>\
<td class=\"num\">{attempts}</td><td>{failed}</td><td>{error}</td></tr>",
            id = l.id,
            queue = escape(&l.queue),
            partition = l.partition,
            seq = l.seq,
            ty = escape(&l.payload_type),
            status = l.status.as_str(),
            attempts = l.attempts,
            failed = utc(l.failed_at_ms),
            error = escape(&l.last_error),
        );
    }
    body.push_str("</table>");
    if list.letters.is_empty() {
        body.push_str("<p class=\"muted\">No dead letter matches.</p>");
    }
    if let Some(next) = list.next_cursor {
        let mut query = format!("cursor={next}");
        if let Some(q) = queue {
            let _ = write!(query, "&amp;queue={}", url_encode(q));
        }
        if let Some(s) = status {
            let _ = write!(query, "&amp;status={}", s.as_str());
        }
        let _ = write!(
            body,
            "<p><a href=\"{b}/dead-letters?{query}\">next page</a></p>"
        );
    }
    layout(base, "Dead letters", &body)
}

/// One dead letter in full; with `csrf`, its action forms.
pub(crate) fn dead_letter(
    base: &str,
    l: &DeadLetter,
    csrf: Option<&str>,
    done: Option<&str>,
) -> String {
    let b = escape(base);
    let mut body = String::new();
    let notice = match done {
        Some("requeued") => Some(
            "Requeued: the message is back in its queue, after the partition's waiting messages.",
        ),
        Some("discarded") => Some("Discarded."),
        Some("nothing") => Some("Nothing done: the letter is no longer pending."),
        _ => None,
    };
    if let Some(notice) = notice {
        let _ = write!(body, "<div class=\"notice\" id=\"notice\">{notice}</div>");
    }
    let _ = write!(
        body,
        "<table id=\"letter\"><tr><th>id</th><td>{id}</td></tr><tr><th>queue</th><td>{queue}</td></tr>\
<tr><th>partition</th><td>{partition}</td></tr><tr><th>seq</th><td>{seq}</td></tr>\
<tr><th>message id</th><td>{mid}</td></tr><tr><th>payload type</th><td>{ty}</td></tr>\
<tr><th>status</th><td id=\"status\">{status}</td></tr><tr><th>attempts</th><td>{attempts}</td></tr>\
<tr><th>enqueued</th><td>{created}</td></tr><tr><th>failed</th><td>{failed}</td></tr>\
<tr><th>last error</th><td>{error}</td></tr></table>",
        id = l.id,
        queue = escape(&l.queue),
        partition = l.partition,
        seq = l.seq,
        mid = l.message_id,
        ty = escape(&l.payload_type),
        status = l.status.as_str(),
        attempts = l.attempts,
        created = utc(l.created_at_ms),
        failed = utc(l.failed_at_ms),
        error = escape(&l.last_error),
    );
    match csrf {
        Some(token) if l.status == DeadLetterStatus::Pending => {
            for (action, label, confirm) in [
                (
                    "requeue",
                    "Requeue",
                    "Put this message back into its queue?",
                ),
                ("discard", "Discard", "Discard this dead letter for good?"),
            ] {
                let _ = write!(
                    body,
                    "<form class=\"inline\" method=\"post\" action=\"{b}/dead-letters/{id}/{action}\" data-confirm=\"{confirm}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{token}\"><button id=\"{action}\">{label}</button></form> ",
                    id = l.id,
                    token = escape(token),
                );
            }
        }
        Some(_) => body
            .push_str("<p class=\"muted\">Only pending letters can be requeued or discarded.</p>"),
        None => body.push_str("<p class=\"muted\">Read-only console.</p>"),
    }
    body.push_str("<h2>Headers</h2><table id=\"headers\">");
    for (name, value) in &l.headers {
        let _ = write!(
            body,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    body.push_str("</table>");
    let shown = payload::show(&l.payload);
    let _ = write!(
        body,
        "<h2>Payload <span class=\"muted\">({} bytes, shown as {})</span></h2><pre id=\"payload\" data-kind=\"{}\">{}</pre>",
        l.payload.len(),
        shown.kind,
        shown.kind,
        escape(&shown.body)
    );
    if shown.cut > 0 {
        let _ = write!(
            body,
            "<p class=\"muted\">{} more bytes not shown (the console shows {} at most).</p>",
            shown.cut,
            payload::PAYLOAD_CAP
        );
    }
    layout(base, &format!("Dead letter {}", l.id), &body)
}

/// The instances page.
pub(crate) fn instances(base: &str, instances: &[InstanceInfo]) -> String {
    let mut body = String::from(
        "<table id=\"instances\"><tr><th>instance</th><th>alive</th><th>heartbeat until</th></tr>",
    );
    for i in instances {
        let alive = if i.alive {
            "<span class=\"ok\">yes</span>"
        } else {
            "<span class=\"bad\">no</span>"
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{alive}</td><td>{}</td></tr>",
            escape(&i.name),
            utc(i.heartbeat_until_ms)
        );
    }
    body.push_str("</table>");
    if instances.is_empty() {
        body.push_str("<p class=\"muted\">No instance runs workers on these tables.</p>");
    }
    layout(base, "Instances", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_256_000_000), "2026-12-03 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03 UTC");
    }

    #[test]
    fn ages_pick_a_readable_unit() {
        assert_eq!(age(950), "950 ms");
        assert_eq!(age(12_345), "12.3 s");
        assert_eq!(age(240_000), "4 min");
        assert_eq!(age(9_000_000), "2.5 h");
    }

    #[test]
    fn titles_and_errors_are_escaped() {
        let page = error("/o", "<script>alert(1)</script>");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<script>alert"));
    }
}
