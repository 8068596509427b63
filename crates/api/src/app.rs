//! The router: every route module, the operational endpoints, and the middleware (request ids,
//! structured request logs, metrics, body limits, timeouts, problem+json for rejections).

use crate::error::{ApiError, Code};
use crate::routes;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI document of the operational endpoints; [`openapi`] merges every route module's.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kring API", version = "1", description = "Privacy-first communication between primary schools and parents. How the server behaves: docs/api.md in the repository."),
    paths(healthz, readyz, metrics),
    components(schemas(crate::error::Problem, Health, Readiness, ProjectionReadiness, routes::PurposeName, routes::TimeZoneName)),
    modifiers(&Bearer)
)]
struct OpsDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole OpenAPI 3.1 document, generated from the handlers.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpsDoc::openapi();
    for part in routes::docs() {
        doc.merge(part);
    }
    declare_idempotency_key(&mut doc);
    declare_problems(&mut doc);
    pattern_uuids(doc)
}

/// A UUID in hyphenated form, the form the server writes (it reads the other forms too).
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// JSON Schema 2020-12 treats `format` as an annotation only: a validator (and a generator)
/// takes `""` for a `format: uuid` string. Every such string gets the pattern of a UUID, so that
/// what the document calls valid is what the server reads.
fn pattern_uuids(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("format").and_then(serde_json::Value::as_str) == Some("uuid")
                    && !map.contains_key("pattern")
                {
                    map.insert("pattern".into(), UUID_PATTERN.into());
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    walk(&mut value);
    relate(&mut value);
    serde_json::from_value(value).unwrap_or(doc)
}

/// Rules between the fields of a body that the derive cannot say: a child's correction names
/// at least one field (not `null`), and a class group at the year's transition has at most one
/// destination (`children_to` or `children_to_new`).
fn relate(doc: &mut serde_json::Value) {
    use serde_json::json;
    // As `allOf` around the derived schema: the document's model keeps `allOf` and `anyOf`.
    let mut constrain = |name: &str, rule: serde_json::Value| {
        if let Some(schema) = doc["components"]["schemas"].get_mut(name) {
            let derived = schema.take();
            *schema = json!({"allOf": [derived, rule]});
        }
    };
    constrain(
        "ChildCorrection",
        json!({"anyOf": [
            {"type": "object", "required": ["first_name"], "properties": {"first_name": {"type": "string"}}},
            {"type": "object", "required": ["last_initial"], "properties": {"last_initial": {"type": "string"}}}
        ]}),
    );
    constrain(
        "TransitionGroup",
        json!({"anyOf": [
            {"type": "object", "properties": {"children_to": {"type": "null"}}},
            {"type": "object", "properties": {"children_to_new": {"type": "null"}}}
        ]}),
    );
}

/// The problems every operation can answer whatever its handler does, added to each
/// operation's own: the middleware's (`429` rate limit, `504` timeout), the extractors' (`401`
/// without a valid token, `400`/`413`/`415`/`422` for a body or query that cannot be read or
/// does not fit its schema), the store's (`503` unreachable or not caught up, `507` disk full,
/// `409` a concurrent write), and the idempotency layer's (`422` a reused key). Every problem
/// answer is `application/problem+json` with the [`crate::error::Problem`] schema.
fn declare_problems(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{HttpMethod, Operation};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let add = |op: &mut Operation, status: u16, description: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| utoipa::openapi::RefOr::T(problem(description)));
    };
    for (path, item) in &mut doc.paths.paths {
        let ops: Vec<(HttpMethod, &mut Operation)> = [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Patch, item.patch.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
        ]
        .into_iter()
        .filter_map(|(m, op)| op.map(|op| (m, op)))
        .collect();
        for (method, op) in ops {
            // A handler's own problem answers: problem+json, not plain JSON.
            for (status, response) in &mut op.responses.responses {
                if let utoipa::openapi::RefOr::T(response) = response {
                    if status.starts_with(['4', '5']) {
                        if let Some(content) = response.content.shift_remove("application/json") {
                            response.content.insert(PROBLEM_JSON.to_owned(), content);
                        }
                    }
                }
            }
            add(
                op,
                429,
                "Too many requests (`rate_limited`, with `Retry-After`)",
            );
            add(op, 504, "The request took too long (`timeout`)");
            if !path.starts_with("/v1/") {
                continue;
            }
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            if secured {
                add(op, 401, "No valid bearer token (`unauthenticated`)");
            }
            let has_params = op.parameters.as_ref().is_some_and(|p| {
                p.iter()
                    .any(|p| !matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Header))
            });
            let has_body = op.request_body.is_some();
            if has_params || has_body {
                add(op, 400, "The request cannot be read (`bad_request`)");
                add(op, 422, "A value is not valid (`validation_failed`)");
            }
            if path.contains('{') {
                add(
                    op,
                    404,
                    "Not found, or its existence is private (`not_found`)",
                );
            }
            if has_body {
                add(
                    op,
                    413,
                    "The request body is too large (`payload_too_large`)",
                );
                add(
                    op,
                    415,
                    "Not `Content-Type: application/json` (`unsupported_media_type`)",
                );
            }
            add(
                op,
                503,
                "The event store cannot be reached (`store_unreachable`), or a read model did \
                 not catch up in time (`not_caught_up`): retry later",
            );
            if method != HttpMethod::Get {
                add(
                    op,
                    409,
                    "Changed concurrently (`concurrency_conflict`): retry",
                );
                add(
                    op,
                    422,
                    "A value is not valid (`validation_failed`), or the `Idempotency-Key` was \
                     used with another body (`idempotency_key_reused`)",
                );
                add(
                    op,
                    507,
                    "The disk is full; nothing was written (`insufficient_storage`)",
                );
            }
        }
    }
}

