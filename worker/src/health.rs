//! The worker's HTTP side: liveness, readiness (broker and Redis reachable), metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::runner::Shared;

pub fn router(w: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(w)
}

async fn ready(State(w): State<Arc<Shared>>) -> impl IntoResponse {
    let redis = w.store.ping().await.is_ok();
    let amqp = w.broker.is_connected().await;
    let accepting = *w.accepting.borrow();
    let code = if redis && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({ "redis": redis, "amqp": amqp, "accepting": accepting })),
    )
}

async fn metrics(State(w): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        w.metrics.encode(),
    )
}
