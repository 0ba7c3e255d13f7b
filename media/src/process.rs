//! Running ffmpeg/ffprobe: an argument vector (never a shell), stdout collected up to a
//! bound, stderr kept for the error message, a timeout, and the child killed whenever the
//! caller stops waiting (timeout, bound, or a cancelled task dropping the future).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Stderr kept per run. ffmpeg repeats per-packet errors; the first lines say what is wrong.
const STDERR_KEEP: u64 = 64 * 1024;

#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

#[derive(Debug)]
pub(crate) enum ToolError {
    /// The binary could not be started (missing, not executable).
    Spawn(String),
    TimedOut(Duration),
    /// Stdout passed the bound; the child was killed.
    TooMuchOutput {
        limit: u64,
    },
    Io(String),
}

/// Runs `program args…`, collecting at most `stdout_limit` bytes of stdout.
/// `stdout_hint` pre-sizes the buffer so a large decode is not copied while it grows.
pub(crate) async fn run_tool(
    program: &Path,
    args: &[String],
    timeout: Duration,
    stdout_limit: u64,
    stdout_hint: usize,
) -> Result<ToolOutput, ToolError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ToolError::Spawn(format!("{}: {e}", program.display())))?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ToolError::Io("child pipes missing".into()));
    };

    // Stderr is read on its own task: if stdout passes its bound we stop reading and return at
    // once (the child is killed on drop), which would deadlock a joint read of both pipes.
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        (&mut stderr)
            .take(STDERR_KEEP)
            .read_to_end(&mut buf)
            .await?;
        // Keep draining so a chatty child never blocks on a full stderr pipe.
        tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await?;
        Ok::<_, std::io::Error>(buf)
    });
    let work = async {
        let mut out = Vec::with_capacity(stdout_hint.min(stdout_limit as usize));
        (&mut stdout)
            .take(stdout_limit + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| ToolError::Io(e.to_string()))?;
        if out.len() as u64 > stdout_limit {
            return Err(ToolError::TooMuchOutput {
                limit: stdout_limit,
            });
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ToolError::Io(e.to_string()))?;
        let err = match stderr_task.await {
            Ok(Ok(err)) => err,
            Ok(Err(e)) => return Err(ToolError::Io(e.to_string())),
            Err(e) => return Err(ToolError::Io(e.to_string())),
        };
        Ok(ToolOutput {
            success: status.success(),
            stdout: out,
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ToolError::TimedOut(timeout)),
    }
}

/// The useful part of ffmpeg's stderr for a message: its first distinct lines, shortened.
pub(crate) fn stderr_summary(stderr: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    // "[mov,mp4,… @ 0x55d…] moov atom not found": the context and pointer say nothing to a user.
    fn strip(l: &str) -> &str {
        match (l.starts_with('['), l.find("] ")) {
            (true, Some(end)) if l[..end].contains(" @ 0x") => l[end + 2..].trim(),
            _ => l.trim(),
        }
    }
    for line in stderr.lines().map(strip).filter(|l| !l.is_empty()) {
        if !lines.contains(&line) {
            lines.push(line);
        }
        if lines.len() == 3 {
            break;
        }
    }
    let mut text = lines.join("; ");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    if text.is_empty() {
        "no error output".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::stderr_summary;

    #[test]
    fn summary_drops_ffmpeg_context_prefixes_and_repeats() {
        let err = "[mov,mp4,m4a @ 0x55d1] moov atom not found\n[h264 @ 0x1] bad\n[h264 @ 0x2] bad\nx.mp4: Invalid data\n";
        assert_eq!(
            stderr_summary(err),
            "moov atom not found; bad; x.mp4: Invalid data"
        );
        assert_eq!(stderr_summary(""), "no error output");
    }
}
