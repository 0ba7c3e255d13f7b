//! `fleet status`, `fleet result`, `fleet cancel`: one job, by id.

use serde_json::Value;

use crate::api::{Api, JobResult, JobStatus};
use crate::cli::JobArgs;
use crate::render;

pub async fn status(api: &Api, args: JobArgs) -> anyhow::Result<()> {
    let body = api.status_raw(&args.job).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        let job: JobStatus = serde_json::from_value(body)?;
        print!("{}", render::status_text(&job, common::now_ms()));
    }
    Ok(())
}

pub async fn result(api: &Api, args: JobArgs) -> anyhow::Result<()> {
    let body = api.result_raw(&args.job).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        let r: JobResult = serde_json::from_value(body)?;
        print!("{}", render::result_text(&r, common::now_ms()));
        if !r.job.is_final() {
            eprintln!(
                "(job still {}: partial result; `fleet submit --wait` or `fleet watch` to follow it)",
                r.job.status
            );
        }
    }
    Ok(())
}

pub async fn cancel(api: &Api, args: JobArgs) -> anyhow::Result<()> {
    let body = api.cancel(&args.job).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!("{}", cancel_text(&args.job, &body));
    Ok(())
}

/// What `cancel` says: cancelled now, or already over (cancelling a final job changes nothing).
pub fn cancel_text(job: &str, body: &Value) -> String {
    match body.get("status").and_then(Value::as_str) {
        Some("cancelled") => format!(
            "job {job} cancelled: its queued tasks are dropped (`fleet result {job}` shows what finished)"
        ),
        Some("completed") => format!("job {job} had already completed; nothing to cancel"),
        Some(other) => format!("job {job}: {other}"),
        None => format!("job {job}: cancel sent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_says_what_happened() {
        let t = cancel_text(
            "j1",
            &serde_json::json!({"job_id": "j1", "status": "cancelled"}),
        );
        assert!(t.starts_with("job j1 cancelled"), "{t}");
        let t = cancel_text(
            "j1",
            &serde_json::json!({"job_id": "j1", "status": "completed"}),
        );
        assert_eq!(t, "job j1 had already completed; nothing to cancel");
    }
}
