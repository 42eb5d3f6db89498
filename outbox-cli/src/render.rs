//! Output: aligned tables for people, JSON for scripts.

use outbox_core::{
    DeadLetter, DeadLetterCounts, DeadLetterList, DeadLetterSummary, OutboxStats, PartitionStats,
    Requeued,
};
use serde_json::{Value, json};

use crate::filter::{format_age, format_time};

/// A table printed with left-aligned, space-separated columns.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; its cells are escaped for the terminal (they hold data).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|cell| one_line(cell)).collect());
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, trailing spaces trimmed.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                out.push_str(&" ".repeat(pad + 2));
            }
            out.trim_end().to_owned()
        };
        let mut out = line(self.header.clone());
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// Whether a character must not reach a terminal as it is: control
/// characters (ESC starts a terminal escape, CR overwrites the line, BEL,
/// DEL, the C1 codes such as CSI) and the bidirectional controls that make
/// text show in another order than it is stored.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: &[char]) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if keep.contains(&c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Text from the database (or a driver's error) made safe for a terminal,
/// on one line: control characters written as `\n`, `\r`, `\t` or `\u{1b}`.
pub fn one_line(text: &str) -> String {
    escape(text, &[])
}

/// Like [`one_line`] but keeping line breaks and tabs, for a payload shown
/// on lines of its own.
pub fn multi_line(text: &str) -> String {
    escape(text, &['\n', '\t'])
}

/// `1 dead letter`, `2 dead letters`.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn dash() -> String {
    "-".to_owned()
}

fn age(ms: Option<u64>) -> String {
    ms.map_or_else(dash, format_age)
}

