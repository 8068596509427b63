//! `GET /openapi.json` is an OpenAPI 3.1 document that lists every route of API.md (and the
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
    // routes are the ones API.md names.
    let public: BTreeSet<String> = routes::OPERATIONS
        .iter()
        .chain(&["POST /v1/invitations/accept"])
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
