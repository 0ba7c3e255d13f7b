//! The one grammar of every id that names Redis keys or AMQP messages: job ids (the AMQP
//! `message_id`), idempotency keys, client names. Checked wherever an id comes in (HTTP
//! paths and bodies, AMQP messages, the CLI).
//!
//! `:` is the Redis key separator and `/` the task message-id separator, so neither may
//! appear: an id `<other job>:results` would otherwise alias another job's keys.

/// Longest id: a UUID is 36 characters; 128 leaves room for callers' own schemes.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` is 1..=128 ASCII letters, digits, `-`, `_` or `.`, and not `.` or `..`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// [`is_valid_id`] with a message naming `what` and the rule. The id is quoted only when it
/// is short, so an error never echoes unbounded input.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if is_valid_id(id) {
        return Ok(());
    }
    let shown = if id.len() <= MAX_ID_LEN {
        format!(" {id:?}")
    } else {
        format!(" ({} bytes)", id.len())
    };
    Err(format!(
        "{what}{shown} is not a valid id: use 1..={MAX_ID_LEN} ASCII letters, digits, '-', '_' or '.'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        for ok in [
            "3f2a9e00-0000-4000-8000-000000000001",
            "scrape-42",
            "a.b_c",
            "A",
        ] {
            assert!(is_valid_id(ok), "{ok}");
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in [
            "",
            "a:b",
            "job:results",
            "a/b",
            "a b",
            "é",
            ".",
            "..",
            "a\n",
            &long,
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
        let e = check_id("job id", &"y".repeat(10_000)).unwrap_err();
        assert!(e.len() < 200 && e.contains("10000 bytes"), "{e}");
        assert!(check_id("job id", "a:b").unwrap_err().contains("\"a:b\""));
    }
}