/// Shortens to `max` characters, on one line.
fn clip(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

fn counts_json(c: &DeadLetterCounts) -> Value {
    json!({
        "pending": c.pending,
        "reprocessing": c.reprocessing,
        "resolved": c.resolved,
        "discarded": c.discarded,
    })
}

fn partition_json(p: &PartitionStats) -> Value {
    json!({
        "partition": p.partition,
        "incoming": p.incoming,
        "unprocessed": p.unprocessed,
        "oldest_unprocessed_age_ms": p.oldest_unprocessed_age_ms,
        "processed_seq": p.processed_seq,
        "next_seq": p.next_seq,
        "lease_owner": p.lease_owner,
        "lease_until_ms": p.lease_until_ms,
        "lease_held": p.lease_held,
        "attempts": p.attempts,
        "last_error": p.last_error,
        "retry_at_ms": p.retry_at_ms,
        "blocked_by_retry": p.blocked_by_retry,
        "dead_letters": counts_json(&p.dead_letters),
    })
}

/// Stats as JSON: every queue with every partition.
pub fn stats_json(stats: &OutboxStats) -> Value {
    let queues: Vec<Value> = stats
        .queues
        .iter()
        .map(|q| {
            json!({
                "queue": q.queue,
                "partitions": q.partitions.iter().map(partition_json).collect::<Vec<_>>(),
                "incoming": q.incoming,
                "unprocessed": q.unprocessed,
                "oldest_unprocessed_age_ms": q.oldest_unprocessed_age_ms,
                "blocked_partitions": q.blocked_partitions,
                "dead_letters": counts_json(&q.dead_letters),
            })
        })
        .collect();
    json!({ "now_ms": stats.now_ms, "queues": queues })
}

fn is_idle(p: &PartitionStats) -> bool {
    p.incoming == 0
        && p.unprocessed == 0
        && !p.blocked_by_retry
        && !p.lease_held
        && p.dead_letters.open() == 0
}

/// Stats as tables: one line per queue, then the partitions that are not
/// idle (all of them with `all`).
pub fn stats_text(stats: &OutboxStats, all: bool) -> String {
    if stats.queues.is_empty() {
        return "no queues yet: the tables are empty".to_owned();
    }
    let mut queues = Table::new(&[
        "QUEUE",
        "PARTITIONS",
        "INCOMING",
        "UNPROCESSED",
        "OLDEST",
        "BLOCKED",
        "DEAD PENDING",
        "REPROCESSING",
        "RESOLVED",
        "DISCARDED",
    ]);
    let mut partitions = Table::new(&[
        "QUEUE",
        "PART",
        "INCOMING",
        "UNPROCESSED",
        "OLDEST",
        "CURSOR",
        "NEXT SEQ",
        "LEASE",
        "DEAD OPEN",
        "RETRY",
    ]);
    let mut idle = 0;
    for q in &stats.queues {
        let d = &q.dead_letters;
        queues.row(vec![
            q.queue.clone(),
            q.partitions.len().to_string(),
            q.incoming.to_string(),
            q.unprocessed.to_string(),
            age(q.oldest_unprocessed_age_ms),
            q.blocked_partitions.to_string(),
            d.pending.to_string(),
            d.reprocessing.to_string(),
            d.resolved.to_string(),
            d.discarded.to_string(),
        ]);
        for p in &q.partitions {
            if !all && is_idle(p) {
                idle += 1;
                continue;
            }
            let lease = match (&p.lease_owner, p.lease_until_ms) {
                (Some(owner), Some(until)) if p.lease_held => {
                    let left = u64::try_from(until - stats.now_ms).unwrap_or(0);
                    format!("{owner} ({} left)", format_age(left))
                }
                _ => dash(),
            };
            let retry = if p.blocked_by_retry {
                let next = match p.retry_at_ms {
                    Some(at) if at > stats.now_ms => {
                        format!(
                            "next in {}",
                            format_age(u64::try_from(at - stats.now_ms).unwrap_or(0))
                        )
                    }
                    _ => "due now".to_owned(),
                };
                let error = p.last_error.as_deref().unwrap_or("");
                format!(
                    "{}, {next}: {}",
                    plural(p.attempts, "attempt"),
                    clip(error, 60)
                )
            } else {
                dash()
            };
            partitions.row(vec![
                q.queue.clone(),
                p.partition.to_string(),
                p.incoming.to_string(),
                p.unprocessed.to_string(),
                age(p.oldest_unprocessed_age_ms),
                p.processed_seq.to_string(),
                p.next_seq.to_string(),
                lease,
                p.dead_letters.open().to_string(),
                retry,
            ]);
        }
    }
    let mut out = queues.render();
    out.push_str("\n\n");
    if partitions.is_empty() {
        out.push_str("every partition is idle");
    } else {
        out.push_str(&partitions.render());
    }
    if idle > 0 {
        out.push_str(&format!(
            "\n({} not shown; --all shows them)",
            plural(idle as u64, "idle partition")
        ));
    }
    out
}

fn summary_json(l: &DeadLetterSummary) -> Value {
    json!({
        "id": l.id,
        "queue": l.queue,
        "partition": l.partition,
        "seq": l.seq,
        "message_id": l.message_id.to_string(),
        "payload_type": l.payload_type,
        "status": l.status.as_str(),
        "attempts": l.attempts,
        "last_error": l.last_error,
        "created_at_ms": l.created_at_ms,
        "failed_at_ms": l.failed_at_ms,
        "deadline_ms": l.deadline_ms,
        "completed_at_ms": l.completed_at_ms,
    })
}

/// A page of letters as JSON.
pub fn list_json(list: &DeadLetterList) -> Value {
    json!({
        "letters": list.letters.iter().map(summary_json).collect::<Vec<_>>(),
        "next_cursor": list.next_cursor,
    })
}

/// A page of letters as a table, with the command for the next page.
pub fn list_text(list: &DeadLetterList) -> String {
    if list.letters.is_empty() {
        return "no dead letters match".to_owned();
    }
    let mut table = Table::new(&[
        "ID",
        "QUEUE",
        "PART",
        "SEQ",
        "STATUS",
        "TYPE",
        "ATTEMPTS",
        "FAILED AT",
        "LAST ERROR",
    ]);
    for l in &list.letters {
        table.row(vec![
            l.id.to_string(),
            l.queue.clone(),
            l.partition.to_string(),
            l.seq.to_string(),
            l.status.to_string(),
            clip(&l.payload_type, 30),
            l.attempts.to_string(),
            format_time(l.failed_at_ms),
            clip(&l.last_error, 60),
        ]);
    }
    let mut out = table.render();
    if let Some(cursor) = list.next_cursor {
        out.push_str(&format!("\nmore: add --cursor {cursor} for the next page"));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One letter in full as JSON; the payload as text when it is UTF-8, and always as hex.
pub fn letter_json(l: &DeadLetter) -> Value {
    let mut value = summary_json(&l.summary());
    if let Value::Object(map) = &mut value {
        map.insert("headers".into(), json!(l.headers));
        map.insert(
            "payload_utf8".into(),
            json!(std::str::from_utf8(&l.payload).ok()),
        );
        map.insert("payload_hex".into(), json!(hex(&l.payload)));
    }
    value
}

/// One letter in full, one field per line; text from the database is
/// escaped for the terminal.
pub fn letter_text(l: &DeadLetter) -> String {
    let time = |ms: Option<i64>| ms.map_or_else(dash, format_time);
    let mut lines = vec![
        format!("id:            {}", l.id),
        format!("status:        {}", l.status),
        format!(
            "queue:         {} (partition {}, seq {})",
            one_line(&l.queue),
            l.partition,
            l.seq
        ),
        format!("message id:    {}", l.message_id),
        format!("payload type:  {}", one_line(&l.payload_type)),
        format!("enqueued at:   {}", format_time(l.created_at_ms)),
        format!("failed at:     {}", format_time(l.failed_at_ms)),
        format!("attempts:      {}", l.attempts),
        format!("last error:    {}", one_line(&l.last_error)),
        format!("claim until:   {}", time(l.deadline_ms)),
        format!("completed at:  {}", time(l.completed_at_ms)),
    ];
    if l.headers.is_empty() {
        lines.push("headers:       -".to_owned());
    } else {
        lines.push("headers:".to_owned());
        for (name, value) in &l.headers {
            lines.push(format!("  {}: {}", one_line(name), one_line(value)));
        }
    }
    match std::str::from_utf8(&l.payload) {
        Ok(text) => lines.push(format!(
            "payload ({} bytes):\n{}",
            l.payload.len(),
            multi_line(text)
        )),
        Err(_) => lines.push(format!(
            "payload ({} bytes, hex):\n{}",
            l.payload.len(),
            hex(&l.payload)
        )),
    }
    lines.join("\n")
}

/// Requeued letters as JSON.
pub fn requeued_json(done: &[Requeued]) -> Value {
    let letters: Vec<Value> = done
        .iter()
        .map(|r| {
            json!({
                "dead_letter_id": r.dead_letter_id,
                "queue": r.queue,
                "partition": r.partition,
                "message_id": r.message_id.to_string(),
            })
        })
        .collect();
    json!({ "requeued": letters.len(), "letters": letters })
}

/// Requeued letters as a table and a count.
pub fn requeued_text(done: &[Requeued]) -> String {
    if done.is_empty() {
        return "requeued 0 dead letters: no pending letter matches".to_owned();
    }
    let mut table = Table::new(&["ID", "QUEUE", "PART", "MESSAGE ID"]);
    for r in done {
        table.row(vec![
            r.dead_letter_id.to_string(),
            r.queue.clone(),
            r.partition.to_string(),
            r.message_id.to_string(),
        ]);
    }
    format!(
        "{}\nrequeued {}; each is delivered after the messages already in its partition",
        table.render(),
        plural(done.len() as u64, "dead letter")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x");
    }

    #[test]
    fn control_characters_are_escaped() {
        let hostile = "a\u{1b}[2Jb\rc\u{7}\u{9b}31m\u{202e}d\u{7f}\te\nf";
        assert_eq!(
            one_line(hostile),
            "a\\u{1b}[2Jb\\rc\\u{7}\\u{9b}31m\\u{202e}d\\u{7f}\\te\\nf"
        );
        assert_eq!(
            multi_line(hostile),
            "a\\u{1b}[2Jb\\rc\\u{7}\\u{9b}31m\\u{202e}d\\u{7f}\te\nf"
        );
        assert_eq!(one_line("plain \\ text, é"), "plain \\ text, é");
        let mut t = Table::new(&["A"]);
        t.row(vec!["x\u{1b}]0;title\u{7}".into()]);
        assert_eq!(t.render(), "A\nx\\u{1b}]0;title\\u{7}");
    }

    #[test]
    fn clip_keeps_one_short_line() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdefghij", 6), "abc...");
    }
}
