//! The dispatcher's HTTP API: submit jobs, read status and results, cancel; health and metrics.
//!
//! When `FLEET_API_TOKEN` is set every route but the probes (`/healthz`, `/readyz`)
//! requires `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::codec;
use common::message::{Outcome, OutcomeStatus};
use common::store::JobMeta;
use common::telemetry::TraceContext;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::{Core, SubmitError};

pub fn router(core: Arc<Core>) -> Router {
    let api = Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status))
        .route("/v1/jobs/{id}/result", get(result))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(core.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(api)
        .with_state(core)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

async fn auth(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    if let Some(token) = &core.config.connections.api_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = given
            .strip_prefix("Bearer ")
            .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer $FLEET_API_TOKEN)",
            );
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ready(State(core): State<Arc<Core>>) -> Response {
    let redis = core.store.ping().await.is_ok();
    let amqp = core.broker.is_connected().await;
    let code = if redis && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "redis": redis, "amqp": amqp }))).into_response()
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics.encode(),
    )
        .into_response()
}

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
            Json(json!({ "job_id": s.job_id, "created": s.created })),
        )
            .into_response(),
        Err(SubmitError::Invalid(reason)) => error(StatusCode::UNPROCESSABLE_ENTITY, reason),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("try again: {e}")),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(State(core): State<Arc<Core>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(20).min(500);
    let ids = match core.store.recent_jobs(limit).await {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut jobs = Vec::new();
    for id in ids {
        if let Ok(Some(meta)) = core.store.job(&id).await {
            let outcomes = core.store.outcomes(&id).await.unwrap_or_default();
            jobs.push(status_body(&meta, &outcomes));
        }
    }
    Json(json!({ "jobs": jobs })).into_response()
}

async fn load(core: &Core, id: &str) -> Result<(JobMeta, BTreeMap<String, Outcome>), Response> {
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

async fn status(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    match load(&core, &id).await {
        Ok((meta, outcomes)) => Json(status_body(&meta, &outcomes)).into_response(),
        Err(r) => r,
    }
}

async fn result(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    let (meta, outcomes) = match load(&core, &id).await {
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

async fn cancel(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    match core.cancel(&id).await {
        Ok(Some(s)) => Json(json!({ "job_id": id, "status": s.as_str() })).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (unknown or expired)"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
