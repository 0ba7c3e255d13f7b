//! The web view at `/ui`: recent jobs with progress, one job as a timeline (a lane per stage,
//! a bar per analyzer), queue depths and who consumes them. Plain HTML/JS/CSS compiled into the
//! binary (`ui/`), no build step; the page polls two JSON routes of its own.
//!
//! Auth: with `FLEET_API_TOKEN` set, every `/ui` route wants the bearer token like the API, or
//! the session cookie that `POST /ui/login` sets after checking the token. The cookie holds a
//! digest of the token, not the token, so it cannot be replayed against `/v1`; it is `HttpOnly`,
//! `SameSite=Strict` and scoped to `/ui`, whose routes only read (a forged cross-site request
//! carries no cookie and could change nothing).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use common::api::{ApiError, LoginForm, Overview, TaskState, Timeline, TimelineTask};
use common::config::STAGES;
use common::now_ms;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::Core;
use crate::http::{bearer_ok, constant_time_eq, error, load, recent, status_body};
use crate::queues;

pub const SESSION_COOKIE: &str = "fleet_ui";
/// How long a login lasts (the cookie's Max-Age).
const SESSION_SECS: u64 = 12 * 3600;
/// Jobs on the front page.
const RECENT_JOBS: usize = 30;

const INDEX: &str = include_str!("ui/index.html");
const LOGIN: &str = include_str!("ui/login.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// Scripts and styles only from this origin, nothing inline, no frames: a job's video name or
/// an analyzer's error is hostile input, and the page writes it as text only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The `/ui` router: the login route open, the rest behind the token or the session.
pub fn router(core: Arc<Core>) -> Router<Arc<Core>> {
    let (open, _) = public_routes().split_for_parts();
    let (guarded, _) = routes().split_for_parts();
    Router::new()
        .merge(open)
        .merge(guarded.route_layer(middleware::from_fn_with_state(core, auth)))
        .layer(middleware::from_fn(security_headers))
}

pub(crate) fn public_routes() -> OpenApiRouter<Arc<Core>> {
    // The style sheet too: the login page needs it, and it holds no data.
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(style_css))
}

pub(crate) fn routes() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(app_js))
        .routes(routes!(logout))
        .routes(routes!(overview))
        .routes(routes!(timeline))
}

/// The cookie's value for `token`: a digest, so the cookie is not the API token.
fn session_value(token: &str) -> String {
    let digest = Sha256::digest(format!("analyzer-fleet ui session\0{token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_ok(core: &Core, headers: &HeaderMap) -> bool {
    let Some(token) = &core.config.connections.api_token else {
        return true;
    };
    let want = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == SESSION_COOKIE && constant_time_eq(v.as_bytes(), want.as_bytes()))
}

async fn auth(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    if bearer_ok(&core, req.headers()) || session_ok(&core, req.headers()) {
        return next.run(req).await;
    }
    // A person at the front page gets the form; scripts get the API's JSON answer.
    if req.uri().path() == "/ui" {
        return (StatusCode::UNAUTHORIZED, Html(login_page(""))).into_response();
    }
    error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer $FLEET_API_TOKEN) or /ui session",
    )
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn login_page(problem: &str) -> String {
    // `problem` is one of our own fixed sentences, never request data.
    LOGIN.replace("{{problem}}", problem)
}

/// Sign in to the web view with the API token (a form post from the login page).
#[utoipa::path(post, path = "/ui/login", tag = "ui",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed in: session cookie set, on to /ui"),
        (status = 400, description = "unreadable body", body = String, content_type = "text/plain"),
        (status = 401, description = "wrong token: the login page again", body = String, content_type = "text/html"),
        (status = 415, description = "not a form post", body = String, content_type = "text/plain"),
        (status = 422, description = "no `token` field", body = String, content_type = "text/plain"),
    ),
)]
async fn login(State(core): State<Arc<Core>>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &core.config.connections.api_token else {
        return see_other("/ui", None);
    };
    if !constant_time_eq(form.token.as_bytes(), token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_page("That is not the dispatcher's token.")),
        )
            .into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}",
        session_value(token)
    );
    see_other("/ui", Some(cookie))
}

/// Sign out: the session cookie is cleared.
#[utoipa::path(post, path = "/ui/logout", tag = "ui",
    security(("bearer" = []), ("ui_session" = [])),
    responses(
        (status = 303, description = "signed out, on to /ui"),
        (status = 401, description = "not signed in", body = ApiError),
    ),
)]
async fn logout() -> Response {
    see_other(
        "/ui",
        Some(format!(
            "{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        )),
    )
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// The web view (HTML; the login form when not signed in).
#[utoipa::path(get, path = "/ui", tag = "ui",
    security(("bearer" = []), ("ui_session" = [])),
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 401, description = "the login form", body = String, content_type = "text/html"),
    ),
)]
async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// The web view's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui",
    security(("bearer" = []), ("ui_session" = [])),
    responses(
        (status = 200, description = "JavaScript", body = String, content_type = "text/javascript"),
        (status = 401, description = "not signed in", body = ApiError),
    ),
)]
async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