/// The content type of every problem answer.
const PROBLEM_JSON: &str = "application/problem+json";

/// Every write accepts an `Idempotency-Key` header ([`crate::idempotency`] runs around every
/// route), so every write operation declares it.
fn declare_idempotency_key(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    let key = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retry of this write safe: the same key (with the same token, method, path \
             and body) writes nothing twice and answers what the first request answered. 1 to \
             255 visible ASCII characters; a UUID is a good key.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::idempotency::MAX_KEY_LEN))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.parameters.get_or_insert_with(Vec::new).push(key.clone());
        }
    }
}

/// The application: every route with its middleware.
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .merge(routes::router())
        .merge(crate::console::router())
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::middleware,
        ));
    // Inside `observe`: a timed-out request is answered as problem+json and counted.
    let routes = routes.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        limits.request_timeout,
    ));
    crate::throttle::limit(routes, limits.rate_per_address, limits.rate_per_token)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::max(limits.json_body))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Counts and times every request, and turns axum's plain-text rejections (bad JSON, too
/// large, wrong content type) into problem+json with a stable code.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let response = problem_for_rejection(response).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn problem_for_rejection(response: Response) -> Response {
    let status = response.status();
    // Problems are already problems, the console's error pages are HTML, and a JSON answer with an error status is a handler's
    // own (the `503` of `/readyz` says which read model lags): only axum's plain-text
    // rejections are rewritten.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(b"application/problem+json")
                || v.starts_with(b"application/json")
                || v.starts_with(b"text/html")
        });
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, limit) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (Code::PayloadTooLarge, 4096),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (Code::UnsupportedMediaType, 4096),
        StatusCode::UNPROCESSABLE_ENTITY => (Code::ValidationFailed, 4096),
        StatusCode::METHOD_NOT_ALLOWED => (Code::MethodNotAllowed, 4096),
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => (Code::Timeout, 4096),
        s if s.is_client_error() => (Code::BadRequest, 4096),
        _ => (Code::InternalError, 0),
    };
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(limit)]).into_owned())
        .unwrap_or_default();
    let detail = if body.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        body
    };
    ApiError::new(status, code, detail).into_response()
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One read model's readiness.
#[derive(Serialize, ToSchema)]
pub struct ProjectionReadiness {
    /// The read model.
    pub name: String,
    /// The position it has applied.
    pub position: u64,
    /// Why it stopped, if it did.
    pub failure: Option<String>,
}

