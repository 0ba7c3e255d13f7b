//! The dispatcher's HTTP API: submit jobs, read status and results, cancel; health and metrics.
//!
//! When a token is configured every route but the probes (`/healthz`, `/readyz`) and the
//! contract (`/openapi.json`) requires `Authorization: Bearer <token>`: the operator's
//! `FLEET_API_TOKEN` opens everything, a client's token from `FLEET_CLIENT_TOKENS` opens that
//! client's own jobs (another client's job answers 404, as an unknown one does) and not
//! `/metrics`. Tokens are compared by their SHA-256 digests in constant time. Ids in paths
//! follow `common::ids`. Every handler is
//! registered through `utoipa-axum`'s `routes!`, so it is in `/openapi.json` by construction.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use common::api::{
    ApiError, CancelAnswer, JobList, JobResult, JobView, ListQuery, Progress, Readiness,
    StageProgress, SubmitAnswer,
};
use common::auth::{bearer, bytes_match, token_matches};
use common::codec;
use common::ids::check_id;
use common::message::{JobRequest, Outcome, OutcomeStatus};
use common::store::JobMeta;
use common::telemetry::TraceContext;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::{Caller, Core, SubmitError};
use crate::intake::MAX_REQUEST_BYTES;
use crate::{openapi, ui};

/// How long a readiness probe waits for Redis before saying it is not reachable.
const PROBE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

pub fn router(core: Arc<Core>) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let (open, _) = public_routes().split_for_parts();
    Router::new()
        .merge(open)
        .merge(
            api.route_layer(middleware::from_fn_with_state(core.clone(), auth))
                .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
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
        // Open only when no token at all is configured: with client tokens alone, what is
        // the operator's (the web view of every job) stays closed.
        return core.config.connections.client_tokens.is_empty();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    given
        .strip_prefix("Bearer ")
        .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

/// Who the request's bearer token names; `None`: no valid token where one is needed.
pub fn caller_of(core: &Core, headers: &HeaderMap) -> Option<Caller> {
    let c = &core.config.connections;
    if c.api_token.is_none() && c.client_tokens.is_empty() {
        return Some(Caller::operator());
    }
    let given = bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )?;
    if c.api_token
        .as_deref()
        .is_some_and(|t| token_matches(given, t))
    {
        return Some(Caller::operator());
    }
    // Every client token is compared, so the time taken does not say which one matched.
    let mut found = None;
    for (name, token) in &c.client_tokens {
        if token_matches(given, token) {
            found = Some(Caller::client(name));
        }
    }
    found
}

