//! Text that came from outside, made safe to carry: bounded for headers and answers, escaped
//! for logs.

use std::fmt;

/// Longest reason put into a header (`x-fleet-reason`) or an error answer. RabbitMQ closes
/// the whole connection when a header frame passes its frame size (128 KiB), so a reason that
/// echoes a request must never grow with it.
pub const MAX_REASON_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// A reason for a header or an error answer: at most [`MAX_REASON_BYTES`].
pub fn reason(s: &str) -> String {
    bounded(s, MAX_REASON_BYTES)
}

/// Longest untrusted value written into one log field.
const LOG_KEEP: usize = 300;

/// Displays untrusted text for a log line: control characters (newlines that would forge
/// log lines, ANSI escapes that would repaint a terminal) escaped, cut to 300 characters.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == LOG_KEEP {
                return f.write_str("…");
            }
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        Ok(())
    }
}

pub fn escaped(s: &str) -> Escaped<'_> {
    Escaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_on_char_boundaries() {
        assert_eq!(reason("short"), "short");
        let r = reason(&"é".repeat(2000));
        assert!(
            r.len() <= MAX_REASON_BYTES && r.ends_with('…'),
            "{}",
            r.len()
        );
    }

    #[test]
    fn log_text_is_escaped() {
        let s = escaped("/v.mp4\n2026-01-01 INFO forged\u{1b}[31m").to_string();
        assert!(!s.contains('\n') && !s.contains('\u{1b}'), "{s}");
        assert!(s.contains("\\n") && s.contains("\\u{1b}"), "{s}");
        assert_eq!(escaped(&"a".repeat(1000)).to_string().chars().count(), 301);
    }
}
