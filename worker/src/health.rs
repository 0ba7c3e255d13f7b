//! The worker's HTTP side: liveness, readiness (broker and Redis reachable), metrics.
//!
//! With `FLEET_API_TOKEN` set, `/metrics` needs it as a bearer token (Prometheus sends it),
//! and `/readyz` tells what is missing only to a caller with it; orchestrators read the
//! status code.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::auth::{bearer, token_matches};

use crate::runner::Shared;

/// How long a readiness probe waits for Redis before saying it is not reachable.
const PROBE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

pub fn router(w: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(w)
}

/// Whether the request may see details: no token configured, or the right one given.
fn authorized(w: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = &w.config.connections.api_token else {
        return true;
    };
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .is_some_and(|given| token_matches(given, token))
}

async fn ready(State(w): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    // Neither check waits longer than PROBE_WITHIN, whatever is down.
    let redis_down = w.store.unavailable_within(PROBE_WITHIN).await;
    let amqp_down = w.broker.unavailable();
    let (redis, amqp) = (redis_down.is_none(), amqp_down.is_none());
    let reasons: Vec<String> = [redis_down, amqp_down].into_iter().flatten().collect();
    let accepting = *w.accepting.borrow();
    let code = if redis && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if authorized(&w, &headers) {
        serde_json::json!({
            "ready": redis && amqp, "redis": redis, "amqp": amqp, "accepting": accepting,
            "reasons": reasons,
        })
    } else {
        serde_json::json!({ "ready": redis && amqp })
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(w): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&w, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer $FLEET_API_TOKEN)",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        w.metrics.encode(),
    )
        .into_response()
}
