//! The dispatcher's HTTP API: submit jobs, read status and results, cancel; health and metrics.
//!
//! When `FLEET_API_TOKEN` is set every route but the probes (`/healthz`, `/readyz`) and the
//! contract (`/openapi.json`) requires `Authorization: Bearer <token>`. Every handler is
//! registered through `utoipa-axum`'s `routes!`, so it is in `/openapi.json` by construction.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use common::api::{
    ApiError, CancelAnswer, JobList, JobResult, JobView, ListQuery, Progress, Readiness,
    StageProgress, SubmitAnswer,
};
use common::codec;
use common::message::{JobRequest, Outcome, OutcomeStatus};
use common::store::JobMeta;
use common::telemetry::TraceContext;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::{Core, SubmitError};
use crate::{openapi, ui};

pub fn router(core: Arc<Core>) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let (open, _) = public_routes().split_for_parts();
    Router::new()
        .merge(open)
        .merge(api.route_layer(middleware::from_fn_with_state(core.clone(), auth)))
        .merge(ui::router(core.clone()))
        .with_state(core)
}

/// The routes behind the bearer token.
pub(crate) fn api_routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .routes(routes!(submit, list))
        .routes(routes!(status))
        .routes(routes!(result))
        .routes(routes!(cancel))
        .routes(routes!(metrics))
}

/// The probes and the contract: open to anyone who reaches the port.
pub(crate) fn public_routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(openapi_json))
}

pub(crate) fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

/// Whether `headers` carry `Authorization: Bearer <the token>` (always, without a token).
pub(crate) fn bearer_ok(core: &Core, headers: &HeaderMap) -> bool {
    let Some(token) = &core.config.connections.api_token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    given
        .strip_prefix("Bearer ")
        .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

async fn auth(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    if core.config.connections.api_token.is_some() {
        let ok = bearer_ok(&core, req.headers());
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer $FLEET_API_TOKEN)",
            );
        }
    }
    next.run(req).await
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: Redis and RabbitMQ reachable.
#[utoipa::path(get, path = "/readyz", tag = "probes", responses(
    (status = 200, description = "both reachable", body = Readiness),
    (status = 503, description = "one is not", body = Readiness),
))]
async fn ready(State(core): State<Arc<Core>>) -> Response {
    let redis = core.store.ping().await.is_ok();
    let amqp = core.broker.is_connected().await;
    let code = if redis && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Readiness { redis, amqp })).into_response()
}

/// This document: the OpenAPI 3.1 contract of every route, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
        .into_response()
}

/// Prometheus metrics of this dispatcher, with the fleet's queue depths sampled now.
#[utoipa::path(get, path = "/metrics", tag = "probes", security(("bearer" = [])), responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
    (status = 401, description = "missing or wrong bearer token", body = ApiError),
))]
async fn metrics(State(core): State<Arc<Core>>) -> Response {
    crate::queues::depths(&core).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics.encode(),
    )
        .into_response()
}

/// Submit a video. The body is a job request as JSON or MessagePack (by `Content-Type`); a
/// W3C `traceparent` header makes the job's trace continue the caller's.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    request_body(content(
        (JobRequest = "application/json"),
        (JobRequest = "application/msgpack"),
    )),
    params(
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the caller"),
    ),
    responses(
        (status = 202, description = "accepted (or the existing job of an idempotency key)", body = SubmitAnswer,
            links(
                ("status" = (operation_id = "status", parameters(("id" = "$response.body#/job_id")))),
                ("result" = (operation_id = "result", parameters(("id" = "$response.body#/job_id")))),
                ("cancel" = (operation_id = "cancel", parameters(("id" = "$response.body#/job_id")))),
                ("timeline" = (operation_id = "timeline", parameters(("id" = "$response.body#/job_id")))),
            )),
        (status = 400, description = "malformed body or unsupported content type", body = ApiError),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 413, description = "body over 2 MiB", body = String, content_type = "text/plain"),
        (status = 422, description = "a request that can never succeed (unknown analyzer, bad video)", body = ApiError),
        (status = 503, description = "Redis or RabbitMQ unavailable: try again", body = ApiError),
    ),
)]
async fn submit(State(core): State<Arc<Core>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let req = match codec::decode_job_request(ct, &body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let trace = TraceContext {
        traceparent: h("traceparent"),
        tracestate: h("tracestate"),
    };
    match core.submit(req, None, trace).await {
        Ok(s) => (
            StatusCode::ACCEPTED,
            Json(SubmitAnswer {
                job_id: s.job_id,
                created: s.created,
            }),
        )
            .into_response(),
        Err(SubmitError::Invalid(reason)) => error(StatusCode::UNPROCESSABLE_ENTITY, reason),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("try again: {e}")),
    }
}

