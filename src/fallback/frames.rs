//! The pusher-js HTTP-fallback wire format (PROTOCOL.md §6): the open, message-array, heartbeat
//! and close frames of a receive response, and the JSON-array body of `xhr_send`. Pure, no I/O.

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Opens a session; sent once, first.
pub const OPEN: &str = "o\n";
/// Keeps a receive request (and the proxies on its way) alive.
pub const HEARTBEAT: &str = "h\n";

/// Appends `a[...]`: the frames as an array of JSON strings, one line.
pub fn push_messages<'a>(out: &mut String, frames: impl IntoIterator<Item = &'a Utf8Bytes>) {
    out.push_str("a[");
    for (i, f) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, f.as_str());
    }
    out.push_str("]\n");
}

/// Appends `c[code,"reason"]`, the session's close frame.
pub fn push_close(out: &mut String, code: u16, reason: &str) {
    out.push_str("c[");
    out.push_str(&code.to_string());
    out.push(',');
    push_json_string(out, reason);
    out.push_str("]\n");
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a `str` cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// The length of `s` as a browser counts `responseText` (UTF-16 code units): pusher-js reopens
/// its stream once that passes 256 KiB.
pub fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().map(char::len_utf16).sum()
    }
}

/// Why an `xhr_send` body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Not a JSON array of strings (400).
    Malformed,
    /// A message above the connection's message size limit (413; the session ends with 1009).
    TooBig,
}

/// Parses an `xhr_send` body: a JSON array of message strings (`[]` is a heartbeat). Each message
/// must fit `max_message_bytes`, the limit a WebSocket frame has.
pub fn parse_send(body: &[u8], max_message_bytes: usize) -> Result<Vec<String>, SendError> {
    let messages: Vec<String> = serde_json::from_slice(body).map_err(|_| SendError::Malformed)?;
    if messages.iter().any(|m| m.len() > max_message_bytes) {
        return Err(SendError::TooBig);
    }
    Ok(messages)
}

/// The largest `xhr_send` body read for a message limit: JSON escaping at most doubles a
/// Pusher message (quotes and backslashes), plus the array's brackets and quotes.
pub fn max_send_body(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(2).saturating_add(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_lines_of_json() {
        let mut out = String::new();
        let frames: Vec<Utf8Bytes> = vec![r#"{"event":"e","data":"\"x\""}"#.into(), "é".into()];
        push_messages(&mut out, &frames);
        push_close(&mut out, 4001, "Application \"x\" does not exist");
        assert_eq!(
            out,
            "a[\"{\\\"event\\\":\\\"e\\\",\\\"data\\\":\\\"\\\\\\\"x\\\\\\\"\\\"}\",\"é\"]\n\
             c[4001,\"Application \\\"x\\\" does not exist\"]\n"
        );
        let line = out.lines().next().unwrap_or_default();
        let back: Vec<String> = serde_json::from_str(&line[1..]).unwrap_or_default();
        assert_eq!(back, ["{\"event\":\"e\",\"data\":\"\\\"x\\\"\"}", "é"]);
    }

    #[test]
    fn send_bodies() {
        assert_eq!(parse_send(b"[]", 10), Ok(vec![]));
        assert_eq!(
            parse_send(br#"["{\"event\":\"pusher:ping\"}"]"#, 100),
            Ok(vec![r#"{"event":"pusher:ping"}"#.to_string()])
        );
        assert_eq!(parse_send(b"", 10), Err(SendError::Malformed));
        assert_eq!(parse_send(b"{}", 10), Err(SendError::Malformed));
        assert_eq!(parse_send(b"[1]", 10), Err(SendError::Malformed));
        assert_eq!(parse_send(br#"["abcdef"]"#, 5), Err(SendError::TooBig));
    }

    #[test]
    fn browser_length() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é😀"), 3);
    }
}