/// Readiness.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// Whether the store answers and every read model has caught up and runs.
    pub ready: bool,
    /// The log's head.
    pub head: u64,
    /// The in-process projector's last passing failure (store or database unreachable), while
    /// it waits to try again.
    pub projector_error: Option<String>,
    /// Each read model.
    pub projections: Vec<ProjectionReadiness>,
}

/// Readiness: the store answers, and every read model runs and has caught up with the log as
/// it was when the check started. `503` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let head = match state.system.store.head().await {
        Ok(h) => h,
        Err(e) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::StoreUnreachable,
                format!("event store: {e}"),
            )
            .into_response()
        }
    };
    let failures: std::collections::HashMap<String, Option<String>> = state
        .board
        .as_ref()
        .map(|b| b.all().into_iter().map(|s| (s.name, s.failure)).collect())
        .unwrap_or_default();
    let mut projections = Vec::new();
    for name in state.projections.iter() {
        let position = state.checkpoints.position(name).await.unwrap_or(0);
        projections.push(ProjectionReadiness {
            name: (*name).to_owned(),
            position,
            failure: failures.get(*name).cloned().flatten(),
        });
    }
    let projector_error = state.board.as_ref().and_then(|b| b.error());
    let ready = projector_error.is_none()
        && projections
            .iter()
            .all(|p| p.position >= head && p.failure.is_none());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            head,
            projector_error,
            projections,
        }),
    )
        .into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text format (read by Prometheus)", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let head = state.system.store.head().await.unwrap_or(0);
    let mut positions = Vec::new();
    for name in state.projections.iter() {
        positions.push((
            (*name).to_owned(),
            state.checkpoints.position(name).await.unwrap_or(0),
        ));
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state
            .metrics
            .render(head, state.exec.appended(), &positions),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::openapi;

    fn doc() -> serde_json::Value {
        serde_json::to_value(openapi()).unwrap()
    }

    #[test]
    fn the_writes_open_without_a_token_are_the_idempotency_layers_list() {
        let doc = doc();
        let mut open = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let write = ["post", "put", "patch", "delete"].contains(&method.as_str());
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                if write && !secured {
                    open.push(path.clone());
                }
            }
        }
        assert_eq!(open, crate::idempotency::OPEN_WRITES.to_vec());
    }

    #[test]
    fn every_problem_answer_is_problem_json_and_every_route_documents_its_middlewares_answers() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for status in ["429", "504"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
                if path.starts_with("/v1/") {
                    assert!(responses.contains_key("503"), "{method} {path}: no 503");
                }
                if op["requestBody"].is_object() {
                    for status in ["400", "413", "415", "422"] {
                        assert!(
                            responses.contains_key(status),
                            "{method} {path}: no {status}"
                        );
                    }
                }
                for (status, response) in responses {
                    if path == "/readyz" || !status.starts_with(['4', '5']) {
                        continue;
                    }
                    let content = response["content"].as_object().unwrap();
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_documented_purposes_are_the_domains() {
        let doc = doc();
        let documented: Vec<String> = doc["components"]["schemas"]["PurposeName"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let domain: Vec<String> = kring_domain::Purpose::ALL
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        assert_eq!(documented, domain);
    }

    #[test]
    fn a_uuid_in_the_document_has_the_uuid_pattern() {
        let doc = doc();
        let params =
            &doc["paths"]["/v1/children/{child_id}/consents/{purpose}"]["put"]["parameters"];
        assert_eq!(params[0]["schema"]["pattern"], super::UUID_PATTERN);
        assert_eq!(
            params[1]["schema"]["$ref"],
            "#/components/schemas/PurposeName"
        );
    }
}
