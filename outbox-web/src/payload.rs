//! How a payload is shown: as text when it is readable, else as a hex dump,
//! and never more than a cap.

/// Bytes of a payload the console shows at most.
pub const PAYLOAD_CAP: usize = 64 * 1024;

/// A payload ready to show (not yet escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    /// `text` or `hex`.
    pub(crate) kind: &'static str,
    pub(crate) body: String,
    /// Bytes left out past the cap.
    pub(crate) cut: usize,
}

/// Text if the first [`PAYLOAD_CAP`] bytes are UTF-8 without control
/// characters other than whitespace; a hex dump otherwise.
pub(crate) fn show(payload: &[u8]) -> Shown {
    let end = payload.len().min(PAYLOAD_CAP);
    let head = &payload[..end];
    let cut = payload.len() - end;
    // A cap that splits a character leaves a valid prefix.
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        Err(e) if cut > 0 && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            Shown {
                kind: "text",
                body: text.to_owned(),
                cut,
            }
        }
        _ => Shown {
            kind: "hex",
            body: hex_dump(head),
            cut,
        },
    }
}

/// Sixteen bytes a line: offset, hex, and the printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", line * 16));
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => out.push_str(&format!("{b:02x} ")),
                None => out.push_str("   "),
            }
        }
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_payloads_are_text() {
        let shown = show(b"{\"id\": 1}\n");
        assert_eq!(
            (shown.kind, shown.body.as_str(), shown.cut),
            ("text", "{\"id\": 1}\n", 0)
        );
    }

    #[test]
    fn binary_payloads_are_hex() {
        let shown = show(&[0, 1, b'a', 0xff]);
        assert_eq!(shown.kind, "hex");
        assert_eq!(
            shown.body,
            "00000000  00 01 61 ff                                      ..a.\n"
        );
    }

    #[test]
    fn large_payloads_are_cut_at_the_cap() {
        let shown = show(&vec![b'x'; PAYLOAD_CAP + 10]);
        assert_eq!(
            (shown.kind, shown.body.len(), shown.cut),
            ("text", PAYLOAD_CAP, 10)
        );
        let mut split = vec![b'x'; PAYLOAD_CAP - 1];
        split.extend("é".as_bytes());
        let shown = show(&split);
        assert_eq!(
            (shown.kind, shown.body.len(), shown.cut),
            ("text", PAYLOAD_CAP - 1, 1)
        );
    }
}
