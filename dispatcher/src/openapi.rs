//! The OpenAPI 3.1 document of every HTTP route, generated from the handlers' `#[utoipa::path]`
//! attributes and the `common::api` types. Served at `/openapi.json` and committed as
//! `docs/openapi.json`; a test fails when the two disagree (`UPDATE_OPENAPI=1 cargo test -p
//! dispatcher --lib openapi` rewrites the file).

use std::sync::LazyLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::{http, ui};

/// Path of the committed document, relative to the repository root.
pub const COMMITTED: &str = "docs/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Analyzer Fleet dispatcher",
        description = "Submit videos to the analyzer fleet, follow their jobs and read the \
            results. Every route but the probes and this document needs \
            `Authorization: Bearer <FLEET_API_TOKEN>` when the dispatcher has a token.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Security),
    tags(
        (name = "jobs", description = "submit, follow, read, cancel"),
        (name = "probes", description = "health, readiness, metrics, this document"),
        (name = "ui", description = "the web view (`/ui`) and its data"),
    ),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the dispatcher's FLEET_API_TOKEN"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "ui_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                ui::SESSION_COOKIE,
                "set by POST /ui/login; accepted on /ui routes only",
            ))),
        );
    }
}

/// The document, built from the same route lists the server mounts.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(http::public_routes())
        .merge(http::api_routes())
        .merge(ui::public_routes())
        .merge(ui::routes())
        .split_for_parts();
    doc
}

/// The document as pretty JSON with a final newline (the committed file's form).
pub fn json() -> String {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut s = document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        s.push('\n');
        s
    });
    JSON.clone()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn openapi_committed_document_matches_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(COMMITTED);
        let generated = json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{COMMITTED} differs from the API the code serves: run \
             `UPDATE_OPENAPI=1 cargo test -p dispatcher --lib openapi` and commit the file"
        );
    }

    #[test]
    fn openapi_is_3_1_and_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/result",
            "/v1/jobs/{id}/cancel",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/ui",
            "/ui/login",
            "/ui/api/overview",
            "/ui/api/jobs/{id}",
        ] {
            assert!(paths.contains_key(p), "{p} missing from the document");
        }
        // Every operation says what each failure looks like, and protected ones say how to
        // authenticate.
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path}: no responses");
                if op.get("security").is_some() {
                    assert!(
                        responses.contains_key("401"),
                        "{method} {path}: protected but no 401"
                    );
                }
            }
        }
    }
}
