//! `fleet submit`: build the job request, post it, and with `--wait` follow the job with a
//! progress bar until it is final, then print its result.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::JobRequest;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::{Api, JobStatus};
use crate::cli::SubmitArgs;
use crate::error::{EXIT_INTERRUPTED, EXIT_TIMEOUT, exit};
use crate::render;

const POLL: Duration = Duration::from_millis(500);
/// Consecutive failed polls tolerated (a dispatcher restart) before `--wait` gives up.
const MAX_POLL_FAILURES: u32 = 10;

/// A local path becomes absolute (the dispatcher and workers do not share our cwd); http(s)
/// URLs pass unchanged; any other scheme is refused here rather than by the dispatcher.
pub fn video_location(arg: &str, cwd: &Path) -> anyhow::Result<String> {
    let lower = arg.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(arg.to_string());
    }
    if arg.is_empty() {
        bail!("the video is empty: pass a local path or an http(s) URL");
    }
    if let Some((scheme, _)) = arg.split_once("://") {
        bail!("{arg}: `{scheme}://` is not supported: pass a local path or an http(s) URL");
    }
    let path = Path::new(arg);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8: rename the file", abs.display()))
}

/// The `POST /v1/jobs` body, built from the wire type so it cannot drift from the schema.
pub fn request(video: String, args: &SubmitArgs) -> JobRequest {
    JobRequest {
        v: None,
        video,
        analyzers: args.analyzers.clone(),
        idempotency_key: args.idempotency_key.clone(),
        metadata: args.metadata.clone(),
    }
}

pub async fn run(api: &Api, args: SubmitArgs) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let video = video_location(&args.video, &cwd)?;
    if !video.contains("://") && !Path::new(&video).exists() {
        eprintln!(
            "fleet: warning: {video} does not exist on this machine; the workers must see it at that path"
        );
    }
    let body = serde_json::to_value(request(video, &args))?;
    let submitted = api.submit(&body).await?;
    let id = submitted.job_id;
    if !args.wait {
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "job_id": id, "created": submitted.created })
            );
        } else {
            println!("{id}");
            if submitted.created {
                eprintln!(
                    "submitted job {id}; follow it with `fleet status {id}` or `fleet watch`"
                );
            } else {
                eprintln!("idempotency key already used: this is the existing job {id}");
            }
        }
        return Ok(());
    }
    if !args.json {
        let what = if submitted.created {
            "submitted job"
        } else {
            "idempotency key already used: following job"
        };
        eprintln!("{what} {id}");
    }
    let deadline = args
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t));
    let last = follow(api, &id, deadline, args.json).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&api.result_raw(&id).await?)?
        );
    } else {
        print!(
            "{}",
            render::result_text(&api.result(&id).await?, common::now_ms())
        );
    }
    if last.status == "cancelled" {
        return Err(exit(
            1,
            format!("job {id} was cancelled before it completed"),
        ));
    }
    Ok(())
}

/// Polls the job until it is final; draws a bar on a terminal, else prints each change.
async fn follow(
    api: &Api,
    id: &str,
    deadline: Option<Instant>,
    quiet: bool,
) -> anyhow::Result<JobStatus> {
    let tty = std::io::stderr().is_terminal();
    // Hidden until the first status is in, so it never shows a meaningless 0/0.
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:20}] {pos}/{len} analyzers · {elapsed} · {wide_msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix(id.chars().take(8).collect::<String>());
    let started = Instant::now();
    let mut failures = 0;
    let mut last_line = String::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        match api.status(id).await {
            Ok(st) => {
                failures = 0;
                bar.set_length(st.progress.total as u64);
                bar.set_position(st.progress.done as u64);
                let msg = render::progress_message(&st);
                if !quiet && !tty {
                    let line = format!(
                        "{}/{} analyzers · {msg}",
                        st.progress.done, st.progress.total
                    );
                    if line != last_line {
                        eprintln!(
                            "job {id}: {line} ({})",
                            render::duration_ms(started.elapsed().as_millis() as u64)
                        );
                        last_line = line;
                    }
                }
                bar.set_message(msg);
                if tty && !quiet && bar.is_hidden() {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(Duration::from_millis(120));
                }
                if st.is_final() {
                    bar.finish_and_clear();
                    return Ok(st);
                }
            }
            Err(e) if failures < MAX_POLL_FAILURES => {
                failures += 1;
                bar.set_message(format!("retrying: {e}"));
            }
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bar.abandon();
            return Err(exit(
                EXIT_TIMEOUT,
                format!(
                    "job {id} did not finish within {} — it keeps running; follow it with `fleet status {id}`",
                    render::duration_ms(started.elapsed().as_millis() as u64)
                ),
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut ctrl_c => {
                bar.abandon();
                return Err(exit(
                    EXIT_INTERRUPTED,
                    format!("stopped waiting; job {id} keeps running — follow it with `fleet status {id}`"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn relative_paths_become_absolute_and_urls_pass() {
        let cwd = Path::new("/data/in");
        assert_eq!(
            video_location("clips/a.mp4", cwd).unwrap(),
            "/data/in/clips/a.mp4"
        );
        assert_eq!(video_location("/abs/b.mp4", cwd).unwrap(), "/abs/b.mp4");
        assert_eq!(
            video_location("https://x.example/v.mp4", cwd).unwrap(),
            "https://x.example/v.mp4"
        );
        assert_eq!(
            video_location("HTTP://x.example/v", cwd).unwrap(),
            "HTTP://x.example/v"
        );
        assert!(
            video_location("s3://bucket/v.mp4", cwd)
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        assert!(video_location("", cwd).is_err());
    }

    #[test]
    fn the_request_carries_only_what_was_given() {
        let a =
            crate::cli::Args::try_parse_from(["fleet", "submit", "v.mp4", "--analyzers", "a,b"])
                .unwrap();
        let crate::cli::Command::Submit(s) = a.command else {
            panic!()
        };
        let body = serde_json::to_value(request("/v.mp4".into(), &s)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"video": "/v.mp4", "analyzers": ["a", "b"]})
        );
    }
}
