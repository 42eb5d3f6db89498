//! Reasons and error texts as the outbox stores them: printable and bounded.
//!
//! A handler's reject or retry reason, or a driver's error text, can hold
//! anything: a NUL byte (which PostgreSQL refuses in text, so the outcome
//! could never be written), terminal escapes (which would reach an
//! operator's terminal through the CLI), or megabytes. Every place that
//! writes such a text to a table passes it through [`stored_reason`].

use std::error::Error;

/// Longest reason stored, in bytes of UTF-8, marker included.
pub(crate) const MAX_REASON_BYTES: usize = 4096;

/// What replaces a control character.
const REPLACEMENT: char = '\u{fffd}';

/// `text` with every control character except newline and tab replaced by
/// U+FFFD, cut at a character boundary to at most [`MAX_REASON_BYTES`]
/// bytes, with a marker saying how long it was.
pub(crate) fn stored_reason(text: &str) -> String {
    let clean = |c: char| {
        if c.is_control() && c != '\n' && c != '\t' {
            REPLACEMENT
        } else {
            c
        }
    };
    if text.len() <= MAX_REASON_BYTES && !text.chars().any(|c| clean(c) != c) {
        return text.to_owned();
    }
    let mut out: String = text.chars().map(clean).collect();
    if out.len() > MAX_REASON_BYTES {
        let marker = format!(" … (truncated from {} bytes)", text.len());
        let mut cut = MAX_REASON_BYTES.saturating_sub(marker.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&marker);
    }
    out
}

/// An error and its sources, joined with `": "`, as one line to store.
pub(crate) fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_kept_as_is() {
        let text = "bad input: \"x\"\n\tat line 2 — é ✓";
        assert_eq!(stored_reason(text), text);
    }

    #[test]
    fn control_characters_are_replaced() {
        let stored = stored_reason("a\0b\u{1b}[31mc\r\nd\u{7f}e\u{9b}f");
        assert_eq!(
            stored,
            "a\u{fffd}b\u{fffd}[31mc\u{fffd}\nd\u{fffd}e\u{fffd}f"
        );
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary_with_a_marker() {
        let text = "é".repeat(5000);
        let stored = stored_reason(&text);
        assert!(stored.len() <= MAX_REASON_BYTES, "{}", stored.len());
        assert!(stored.starts_with("éé"));
        assert!(stored.ends_with("(truncated from 10000 bytes)"), "{stored}");
        let exact = "x".repeat(MAX_REASON_BYTES);
        assert_eq!(stored_reason(&exact), exact);
        let over = "x".repeat(MAX_REASON_BYTES + 1);
        assert!(stored_reason(&over).len() <= MAX_REASON_BYTES);
    }

    #[test]
    fn error_chain_joins_sources() {
        let inner = std::io::Error::other("disk full");
        let outer = crate::error::OutboxError::Json(serde_json::Error::io(inner));
        let chain = error_chain(&outer);
        assert!(
            chain.starts_with("json payload could not be encoded or decoded: "),
            "{chain}"
        );
        assert!(chain.contains("disk full"), "{chain}");
    }
}
