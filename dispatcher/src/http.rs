//! The dispatcher's HTTP API: submit jobs, read status and results, cancel; health and metrics.
//!
//! When a token is configured every route but the probes (`/healthz`, `/readyz`) requires
//! `Authorization: Bearer <token>`: the operator's `FLEET_API_TOKEN` opens everything, a
//! client's token from `FLEET_CLIENT_TOKENS` opens that client's own jobs (another client's
//! job answers 404, as an unknown one does) and not `/metrics`. Tokens are compared by their
//! SHA-256 digests in constant time. Ids in paths follow `common::ids`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::auth::{bearer, token_matches};
use common::codec;
use common::ids::check_id;
use common::message::{Outcome, OutcomeStatus};
use common::store::JobMeta;
use common::telemetry::TraceContext;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::{Caller, Core, SubmitError};
use crate::intake::MAX_REQUEST_BYTES;

pub fn router(core: Arc<Core>) -> Router {
    let api = Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status))
        .route("/v1/jobs/{id}/result", get(result))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(core.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(api)
        .with_state(core)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
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

/// 400 for an id that breaks the grammar (it could not name a job).
fn bad_id(id: &str) -> Option<Response> {
    check_id("job id", id)
        .err()
        .map(|e| error(StatusCode::BAD_REQUEST, e))
}

/// Readiness for orchestrators without a token: the status code and `ready`; what is
/// missing only for the operator (or on an API without tokens).
async fn ready(State(core): State<Arc<Core>>, headers: HeaderMap) -> Response {
    let redis = core.store.ping().await.is_ok();
    let amqp = core.broker.is_connected().await;
    let code = if redis && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = match caller_of(&core, &headers) {
        Some(c) if c.client.is_none() => {
            json!({ "ready": redis && amqp, "redis": redis, "amqp": amqp })
        }
        _ => json!({ "ready": redis && amqp }),
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(core): State<Arc<Core>>, Extension(caller): Extension<Caller>) -> Response {
    if caller.client.is_some() {
        return error(StatusCode::FORBIDDEN, "/metrics needs the operator's token");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics.encode(),
    )
        .into_response()
}

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
    match core.submit(req, None, &caller, trace).await {
        Ok(s) => (
            StatusCode::ACCEPTED,
            Json(json!({ "job_id": s.job_id, "created": s.created })),
        )
            .into_response(),
        Err(SubmitError::Invalid(reason)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            common::text::reason(&reason),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("try again: {e}")),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(20).min(500);
    // A client's jobs are among everybody's recent ones: look further back for them.
    let scan = if caller.client.is_some() { 500 } else { limit };
    let ids = match core.store.recent_jobs(scan).await {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
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
    Json(json!({ "jobs": jobs })).into_response()
}

/// The job and its outcomes, when `caller` may see it; 404 for an unknown job and for
/// another client's alike.
async fn load(
    core: &Core,
    caller: &Caller,
    id: &str,
) -> Result<(JobMeta, BTreeMap<String, Outcome>), Response> {
    if let Some(r) = bad_id(id) {
        return Err(r);
    }
    match core.store.job(id).await {
        Ok(Some(meta)) if caller.may_see(meta.owner.as_deref()) => {
            let outcomes = core
                .store
                .outcomes(id)
                .await
                .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            Ok((meta, outcomes))
        }
        Ok(_) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (unknown or expired)"),
        )),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// Status with progress, also per stage: what `fleet submit --wait` draws.
pub fn status_body(meta: &JobMeta, outcomes: &BTreeMap<String, Outcome>) -> Value {
    let count = |s: OutcomeStatus| outcomes.values().filter(|o| o.status == s).count();
    let mut stages: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in &meta.plan {
        let e = stages.entry(t.stage.as_str()).or_default();
        e.1 += 1;
        if outcomes.contains_key(&t.analyzer) {
            e.0 += 1;
        }
    }
    let stages: BTreeMap<&str, Value> = stages
        .into_iter()
        .map(|(s, (done, total))| (s, json!({ "done": done, "total": total })))
        .collect();
    json!({
        "job_id": meta.id,
        "status": meta.status.as_str(),
        "video": meta.video,
        "created_at_ms": meta.created_at_ms,
        "completed_at_ms": meta.completed_at_ms,
        "progress": {
            "done": outcomes.len(),
            "total": meta.total,
            "ok": count(OutcomeStatus::Ok),
            "failed": count(OutcomeStatus::Failed),
            "skipped": count(OutcomeStatus::Skipped),
        },
        "stages": stages,
    })
}

async fn status(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match load(&core, &caller, &id).await {
        Ok((meta, outcomes)) => Json(status_body(&meta, &outcomes)).into_response(),
        Err(r) => r,
    }
}

async fn result(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let (meta, outcomes) = match load(&core, &caller, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut body = status_body(&meta, &outcomes);
    let failed: BTreeMap<&String, &Option<String>> = outcomes
        .iter()
        .filter(|(_, o)| o.status == OutcomeStatus::Failed)
        .map(|(k, o)| (k, &o.error))
        .collect();
    body["metadata"] = meta.metadata.clone();
    body["request"] = meta.request.clone();
    body["failed"] = json!(failed);
    body["analyzers"] = json!(outcomes);
    Json(body).into_response()
}

async fn cancel(
    State(core): State<Arc<Core>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = load(&core, &caller, &id).await {
        return r;
    }
    match core.cancel(&id).await {
        Ok(Some(s)) => Json(json!({ "job_id": id, "status": s.as_str() })).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (unknown or expired)"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
