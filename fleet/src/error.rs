//! How the CLI fails: one line that says what to do, and an exit status.

use std::fmt;

/// Exit status when a `--wait` or `up` gives up waiting (the job keeps running).
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit status after Ctrl-C while following something (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// An error that carries its own exit status (the rest exit 1).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
    Exit {
        code,
        message: message.into(),
    }
    .into()
}

/// The status `main` exits with for `err`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Exit>().map_or(1, |e| e.code)
}

/// The innermost OS-level reason in an error chain ("connection refused", "timed out"),
/// which is what an operator can act on; falls back to the outermost message.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            };
        }
        last = e.to_string();
        cur = e.source();
    }
    last
}

/// `amqp://user:secret@host/` → `amqp://user:***@host/`, so URLs can go into messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_exit_errors_only() {
        assert_eq!(exit_code(&exit(64, "bad config")), 64);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }

    #[test]
    fn root_cause_names_a_refused_connection() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let wrapped = anyhow::Error::new(io).context("outer");
        assert_eq!(root_cause(wrapped.as_ref()), "connection refused");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