async fn auth(State(core): State<Arc<Core>>, mut req: Request, next: Next) -> Response {
    let Some(caller) = caller_of(&core, req.headers()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer $FLEET_API_TOKEN, or a client's token)",
        );
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Equal bytes, compared through their SHA-256 digests in constant time (the length does not
/// show either).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bytes_match(a, b)
}

/// 400 for an id that breaks the grammar (it could not name a job).
fn bad_id(id: &str) -> Option<Response> {
    check_id("job id", id)
        .err()
        .map(|e| error(StatusCode::BAD_REQUEST, e))
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
async fn ready(State(core): State<Arc<Core>>, headers: HeaderMap) -> Response {
    // Neither check waits longer than PROBE_WITHIN, whatever is down.
    let redis_down = core.store.unavailable_within(PROBE_WITHIN).await;
    let amqp_down = core.broker.unavailable();
    let (redis, amqp) = (redis_down.is_none(), amqp_down.is_none());
    let mut reasons: Vec<String> = [redis_down, amqp_down].into_iter().flatten().collect();
    let code = if redis && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let state_lost_at_ms = core.epoch.lost_at_ms();
    // The probe is open; the errors behind it (addresses, the services' own words) are the
    // operator's, as on the workers.
    if !bearer_ok(&core, &headers) {
        reasons.clear();
    }
    (
        code,
        Json(Readiness {
            redis,
            amqp,
            state_lost_at_ms,
            reasons,
        }),
    )
        .into_response()
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
    (status = 403, description = "a client's token: /metrics is the operator's", body = ApiError),
))]
async fn metrics(State(core): State<Arc<Core>>, Extension(caller): Extension<Caller>) -> Response {
    if caller.client.is_some() {
        return error(StatusCode::FORBIDDEN, "/metrics needs the operator's token");
    }
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
        (status = 413, description = "body over 256 KiB", body = String, content_type = "text/plain"),
        (status = 422, description = "a request that can never succeed (unknown analyzer, bad video)", body = ApiError),
        (status = 503, description = "Redis or RabbitMQ unavailable: try again", body = ApiError),
    ),
)]
async fn submit(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let req = match codec::decode_job_request(ct, &body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                common::text::reason(&e.to_string()),
            );
        }
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
    // Without a broker the job's tasks cannot be published: say so now instead of waiting
    // for a reconnect (nothing is recorded, the client retries).
    if let Some(why) = core.broker.unavailable() {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("try again: {why}"));
    }
    match core.submit(req, None, &caller, trace).await {
        Ok(s) => (
            StatusCode::ACCEPTED,
            Json(SubmitAnswer {
                job_id: s.job_id,
                created: s.created,
            }),
        )
            .into_response(),
        Err(SubmitError::Invalid(reason)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            common::text::reason(&reason),
        ),
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
async fn list(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIST).min(MAX_LIST);
    match recent_for(&core, &caller, limit).await {
        Ok(jobs) => Json(JobList { jobs }).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

pub(crate) const DEFAULT_LIST: usize = 20;
pub(crate) const MAX_LIST: usize = 500;

/// The `limit` most recent jobs that still exist (the operator's view).
pub(crate) async fn recent(core: &Core, limit: usize) -> Result<Vec<JobView>, String> {
    recent_for(core, &Caller::operator(), limit).await
}

/// The `limit` most recent jobs `caller` may see.
async fn recent_for(core: &Core, caller: &Caller, limit: usize) -> Result<Vec<JobView>, String> {
    // A client's jobs are among everybody's recent ones: look further back for them.
    let scan = if caller.client.is_some() {
        MAX_LIST
    } else {
        limit
    };
    let ids = core
        .store
        .recent_jobs(scan)
        .await
        .map_err(|e| e.to_string())?;
    let mut jobs = Vec::new();
    for id in ids {
        if jobs.len() >= limit {
            break;
        }
        if let Ok(Some(meta)) = core.store.job(&id).await
            && caller.may_see(meta.owner.as_deref())
        {
            let outcomes = core.store.outcomes(&id).await.unwrap_or_default();
            jobs.push(status_body(&meta, &outcomes));
        }
    }
    Ok(jobs)
}

/// A job and its outcomes (the operator's view).
pub(crate) async fn load(
    core: &Core,
    id: &str,
) -> Result<(JobMeta, BTreeMap<String, Outcome>), Response> {
    load_for(core, &Caller::operator(), id).await
}

/// The job and its outcomes, when `caller` may see it; 404 for an unknown job and for
/// another client's alike, 400 for an id outside the grammar.
async fn load_for(
    core: &Core,
    caller: &Caller,
    id: &str,
) -> Result<(JobMeta, BTreeMap<String, Outcome>), Response> {
    if let Some(r) = bad_id(id) {
        return Err(r);
    }
    match core.store.job(id).await {
        Ok(Some(meta)) if caller.may_see(meta.owner.as_deref()) => {
            let outcomes = core.store.outcomes(id).await.map_err(unavailable)?;
            Ok((meta, outcomes))
        }
        Ok(_) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} ({})", core.epoch.why_unknown()),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

/// 503 for a store that failed: the reason, and that a retry may work. Every store command
/// fails within `common::redis_conn::COMMAND_WITHIN` while Redis is away.
fn unavailable(e: common::store::StoreError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("try again: {e}"))
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
        (status = 400, description = "an id outside the id grammar (common::ids)", body = ApiError),
        (status = 404, description = "unknown or expired job, or another client's", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn status(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match load_for(&core, &caller, &id).await {
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
        (status = 400, description = "an id outside the id grammar (common::ids)", body = ApiError),
        (status = 404, description = "unknown or expired job, or another client's", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn result(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let (meta, outcomes) = match load_for(&core, &caller, &id).await {
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
        (status = 400, description = "an id outside the id grammar (common::ids)", body = ApiError),
        (status = 404, description = "unknown or expired job, or another client's", body = ApiError),
        (status = 503, description = "Redis or RabbitMQ unavailable", body = ApiError),
    ),
)]
async fn cancel(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = load_for(&core, &caller, &id).await {
        return r;
    }
    match core.cancel(&id).await {
        Ok(Some(status)) => Json(CancelAnswer { job_id: id, status }).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} ({})", core.epoch.why_unknown()),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