/// The most recent jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "recent jobs", body = JobList),
        (status = 400, description = "bad query", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn list(State(core): State<Arc<Core>>, Query(q): Query<ListQuery>) -> Response {
    match recent(&core, q.limit.unwrap_or(DEFAULT_LIST).min(MAX_LIST)).await {
        Ok(jobs) => Json(JobList { jobs }).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

pub(crate) const DEFAULT_LIST: usize = 20;
pub(crate) const MAX_LIST: usize = 500;

/// The `limit` most recent jobs that still exist.
pub(crate) async fn recent(core: &Core, limit: usize) -> Result<Vec<JobView>, String> {
    let ids = core
        .store
        .recent_jobs(limit)
        .await
        .map_err(|e| e.to_string())?;
    let mut jobs = Vec::new();
    for id in ids {
        if let Ok(Some(meta)) = core.store.job(&id).await {
            let outcomes = core.store.outcomes(&id).await.unwrap_or_default();
            jobs.push(status_body(&meta, &outcomes));
        }
    }
    Ok(jobs)
}

pub(crate) async fn load(
    core: &Core,
    id: &str,
) -> Result<(JobMeta, BTreeMap<String, Outcome>), Response> {
    match core.store.job(id).await {
        Ok(Some(meta)) => {
            let outcomes = core
                .store
                .outcomes(id)
                .await
                .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            Ok((meta, outcomes))
        }
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (unknown or expired)"),
        )),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// Status with progress, also per stage: what `fleet submit --wait` draws.
pub fn status_body(meta: &JobMeta, outcomes: &BTreeMap<String, Outcome>) -> JobView {
    let count = |s: OutcomeStatus| outcomes.values().filter(|o| o.status == s).count();
    let mut stages: BTreeMap<String, StageProgress> = BTreeMap::new();
    for t in &meta.plan {
        let e = stages.entry(t.stage.clone()).or_default();
        e.total += 1;
        if outcomes.contains_key(&t.analyzer) {
            e.done += 1;
        }
    }
    JobView {
        job_id: meta.id.clone(),
        status: meta.status,
        video: meta.video.clone(),
        created_at_ms: meta.created_at_ms,
        completed_at_ms: meta.completed_at_ms,
        progress: Progress {
            done: outcomes.len(),
            total: meta.total,
            ok: count(OutcomeStatus::Ok),
            failed: count(OutcomeStatus::Failed),
            skipped: count(OutcomeStatus::Skipped),
        },
        stages,
    }
}

/// A job's status and progress.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "status and progress", body = JobView),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 404, description = "unknown or expired job", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn status(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    match load(&core, &id).await {
        Ok((meta, outcomes)) => Json(status_body(&meta, &outcomes)).into_response(),
        Err(r) => r,
    }
}

/// A job's outcomes so far (all of them once `status` is `completed`).
#[utoipa::path(get, path = "/v1/jobs/{id}/result", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "status, outcomes, failures, metadata", body = JobResult),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 404, description = "unknown or expired job", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn result(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    let (meta, outcomes) = match load(&core, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let failed = outcomes
        .iter()
        .filter(|(_, o)| o.status == OutcomeStatus::Failed)
        .map(|(k, o)| (k.clone(), o.error.clone()))
        .collect();
    Json(JobResult {
        job: status_body(&meta, &outcomes),
        failed,
        metadata: meta.metadata.clone(),
        request: meta.request.clone(),
        analyzers: outcomes,
    })
    .into_response()
}

/// Cancel a job: its queued tasks are dropped and it ends `cancelled`.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "the job's status now", body = CancelAnswer),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 404, description = "unknown or expired job", body = ApiError),
        (status = 503, description = "Redis or RabbitMQ unavailable", body = ApiError),
    ),
)]
async fn cancel(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    match core.cancel(&id).await {
        Ok(Some(status)) => Json(CancelAnswer { job_id: id, status }).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (unknown or expired)"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
