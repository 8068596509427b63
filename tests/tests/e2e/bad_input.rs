//! Bad input never gives a 5xx: on every route, malformed JSON, wrong types, missing fields,
//! well-typed but invalid values, unknown purposes, huge bodies, wrong content types and
//! malformed ids or query parameters are answered with a 4xx problem+json carrying a stable
//! `code`, and nothing is written. After the bad requests, the good one is accepted: it was the
//! badness that was refused, not the caller.

use crate::harness::{Answer, Backend, Body, Server};
use crate::matrix::{request, Request, Role, MATRIX, ROLES};
use crate::routes;
use crate::school::{photo, School};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};

/// The largest JSON body `kring-api serve` takes (`Limits::default().json_body`).
const JSON_LIMIT: usize = 256 * 1024;

/// An id nobody has.
const UNKNOWN: &str = "\"00000000-0000-7000-8000-000000000000\"";

/// A well-typed value that is still wrong: the field, the value as JSON, the status and code.
type WrongValue = (&'static str, &'static str, u16, &'static str);

/// The JSON writes: fields that must be given, and well-typed values that are still wrong (the
/// field, the value as JSON, the status and code they earn).
#[rustfmt::skip]
pub const JSON_WRITES: &[(&str, &[&str], &[WrongValue])] = &[
    ("POST /v1/schools", &["name", "brin"], &[
        ("brin", r#""not a brin""#, 422, "validation_failed"),
        ("name", r#""   ""#, 422, "validation_failed"),
    ]),
    ("POST /v1/schools/{school_id}/staff", &["display_name", "email", "role"], &[
        ("email", r#""geen-adres""#, 422, "validation_failed"),
        ("role", r#""janitor""#, 422, "validation_failed"),
    ]),
    ("POST /v1/schools/{school_id}/groups", &["name"], &[
        ("name", r#""""#, 422, "validation_failed"),
    ]),
    ("POST /v1/groups/{group_id}/staff", &["person_id"], &[
        ("person_id", r#""not-a-uuid""#, 422, "validation_failed"),
        ("person_id", UNKNOWN, 404, "not_found"),
    ]),
    ("POST /v1/groups/{group_id}/children", &["first_name", "last_initial"], &[
        ("last_initial", r#""Kwast""#, 422, "validation_failed"),
        ("first_name", r#""""#, 422, "validation_failed"),
    ]),
    ("POST /v1/invitations", &["child_id", "email"], &[
        ("email", r#""nope""#, 422, "validation_failed"),
        ("child_id", UNKNOWN, 404, "not_found"),
    ]),
    ("POST /v1/invitations/accept", &["code", "display_name"], &[
        ("code", r#""garbage""#, 404, "not_found"),
        ("display_name", r#""  ""#, 422, "validation_failed"),
    ]),
    ("POST /v1/invitations/{invitation_id}/approve", &[], &[
        ("child_id", r#""not-a-uuid""#, 422, "validation_failed"),
        ("child_id", UNKNOWN, 404, "not_found"),
    ]),
    ("PUT /v1/children/{child_id}/consents/{purpose}", &["granted"], &[
        ("method", r#""carrier pigeon""#, 422, "validation_failed"),
    ]),
    ("POST /v1/groups/{group_id}/posts", &["body"], &[
        ("body", r#""   ""#, 422, "validation_failed"),
        ("media", r#"[{"media_id": "00000000-0000-7000-8000-000000000000"}]"#, 404, "not_found"),
    ]),
    ("POST /v1/media/{media_id}/tags", &["child_id"], &[
        ("child_id", UNKNOWN, 422, "rule_violated"),
    ]),
    ("DELETE /v1/posts/{post_id}", &["reason"], &[
        ("reason", r#""""#, 422, "validation_failed"),
    ]),
    ("DELETE /v1/media/{media_id}", &["reason"], &[
        ("reason", r#""   ""#, 422, "validation_failed"),
    ]),
    ("POST /v1/conversations", &["child_id", "body"], &[
        ("body", r#""   ""#, 422, "validation_failed"),
        ("participants", r#"["not-a-uuid"]"#, 422, "validation_failed"),
    ]),
    ("POST /v1/conversations/{conversation_id}/messages", &["body"], &[
        ("body", r#""""#, 422, "validation_failed"),
    ]),
    ("PUT /v1/me/quiet-hours", &["timezone", "weekly"], &[
        ("timezone", r#""Mars/Olympus""#, 422, "validation_failed"),
        ("weekly", r#"[{"day": "funday", "start": "18:00", "end": "07:00"}]"#, 422, "validation_failed"),
        ("weekly", r#"[{"day": "monday", "start": "25:00", "end": "07:00"}]"#, 422, "validation_failed"),
    ]),
    ("POST /v1/children/{child_id}/absences", &["from", "to", "reason"], &[
        ("from", r#""31-12-2026""#, 422, "validation_failed"),
        ("to", r#""2000-01-01""#, 422, "validation_failed"),
    ]),
    ("POST /v1/groups/{group_id}/activities", &["title", "starts_at", "ends_at", "volunteer_slots"], &[
        ("volunteer_slots", "-1", 422, "validation_failed"),
        ("volunteer_slots", "100000", 422, "validation_failed"),
        ("ends_at", r#""2000-01-01T00:00:00Z""#, 422, "validation_failed"),
    ]),
    ("PUT /v1/schools/{school_id}/staff/{person_id}/role", &["role"], &[
        ("role", r#""janitor""#, 422, "validation_failed"),
    ]),
    ("POST /v1/children/{child_id}/move", &["group_id"], &[
        ("group_id", r#""not-a-uuid""#, 422, "validation_failed"),
        ("group_id", UNKNOWN, 404, "not_found"),
    ]),
    ("PATCH /v1/children/{child_id}", &[], &[
        ("last_initial", r#""Kwast""#, 422, "validation_failed"),
        ("first_name", r#""""#, 422, "validation_failed"),
    ]),
    ("PATCH /v1/posts/{post_id}", &["body"], &[
        ("body", r#""   ""#, 422, "validation_failed"),
    ]),
    ("PATCH /v1/schools/{school_id}/settings", &[], &[
        ("retention_days", "0", 422, "validation_failed"),
        ("absence_notice_days", "-1", 422, "validation_failed"),
        ("timezone", r#""Mars/Olympus""#, 422, "validation_failed"),
    ]),
    ("POST /v1/schools/{school_id}/consent-policy", &["purposes"], &[
        ("purposes", "[]", 422, "validation_failed"),
        ("purposes", r#"[{"purpose": "photos", "description": "Foto's"}]"#, 422, "validation_failed"),
    ]),
    ("POST /v1/schools/{school_id}/year-transition", &["dry_run", "effective_on", "groups"], &[
        ("effective_on", r#""30-08-2027""#, 422, "validation_failed"),
        ("groups", r#"[{"group_id": "00000000-0000-7000-8000-000000000000"}]"#, 404, "not_found"),
        ("groups", r#"[{"group_id": "00000000-0000-7000-8000-000000000000", "children_to_new": "X", "children_to": "00000000-0000-7000-8000-000000000000"}]"#, 422, "validation_failed"),
    ]),
    ("POST /v1/me/sso-identity", &["token"], &[
        ("token", r#""not a token""#, 422, "validation_failed"),
    ]),
    ("POST /v1/tokens/revocations", &["jti"], &[
        ("jti", r#""not-a-uuid""#, 422, "validation_failed"),
    ]),
    ("POST /v1/me/push-subscriptions", &["endpoint", "keys"], &[
        ("endpoint", r#""http://push.example.com/e2e""#, 422, "validation_failed"),
        ("endpoint", r#""https://10.0.0.1/e2e""#, 422, "validation_failed"),
        ("keys", r#"{"p256dh": "AAAA", "auth": "_ordMnz7uTCmrpBTeUV4Bw"}"#, 422, "validation_failed"),
    ]),
    ("POST /v1/me/notifications/delivered", &["notification_ids"], &[
        ("notification_ids", r#"["nonsense"]"#, 422, "validation_failed"),
        ("notification_ids", "[]", 422, "validation_failed"),
    ]),
    ("POST /v1/groups/{group_id}/meeting-rounds", &["title", "per", "place", "book_until"], &[
        ("title", r#""   ""#, 422, "validation_failed"),
        ("per", r#""class""#, 422, "validation_failed"),
        ("place", r#"{"kind": "online", "url": "http://meet.example/groep-a"}"#, 422, "validation_failed"),
        ("place", r#"{"kind": "garden"}"#, 422, "validation_failed"),
        ("slots", "[]", 422, "validation_failed"),
        ("slots", r#"[{"starts_at": "2030-01-01T15:00:00Z", "ends_at": "2030-01-01T14:00:00Z", "staff": []}]"#, 422, "validation_failed"),
        ("generate", r#"{"days": [{"date": "2030-01-01", "from": "15:00", "to": "16:00"}], "slot_minutes": 10, "staff": []}"#, 422, "validation_failed"),
        ("group_ids", r#"["00000000-0000-7000-8000-000000000000"]"#, 404, "not_found"),
    ]),
    ("POST /v1/meeting-rounds/{round_id}/slots", &["starts_at", "ends_at", "staff"], &[
        ("ends_at", r#""2000-01-01T00:00:00Z""#, 422, "validation_failed"),
        ("staff", "[]", 422, "validation_failed"),
        ("staff", r#"["00000000-0000-7000-8000-000000000000"]"#, 422, "validation_failed"),
    ]),
    ("POST /v1/meeting-rounds/{round_id}/bookings", &["slot_id", "child_id"], &[
        ("slot_id", "99", 422, "validation_failed"),
        ("slot_id", "-1", 422, "validation_failed"),
        ("child_id", r#""not-a-uuid""#, 422, "validation_failed"),
    ]),
    ("PUT /v1/meeting-rounds/{round_id}/bookings/{booking_id}", &["slot_id"], &[
        ("slot_id", "99", 422, "validation_failed"),
        ("slot_id", "1", 409, "conflict"),
    ]),
    ("PUT /v1/me/notification-preferences", &[], &[
        ("kinds", r#"{"post": "pigeon"}"#, 422, "validation_failed"),
        ("kinds", r#"{"gossip": "push"}"#, 422, "validation_failed"),
        ("digest_at", r#""25:00""#, 422, "validation_failed"),
        ("timezone", r#""Mars/Olympus""#, 422, "validation_failed"),
    ]),
    ("POST /v1/me/read", &[], &[
        ("post_ids", r#"["not-a-uuid"]"#, 422, "validation_failed"),
        ("post_ids", r#"["00000000-0000-7000-8000-000000000000"]"#, 404, "not_found"),
        ("message_ids", r#"["00000000-0000-7000-8000-000000000000"]"#, 404, "not_found"),
    ]),
];

/// Query strings that are wrong for a GET: the route, what to put after `?`, status and code.
#[rustfmt::skip]
const QUERIES: &[(&str, &str, u16, &str)] = &[
    ("GET /v1/feed", "limit=0", 422, "validation_failed"),
    ("GET /v1/feed", "limit=lots", 400, "bad_request"),
    ("GET /v1/feed", "before=last-tuesday", 422, "validation_failed"),
    ("GET /v1/feed", "group_id=5a", 400, "bad_request"),
    ("GET /v1/conversations", "limit=0", 422, "validation_failed"),
    ("GET /v1/conversations", "before=yesterday", 400, "bad_request"),
    ("GET /v1/conversations/{conversation_id}/messages", "limit=100000", 422, "validation_failed"),
    ("GET /v1/groups/{group_id}/absences", "date=31-12-2026", 400, "bad_request"),
    ("GET /v1/audit/access-log", "subject=planet:mars", 422, "validation_failed"),
    ("GET /v1/audit/access-log", "limit=0", 422, "validation_failed"),
    ("GET /v1/me/notifications", "as_of=yesterday", 400, "bad_request"),
    ("GET /v1/children/{child_id}/consents", "as_of=gisteren", 400, "bad_request"),
    ("GET /v1/children/{child_id}/consents/history", "purpose=photos", 422, "validation_failed"),
];

/// A bad variant of a good request, with the status and code it must earn.
struct Bad {
    what: String,
    method: Method,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
}

/// The column of the first caller the matrix lets through on `route`.
/// Reads that are not answered from the read models, so take no `min_position`: the server's
/// VAPID public key, and the delivery worker's dead letters.
const NOT_READ_MODELS: &[&str] = &[
    "GET /v1/push/vapid-public-key",
    "GET /v1/operator/dead-letters",
];

fn allowed(route: &str) -> (Role, u16) {
    let (_, row) = MATRIX
        .iter()
        .find(|(r, _)| *r == route)
        .unwrap_or_else(|| panic!("{route} is in the matrix"));
    // The role it succeeds for; else the one it is authorised for (a retry of a dead letter
    // answers `404` for the operator when there is none to retry).
    ROLES
        .iter()
        .zip(row)
        .find(|(_, status)| (200..300).contains(*status))
        .or_else(|| {
            ROLES
                .iter()
                .zip(row)
                .find(|(_, status)| !matches!(**status, 401 | 403))
        })
        .map_or_else(
            || panic!("someone may call {route}"),
            |(role, status)| (*role, *status),
        )
}

/// The path with its `i`-th UUID segment made malformed, for every UUID segment.
fn malformed_ids(path: &str) -> Vec<String> {
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let segments: Vec<&str> = path.split('/').collect();
    segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.parse::<uuid::Uuid>().is_ok())
        .map(|(i, _)| {
            let mut broken = segments.clone();
            broken[i] = "not-a-uuid";
            let broken = broken.join("/");
            query.map_or(broken.clone(), |q| format!("{broken}?{q}"))
        })
        .collect()
}

/// The same value with another JSON type.
fn mistyped(value: &Value) -> Option<Value> {
    Some(match value {
        Value::String(_) => json!(12345),
        Value::Number(_) => json!("many"),
        Value::Bool(_) => json!("yes"),
        Value::Array(_) => json!("not a list"),
        Value::Object(_) => json!(7),
        Value::Null => return None,
    })
}

fn bad(
    what: impl Into<String>,
    method: &Method,
    path: &str,
    body: Body,
    status: u16,
    code: &'static str,
) -> Bad {
    Bad {
        what: what.into(),
        method: method.clone(),
        path: path.to_owned(),
        body,
        status,
        code,
    }
}

/// Every bad variant of the good request `good` of `route`.
fn variants(route: &str, good: &Request) -> Vec<Bad> {
    let method = &good.method;
    let mut out = Vec::new();
    for path in malformed_ids(&good.path) {
        out.push(bad(
            format!("a malformed id: {path}"),
            method,
            &path,
            good.body.clone(),
            400,
            "bad_request",
        ));
    }
    if *method == Method::GET && !NOT_READ_MODELS.contains(&route) {
        let sep = if good.path.contains('?') { '&' } else { '?' };
        let path = format!("{}{sep}min_position=soon", good.path);
        out.push(bad(
            "min_position=soon",
            method,
            &path,
            Body::Empty,
            400,
            "bad_request",
        ));
        let bare = good.path.split('?').next().unwrap_or_default();
        for (_, query, status, code) in QUERIES.iter().filter(|(r, ..)| *r == route) {
            out.push(bad(
                *query,
                method,
                &format!("{bare}?{query}"),
                Body::Empty,
                *status,
                code,
            ));
        }
    }
    if route == "PUT /v1/children/{child_id}/consents/{purpose}" {
        let path = good.path.replace("internal_research", "photos");
        out.push(bad(
            "an unknown purpose",
            method,
            &path,
            good.body.clone(),
            422,
            "validation_failed",
        ));
    }
    let Body::Json(Value::Object(fields)) = &good.body else {
        return out;
    };
    let (_, required, wrong) = JSON_WRITES
        .iter()
        .find(|(r, ..)| *r == route)
        .unwrap_or_else(|| panic!("{route}: its fields are listed in JSON_WRITES"));
    let with = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut changed = fields.clone();
        f(&mut changed);
        Body::Json(Value::Object(changed))
    };
    let raw = |content_type: &str, bytes: &[u8]| Body::Raw(content_type.to_owned(), bytes.to_vec());
    let path = good.path.as_str();
    out.push(bad(
        "malformed JSON",
        method,
        path,
        raw("application/json", br#"{"name": "#),
        400,
        "bad_request",
    ));
    out.push(bad(
        "an array for an object",
        method,
        path,
        Body::Json(json!([1, 2, 3])),
        422,
        "validation_failed",
    ));
    out.push(bad(
        "a JSON string for an object",
        method,
        path,
        Body::Json(json!("hallo")),
        422,
        "validation_failed",
    ));
    // `approve` takes an optional body and reads it whatever its type says.
    if route != "POST /v1/invitations/{invitation_id}/approve" {
        let text = serde_json::to_vec(&good.body_json()).unwrap_or_default();
        out.push(bad(
            "text/plain",
            method,
            path,
            raw("text/plain", &text),
            415,
            "unsupported_media_type",
        ));
    }
    for field in *required {
        out.push(bad(
            format!("without {field}"),
            method,
            path,
            with(&|m| {
                m.remove(*field);
            }),
            422,
            "validation_failed",
        ));
    }
    for (field, value) in fields {
        if let Some(other) = mistyped(value) {
            out.push(bad(
                format!("{field} mistyped as {other}"),
                method,
                path,
                with(&|m| {
                    m.insert(field.clone(), other.clone());
                }),
                422,
                "validation_failed",
            ));
        }
    }
    for (field, value, status, code) in *wrong {
        let value: Value = serde_json::from_str(value).expect("JSON in the table");
        out.push(bad(
            format!("{field} = {value}"),
            method,
            path,
            with(&|m| {
                m.insert((*field).to_owned(), value.clone());
            }),
            *status,
            code,
        ));
    }
    // Just over the limit: the server reads up to the limit, refuses, and drains the rest, so
    // the refusal reaches the client rather than a connection reset in the middle of sending.
    let huge = "x".repeat(JSON_LIMIT + 16 * 1024);
    out.push(bad(
        "a body over the limit",
        method,
        path,
        with(&|m| {
            m.insert("padding".to_owned(), json!(huge));
        }),
        413,
        "payload_too_large",
    ));
    out
}

impl Request {
    fn body_json(&self) -> Value {
        match &self.body {
            Body::Json(v) => v.clone(),
            _ => Value::Null,
        }
    }
}

/// Asserts `answer` is the refusal `want` describes.
fn refused(answer: &Answer, want: &Bad, route: &str, failures: &mut Vec<String>) {
    if answer.status != want.status || !answer.is_problem() || answer.body["code"] != want.code {
        failures.push(format!(
            "{route} with {}: expected {} {}, got {} {:?} {}",
            want.what,
            want.status,
            want.code,
            answer.status,
            answer.content_type,
            answer.text().chars().take(300).collect::<String>()
        ));
    }
}

/// The files under the media directory.
fn media_files(api: &Server) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    count(&api.data_dir().join("media"))
}

/// An upload that declares more bytes than the server takes, over a plain socket: the server
/// must refuse it from the header alone, before a byte of the body is sent.
fn declared_too_large(url: &str, token: &str, length: usize) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("a connection");
    // A server waiting for the body it should have refused fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("a read timeout");
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("the request head");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

async fn bad_input_on_every_route_is_refused_and_writes_nothing(backend: Backend) {
    let api = Server::start(backend).await;
    let s = School::build(&api).await;
    let mut failures = Vec::new();
    let mut refusals = 0;
    for route in routes::all() {
        if routes::OPERATIONS.contains(&route) {
            continue;
        }
        let (role, ok) = allowed(route);
        let who = role.who(&s);
        let good = request(&api, &s, route, role).await;
        let mut bad_ones = variants(route, &good);
        if route == "POST /v1/media" {
            let raw = |t: &str, b: Vec<u8>| Body::Raw(t.to_owned(), b);
            let m = &good.method;
            bad_ones.extend([
                bad(
                    "text/plain",
                    m,
                    "/v1/media",
                    raw("text/plain", photo("tekst")),
                    415,
                    "unsupported_media_type",
                ),
                bad(
                    "application/json",
                    m,
                    "/v1/media",
                    raw("application/json", b"{}".to_vec()),
                    415,
                    "unsupported_media_type",
                ),
                bad(
                    "an SVG",
                    m,
                    "/v1/media",
                    raw("image/svg+xml", b"<svg onload='x()'/>".to_vec()),
                    415,
                    "unsupported_media_type",
                ),
                bad(
                    "JPEG bytes said to be PNG",
                    m,
                    "/v1/media",
                    raw("image/png", photo("png")),
                    415,
                    "unsupported_media_type",
                ),
                bad(
                    "no bytes",
                    m,
                    "/v1/media",
                    raw("image/jpeg", Vec::new()),
                    422,
                    "validation_failed",
                ),
            ]);
        }
        for want in &bad_ones {
            let head = api.head().await;
            let files = media_files(&api);
            let path = if want.method == Method::GET && !want.path.contains("min_position") {
                api.fresh(&want.path)
            } else {
                want.path.clone()
            };
            let answer = api
                .send(want.method.clone(), &path, who, want.body.clone())
                .await;
            refused(&answer, want, route, &mut failures);
            if api.head().await != head || media_files(&api) != files {
                failures.push(format!("{route} with {}: something was written", want.what));
            }
            refusals += 1;
        }
        // The good request itself goes through.
        let path = if good.method == Method::GET {
            api.fresh(&good.path)
        } else {
            good.path.clone()
        };
        let answer = api
            .send(good.method.clone(), &path, who, good.body.clone())
            .await;
        if answer.status != ok {
            failures.push(format!(
                "{route}: the good request answers {} {}",
                answer.status,
                answer.text()
            ));
        }
    }
    // Over the upload limit, said by the header: refused before the body is read.
    let token = api.token(Role::Teacher.who(&s)).expect("a token");
    let files = media_files(&api);
    let url = api.url.clone();
    let (status, answer) =
        tokio::task::spawn_blocking(move || declared_too_large(&url, &token, 64 * 1024 * 1024))
            .await
            .expect("the upload");
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert_eq!(media_files(&api), files);
    refusals += 1;

    assert!(
        failures.is_empty(),
        "{} of {refusals} bad requests were not refused as they should be:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every write and read route contributed (some 260 bad requests).
    assert!(refusals > 200, "only {refusals} bad requests tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_route_is_refused_and_writes_nothing_on_sqlite() {
    bad_input_on_every_route_is_refused_and_writes_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_route_is_refused_and_writes_nothing_on_postgres() {
    bad_input_on_every_route_is_refused_and_writes_nothing(Backend::Postgres).await;
}
