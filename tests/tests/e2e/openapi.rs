//! `GET /openapi.json` is an OpenAPI 3.1 document that lists every route of the contract (and the
//! ones the implementation adds), and every route it lists is one the server serves.

use crate::bad_input::JSON_WRITES;
use crate::harness::{Backend, Body, Server, Who};
use crate::routes;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(METHOD, path shape)` of every operation the document lists, with the operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_uppercase(), routes::shape(path), op.clone()));
            }
        }
    }
    out
}

/// The names in a path template: `{child_id}` and `{purpose}` of
/// `/v1/children/{child_id}/consents/{purpose}`.
fn template_names(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// Every parameter of every operation is declared where a client sends it: a path parameter
/// only when its name is in the path template, every name of the template as a path parameter,
/// everything else in the query or a header, and no parameter twice.
fn parameter_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let template = template_names(path);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let name = format!("{} {path}", method.to_uppercase());
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut seen = BTreeSet::new();
            let mut in_path = BTreeSet::new();
            for p in &params {
                let (Some(pname), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
                    problems.push(format!("{name}: a parameter without name or in: {p}"));
                    continue;
                };
                if !["path", "query", "header", "cookie"].contains(&place) {
                    problems.push(format!("{name}: {pname} is in: {place}"));
                }
                if !seen.insert((pname.to_owned(), place.to_owned())) {
                    problems.push(format!("{name}: {pname} (in: {place}) is declared twice"));
                }
                if place == "path" {
                    in_path.insert(pname.to_owned());
                    if !template.contains(pname) {
                        problems.push(format!(
                            "{name}: {pname} is declared in: path but is not in the path"
                        ));
                    }
                    if p["required"] != Value::Bool(true) {
                        problems.push(format!("{name}: path parameter {pname} is not required"));
                    }
                }
            }
            for missing in template.difference(&in_path) {
                problems.push(format!("{name}: {{{missing}}} is not declared in: path"));
            }
        }
    }
    problems
}

/// Resolves `#/components/schemas/Name`.
fn resolves(doc: &Value, reference: &str) -> bool {
    reference
        .strip_prefix("#/components/schemas/")
        .is_some_and(|name| doc["components"]["schemas"].get(name).is_some())
}

/// Every `$ref` anywhere under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push(r.to_owned());
                    }
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_3_1_and_lists_every_route_of_the_contract() {
    let api = Server::start(Backend::Sqlite).await;
    let answer = api.get("/openapi.json", Who::Anonymous).await;
    let doc = answer.expect(200).clone();
    assert!(
        answer.content_type.starts_with("application/json"),
        "{}",
        answer.content_type
    );
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1"), "OpenAPI 3.1, not {version}");
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));

    let listed = operations(&doc);
    let documented: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let mut missing = Vec::new();
    // The document need not describe itself.
    for route in routes::all()
        .into_iter()
        .filter(|r| *r != "GET /openapi.json")
    {
        let (method, path) = routes::split(route);
        if !documented.contains(&(method.to_owned(), routes::shape(path))) {
            missing.push(route);
        }
    }
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");

    // Each operation documents its answers; every schema it names exists; the token-free
    // routes are the ones the contract names.
    let public: BTreeSet<String> = routes::OPERATIONS
        .iter()
        // The calendar feed is read by calendar apps, which send no bearer token: its key is in
        // the query. The VAPID public key is public.
        .chain(&[
            "POST /v1/invitations/accept",
            "GET /v1/me/calendar.ics",
            "GET /v1/push/vapid-public-key",
        ])
        .map(|r| {
            let (m, p) = routes::split(r);
            format!("{m} {}", routes::shape(p))
        })
        .collect();
    for (method, path, op) in &listed {
        let name = format!("{method} {path}");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{name} documents its responses"
        );
        let mut named = Vec::new();
        refs(op, &mut named);
        for reference in named {
            assert!(resolves(&doc, &reference), "{name}: {reference} resolves");
        }
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        assert_eq!(
            secured,
            !public.contains(&name),
            "{name}: bearer token required is {secured}"
        );
    }
    // Every route that reads a JSON body documents its schema.
    for (route, ..) in JSON_WRITES {
        let (method, path) = routes::split(route);
        let (_, _, op) = listed
            .iter()
            .find(|(m, p, _)| m == method && *p == routes::shape(path))
            .expect("documented");
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{route}: its JSON body is documented: {op}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Parameters are where a client sends them (a generated client builds its calls from
    // this): query parameters such as `min_position` in the query, never in the path.
    let problems = parameter_problems(&doc);
    assert!(problems.is_empty(), "parameters: {problems:#?}");
    // Every write declares the optional Idempotency-Key header that every write accepts.
    for (method, path, op) in &listed {
        if method == "GET" {
            continue;
        }
        let key = op["parameters"].as_array().and_then(|ps| {
            ps.iter()
                .find(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
        });
        assert!(
            key.is_some_and(|k| k["required"] != Value::Bool(true)),
            "{method} {path} declares an optional Idempotency-Key header: {op}"
        );
    }
    let feed = &doc["paths"]["/v1/feed"]["get"]["parameters"];
    for query in ["min_position", "limit", "before", "group_id"] {
        assert!(
            feed.as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == query && p["in"] == "query")),
            "GET /v1/feed takes {query} in the query: {feed}"
        );
    }

    // Every documented route is served: called without a token, none answers the router's
    // "route not found" or 405.
    for (method, path, _) in &listed {
        let concrete = path.replace("{}", "01a20809-b1ef-712b-9a38-1f772a8c8fba");
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let answer = api
            .send(method.clone(), &concrete, Who::Anonymous, Body::Empty)
            .await;
        assert_ne!(answer.status, 405, "{method} {path} is routed");
        assert!(
            !(answer.status == 404 && answer.text().contains("route not found")),
            "{method} {path} is routed: {}",
            answer.text()
        );
    }
}

#[test]
fn a_query_parameter_declared_in_the_path_is_a_problem() {
    let doc = serde_json::json!({"paths": {
        "/v1/children/{child_id}/consents": {"get": {"parameters": [
            {"name": "child_id", "in": "path", "required": true},
            {"name": "min_position", "in": "path", "required": true},
        ]}},
        "/v1/media/{media_id}": {"get": {"parameters": [
            {"name": "min_position", "in": "query", "required": false},
        ]}},
        "/v1/feed": {"get": {"parameters": [
            {"name": "min_position", "in": "query", "required": false},
        ]}},
    }});
    let problems = parameter_problems(&doc);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("min_position is declared in: path"));
    assert!(problems[1].contains("{media_id} is not declared in: path"));
}
