//! Running ffmpeg/ffprobe: an argument vector (never a shell), under `prlimit` memory and
//! CPU limits, outputs collected up to a bound each (stdout, or several Unix sockets for a
//! decode with several outputs), stderr kept for the error message, a timeout, and the child
//! killed whenever the caller stops waiting (timeout, bound, or a cancelled task dropping the
//! future).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::config::MediaConfig;

/// Stderr kept per run. ffmpeg repeats per-packet errors; the first lines say what is wrong.
const STDERR_KEEP: u64 = 64 * 1024;

/// After the child exits, how long outputs still being read may take: what ffmpeg wrote
/// before it exited is already in the socket buffers.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub success: bool,
    /// The signal that ended the child (SIGXCPU when it hit its CPU limit).
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Process limits for one run of ffmpeg/ffprobe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub memory_bytes: u64,
    pub cpu_secs: u64,
}

impl Limits {
    pub fn of(cfg: &MediaConfig) -> Self {
        Limits {
            memory_bytes: cfg.ffmpeg_memory_bytes,
            cpu_secs: cfg.ffmpeg_cpu_secs,
        }
    }
}

/// `prlimit` from util-linux, found once in `PATH`. It sets the limits on itself and execs
/// the tool, which keeps this crate free of `unsafe` (no `pre_exec`).
fn prlimit() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let found = std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("prlimit"))
                    .find(|p| p.is_file())
            });
            if found.is_none() {
                tracing::warn!(
                    "prlimit (util-linux) not found: ffmpeg/ffprobe run without memory and CPU limits"
                );
            }
            found
        })
        .as_deref()
}

/// The command for `program args…` under `limits`.
fn command(program: &Path, args: &[String], limits: Limits) -> Command {
    let wanted = limits.memory_bytes > 0 || limits.cpu_secs > 0;
    let mut cmd = match prlimit().filter(|_| wanted) {
        Some(prlimit) => {
            let mut c = Command::new(prlimit);
            if limits.memory_bytes > 0 {
                c.arg(format!("--data={}", limits.memory_bytes));
            }
            if limits.cpu_secs > 0 {
                c.arg(format!("--cpu={}", limits.cpu_secs));
            }
            c.arg("--").arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn spawn(mut cmd: Command, program: &Path) -> Result<Child, ToolError> {
    cmd.spawn()
        .map_err(|e| ToolError::Spawn(format!("{}: {e}", program.display())))
}

fn signal_of(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Reads stderr on its own task, keeping the first [`STDERR_KEEP`] bytes and draining the
/// rest so a chatty child never blocks on a full pipe.
fn read_stderr(
    mut stderr: tokio::process::ChildStderr,
) -> tokio::task::JoinHandle<std::io::Result<Vec<u8>>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        (&mut stderr)
            .take(STDERR_KEEP)
            .read_to_end(&mut buf)
            .await?;
        tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await?;
        Ok(buf)
    })
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

/// Runs `program args…` under `limits`, collecting at most `stdout_limit` bytes of stdout.
/// `stdout_hint` pre-sizes the buffer so a large decode is not copied while it grows.
pub(crate) async fn run_tool(
    program: &Path,
    args: &[String],
    limits: Limits,
    timeout: Duration,
    stdout_limit: u64,
    stdout_hint: usize,
) -> Result<ToolOutput, ToolError> {
    let mut cmd = command(program, args, limits);
    cmd.stdout(Stdio::piped());
    let mut child = spawn(cmd, program)?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ToolError::Io("child pipes missing".into()));
    };
    // Stderr is read on its own task: if stdout passes its bound we stop reading and return at
    // once (the child is killed on drop), which would deadlock a joint read of both pipes.
    let stderr_task = read_stderr(stderr);
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
        let err = join_stderr(stderr_task).await?;
        Ok(ToolOutput {
            success: status.success(),
            signal: signal_of(&status),
            stdout: out,
            stderr: err,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ToolError::TimedOut(timeout)),
    }
}

async fn join_stderr(
    task: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>,
) -> Result<String, ToolError> {
    match task.await {
        Ok(Ok(err)) => Ok(String::from_utf8_lossy(&err).into_owned()),
        Ok(Err(e)) => Err(ToolError::Io(e.to_string())),
        Err(e) => Err(ToolError::Io(e.to_string())),
    }
}

/// One output of [`run_with_sockets`]: a listening socket the tool writes to, and the most
/// bytes taken from it.
pub(crate) struct SocketOutput {
    pub listener: UnixListener,
    pub limit: u64,
}

/// What [`run_with_sockets`] collected: the tool's status and stderr, and each output's bytes
/// (empty for an output the tool never connected to).
#[derive(Debug)]
pub(crate) struct SocketRun {
    pub success: bool,
    pub signal: Option<i32>,
    pub stderr: String,
    pub outputs: Vec<Vec<u8>>,
}

/// Runs a tool that writes several outputs, each to its own Unix socket (ffmpeg's `unix:`
/// output protocol). All outputs are read at once: ffmpeg writes them in turn, and a socket
/// left unread would stall the others. An output past its bound stops the run.
pub(crate) async fn run_with_sockets(
    program: &Path,
    args: &[String],
    limits: Limits,
    timeout: Duration,
    outputs: Vec<SocketOutput>,
) -> Result<SocketRun, ToolError> {
    let n = outputs.len();
    let mut readers = JoinSet::new();
    for (i, out) in outputs.into_iter().enumerate() {
        readers.spawn(async move {
            let (mut sock, _) = out.listener.accept().await?;
            let mut buf = Vec::new();
            (&mut sock)
                .take(out.limit + 1)
                .read_to_end(&mut buf)
                .await?;
            Ok::<_, std::io::Error>((i, buf, out.limit))
        });
    }
    let mut cmd = command(program, args, limits);
    cmd.stdout(Stdio::null());
    let mut child = spawn(cmd, program)?;
    let Some(stderr) = child.stderr.take() else {
        return Err(ToolError::Io("child pipes missing".into()));
    };
    let stderr_task = read_stderr(stderr);
    let work = async {
        let mut collected: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut status = None;
        let mut drain_until = None;
        loop {
            if status.is_some() && readers.is_empty() {
                break;
            }
            let drained = async move {
                match drain_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(|e| ToolError::Io(e.to_string()))?);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                Some(joined) = readers.join_next(), if !readers.is_empty() => {
                    let (i, buf, limit) = joined
                        .map_err(|e| ToolError::Io(e.to_string()))?
                        .map_err(|e| ToolError::Io(e.to_string()))?;
                    if buf.len() as u64 > limit {
                        return Err(ToolError::TooMuchOutput { limit });
                    }
                    collected[i] = buf;
                }
                _ = drained => {
                    // Outputs the tool never connected to (it failed before opening them).
                    readers.abort_all();
                    break;
                }
            }
        }
        let status = status.expect("the loop ends only after the child exited");
        let err = join_stderr(stderr_task).await?;
        Ok(SocketRun {
            success: status.success(),
            signal: signal_of(&status),
            stderr: err,
            outputs: collected,
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