/// The web view's style sheet (open: the login page uses it).
#[utoipa::path(get, path = "/ui/style.css", tag = "ui",
    responses((status = 200, description = "CSS", body = String, content_type = "text/css")),
)]
async fn style_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// The front page's data: recent jobs, queue depths, consumers, stage limits.
#[utoipa::path(get, path = "/ui/api/overview", tag = "ui",
    security(("bearer" = []), ("ui_session" = [])),
    responses(
        (status = 200, description = "the overview", body = Overview),
        (status = 401, description = "not signed in", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn overview(State(core): State<Arc<Core>>) -> Response {
    let jobs = match recent(&core, RECENT_JOBS).await {
        Ok(j) => j,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let (queues, consumers) = tokio::join!(queues::depths(&core), queues::consumers(&core));
    let (consumers, consumers_note) = match consumers {
        Ok(c) => (c, None),
        Err(note) => (Vec::new(), Some(note)),
    };
    let stage_limits: BTreeMap<String, u32> = core
        .config
        .stages
        .values()
        .map(|s| (s.name.clone(), u32::from(s.concurrency)))
        .collect();
    Json(Overview {
        prefix: core.config.connections.prefix.clone(),
        jobs,
        queues,
        consumers,
        consumers_note,
        stage_limits,
        at_ms: now_ms(),
    })
    .into_response()
}

/// One job as a timeline: every analyzer of its plan with its stage, state and times.
#[utoipa::path(get, path = "/ui/api/jobs/{id}", tag = "ui",
    security(("bearer" = []), ("ui_session" = [])),
    params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "the timeline", body = Timeline),
        (status = 400, description = "an id outside the id grammar (common::ids)", body = ApiError),
        (status = 401, description = "not signed in", body = ApiError),
        (status = 404, description = "unknown or expired job", body = ApiError),
        (status = 503, description = "Redis unavailable", body = ApiError),
    ),
)]
async fn timeline(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    let (meta, outcomes) = match load(&core, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let released = match core.store.released(&id).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let tasks = meta
        .plan
        .iter()
        .map(|t| match outcomes.get(&t.analyzer) {
            Some(o) => TimelineTask {
                analyzer: t.analyzer.clone(),
                stage: t.stage.clone(),
                state: o.status.into(),
                // Outcomes the dispatcher decided (skipped, dead-lettered) never started.
                started_at_ms: (o.started_at_ms > 0).then_some(o.started_at_ms),
                finished_at_ms: (o.finished_at_ms > 0).then_some(o.finished_at_ms),
                duration_ms: Some(o.duration_ms),
                error: o.error.clone(),
                worker: Some(o.worker.clone()),
                backend: Some(o.backend.clone()),
                attempts: Some(o.attempts),
            },
            None => TimelineTask {
                analyzer: t.analyzer.clone(),
                stage: t.stage.clone(),
                state: if released.contains(&t.analyzer) {
                    TaskState::Queued
                } else {
                    TaskState::Waiting
                },
                started_at_ms: None,
                finished_at_ms: None,
                duration_ms: None,
                error: None,
                worker: None,
                backend: None,
                attempts: None,
            },
        })
        .collect();
    let stages = STAGES
        .iter()
        .map(|s| s.to_string())
        .filter(|s| meta.plan.iter().any(|t| &t.stage == s))
        .chain(
            // A stage a later config added: after the known ones, in name order.
            meta.plan
                .iter()
                .map(|t| t.stage.clone())
                .filter(|s| !STAGES.contains(&s.as_str()))
                .collect::<std::collections::BTreeSet<_>>(),
        )
        .collect();
    Json(Timeline {
        job: status_body(&meta, &outcomes),
        stages,
        tasks,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_a_digest_not_the_token() {
        let v = session_value("s3cret");
        assert_eq!(v.len(), 64);
        assert!(!v.contains("s3cret"));
        assert_ne!(v, session_value("s3cret2"));
        assert_eq!(
            v,
            session_value("s3cret"),
            "stable across restarts and replicas"
        );
    }

    #[test]
    fn the_login_page_carries_only_our_sentence() {
        let page = login_page("That is not the dispatcher's token.");
        assert!(page.contains("That is not the dispatcher's token."));
        assert!(!page.contains("{{problem}}"));
        assert!(page.contains(r#"action="/ui/login""#));
    }
}
