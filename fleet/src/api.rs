//! A client for the dispatcher's HTTP API, and the views the CLI reads from its answers.
//!
//! Every failure becomes one line that says what to do (start the dispatcher, set the
//! token, check the job id); the dispatcher's own `{"error": ...}` text is kept.

use std::collections::BTreeMap;
use std::time::Duration;

use common::message::Outcome;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::root_cause;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Progress counters of a job (`progress` in the status body).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StageProgress {
    pub done: usize,
    pub total: usize,
}

/// `GET /v1/jobs/{id}` (also each entry of `GET /v1/jobs`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JobStatus {
    pub job_id: String,
    pub status: String,
    pub video: String,
    pub created_at_ms: u64,
    pub completed_at_ms: Option<u64>,
    pub progress: Progress,
    pub stages: BTreeMap<String, StageProgress>,
}

impl JobStatus {
    /// Completed or cancelled: nothing more will change.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "cancelled")
    }
}

/// `GET /v1/jobs/{id}/result`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JobResult {
    #[serde(flatten)]
    pub job: JobStatus,
    pub analyzers: BTreeMap<String, Outcome>,
    pub failed: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    pub job_id: String,
    #[serde(default)]
    pub created: bool,
}

#[derive(Debug, Deserialize)]
struct JobList {
    jobs: Vec<JobStatus>,
}

pub struct Api {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// A client for the dispatcher at `url`; the bearer token comes from `FLEET_API_TOKEN`.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let token = std::env::var(common::config::env::API_TOKEN)
            .ok()
            .filter(|t| !t.is_empty());
        Self::with_token(url, token)
    }

    pub fn with_token(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--url / FLEET_URL {url:?} is not an http(s) URL (e.g. http://127.0.0.1:8080)"
                )
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { base, http, token })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + path segments, each percent-encoded (job ids come from the user).
    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        let mut req = self.http.request(method, url.clone());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(transport_error(&self.base, &e)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| anyhow::anyhow!(transport_error(&self.base, &e)))?;
        if !status.is_success() {
            anyhow::bail!(status_error(&self.base, status, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "unexpected answer from {url} ({e}): is FLEET_URL pointing at a fleet dispatcher?"
            )
        })
    }

    pub async fn submit(&self, request: &Value) -> anyhow::Result<Submitted> {
        self.call(Method::POST, self.url(&["v1", "jobs"]), Some(request))
            .await
    }

    pub async fn status(&self, job: &str) -> anyhow::Result<JobStatus> {
        self.call(Method::GET, self.url(&["v1", "jobs", job]), None)
            .await
    }

    pub async fn status_raw(&self, job: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, self.url(&["v1", "jobs", job]), None)
            .await
    }

    pub async fn result(&self, job: &str) -> anyhow::Result<JobResult> {
        self.call(Method::GET, self.url(&["v1", "jobs", job, "result"]), None)
            .await
    }

    pub async fn result_raw(&self, job: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, self.url(&["v1", "jobs", job, "result"]), None)
            .await
    }

    pub async fn cancel(&self, job: &str) -> anyhow::Result<Value> {
        self.call(Method::POST, self.url(&["v1", "jobs", job, "cancel"]), None)
            .await
    }

    pub async fn recent(&self, limit: usize) -> anyhow::Result<Vec<JobStatus>> {
        let mut url = self.url(&["v1", "jobs"]);
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        Ok(self.call::<JobList>(Method::GET, url, None).await?.jobs)
    }

    /// `GET /readyz`: true when the dispatcher reaches RabbitMQ and Redis.
    pub async fn ready(&self) -> bool {
        let req = self
            .http
            .get(self.url(&["readyz"]))
            .timeout(Duration::from_secs(2));
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }
}

/// The dispatcher could not be reached at all.
pub fn transport_error(base: &Url, e: &reqwest::Error) -> String {
    let why = if e.is_timeout() {
        "timed out".to_string()
    } else {
        root_cause(e)
    };
    format!(
        "cannot reach the dispatcher at {}: {why} — start it with `fleet up` or set FLEET_URL",
        base.as_str().trim_end_matches('/')
    )
}

/// The dispatcher answered with an error status; `body` is its `{"error": ...}`.
pub fn status_error(base: &Url, status: StatusCode, body: &str) -> String {
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(200).collect());
    let at = base.as_str().trim_end_matches('/');
    match status {
        StatusCode::UNAUTHORIZED => {
            format!(
                "the dispatcher at {at} refused the request without its API token: set FLEET_API_TOKEN to it (it answered: {reason})"
            )
        }
        StatusCode::NOT_FOUND => format!("{reason} — list recent jobs with `fleet watch --once`"),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            format!("the dispatcher rejected the job: {reason}")
        }
        StatusCode::SERVICE_UNAVAILABLE => format!(
            "the dispatcher at {at} cannot serve this now: {reason} — check RabbitMQ and Redis (`fleet queues`) and retry"
        ),
        s => format!("the dispatcher at {at} answered {s}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(url: &str) -> Api {
        Api::with_token(url, None).unwrap()
    }

    #[test]
    fn job_ids_are_encoded_as_one_path_segment() {
        let a = api("http://127.0.0.1:8080");
        assert_eq!(
            a.url(&["v1", "jobs", "a/b c"]).as_str(),
            "http://127.0.0.1:8080/v1/jobs/a%2Fb%20c"
        );
        let a = api("http://h:1/fleet/");
        assert_eq!(a.url(&["v1", "jobs"]).as_str(), "http://h:1/fleet/v1/jobs");
    }

    #[test]
    fn a_bad_url_says_what_is_expected() {
        let e = Api::with_token("127.0.0.1:8080", None).err().unwrap();
        assert!(e.to_string().contains("FLEET_URL"), "{e}");
    }

    #[test]
    fn status_errors_carry_the_dispatchers_reason_and_a_fix() {
        let base = Url::parse("http://127.0.0.1:8080/").unwrap();
        let e = status_error(
            &base,
            StatusCode::UNAUTHORIZED,
            r#"{"error":"missing token"}"#,
        );
        assert!(
            e.contains("FLEET_API_TOKEN") && e.contains("missing token"),
            "{e}"
        );
        let e = status_error(
            &base,
            StatusCode::NOT_FOUND,
            r#"{"error":"no job \"x\" (unknown or expired)"}"#,
        );
        assert!(e.starts_with("no job \"x\""), "{e}");
        let e = status_error(
            &base,
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"unknown analyzer(s)"}"#,
        );
        assert_eq!(e, "the dispatcher rejected the job: unknown analyzer(s)");
        let e = status_error(&base, StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert!(e.contains("502") && e.contains("proxy"), "{e}");
    }

    #[test]
    fn the_status_body_parses_into_the_view() {
        let body = serde_json::json!({
            "job_id": "j1", "status": "running", "video": "/v.mp4", "created_at_ms": 5,
            "completed_at_ms": null,
            "progress": {"done": 1, "total": 3, "ok": 1, "failed": 0, "skipped": 0},
            "stages": {"stage1": {"done": 1, "total": 2}, "cpu": {"done": 0, "total": 1}}
        });
        let s: JobStatus = serde_json::from_value(body).unwrap();
        assert_eq!(s.progress.total, 3);
        assert_eq!(s.stages["stage1"], StageProgress { done: 1, total: 2 });
        assert!(!s.is_final());
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_url_and_the_fix() {
        // Bind then drop, so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = api(&format!("http://127.0.0.1:{port}"));
        let e = a.status("j").await.unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot reach the dispatcher at http://127.0.0.1:{port}: connection refused — start it with `fleet up` or set FLEET_URL"
            )
        );
    }
}
