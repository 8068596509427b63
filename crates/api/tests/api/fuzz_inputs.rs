//! Hostile bytes against what the API reads: media files on disk (the `KRINGMEDIA2` chunked
//! container: header line and sealed chunks), media type sniffing, local tokens (HS256) and an
//! issuer's tokens with its JWKS document, and requests through the real router on a real
//! socket (every route of the OpenAPI document with mutated path ids, query strings, tokens,
//! content types and bodies — structure-aware ones built from each route's request schema).
//!
//! Nothing may panic. A damaged media file reads as a typed error or as exactly the bytes
//! uploaded; a token verifies only as what was signed; a request is answered, never with a 5xx,
//! and a refusal is problem+json that writes nothing. Longer runs: `PROPTEST_CASES=100000 cargo
//! test -p kring-api --test fuzz_inputs`.

#![allow(clippy::unwrap_used)]

use axum::body::Bytes;
use futures::StreamExt;
use kring_api::auth::{Auth, Caller, Verified};
use kring_api::error::Code;
use kring_api::media::{content_type, decrypt_file, parse_file, sniff, MediaFiles};
use kring_api::media_store::local::LocalStore;
use kring_api::server::{start, Running, ServeOptions};
use kring_api::state::Limits;
use kring_domain::simulation::hostile::{
    fuzz_config, hostile_value, mutated_bytes, mutated_json, mutated_json_text, mutated_text,
};
use kring_domain::{MediaId, PersonId};
use kring_projections::Config;
use kring_store::vault::{KeyVault, MasterKey};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Panics on the runtime's threads, counted: a panic inside a spawned or blocking task is
/// turned into an error answer (a 500) and would otherwise go unnoticed. (A panic on a test's
/// own thread fails that test by itself.)
static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio"))
            {
                PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Runs `check` and fails when it, or anything it started, panicked.
fn no_panic(
    check: impl std::future::Future<Output = Result<(), TestCaseError>>,
) -> Result<(), TestCaseError> {
    count_panics();
    let before = PANICS.load(std::sync::atomic::Ordering::SeqCst);
    let outcome = runtime().block_on(check);
    let after = PANICS.load(std::sync::atomic::Ordering::SeqCst);
    prop_assert_eq!(after, before, "a panic (see the output above)");
    outcome
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// Media files on disk.

struct Media {
    files: MediaFiles,
    path: std::path::PathBuf,
    vault: Arc<KeyVault>,
    id: MediaId,
    file: Vec<u8>,
    plaintext: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// One upload of three chunks (64 KiB, 64 KiB, the rest), as the server stores it.
fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let vault = Arc::new(
                KeyVault::open_sqlite(&dir.path().join("vault.db"), &MasterKey::generate())
                    .await
                    .unwrap(),
            );
            let files = MediaFiles::new(dir.path().join("media"), Arc::clone(&vault));
            let mut plaintext = vec![0xFF, 0xD8, 0xFF, 0xE0];
            plaintext.extend(
                (0..150_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]),
            );
            let id = MediaId::generate();
            std::fs::create_dir_all(dir.path().join("media")).unwrap();
            files
                .store(
                    id,
                    PersonId::generate(),
                    "image/jpeg",
                    futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(
                        plaintext.clone(),
                    ))]),
                )
                .await
                .unwrap();
            let path = LocalStore::new(dir.path().join("media")).path(id);
            let file = std::fs::read(&path).unwrap();
            Media {
                files,
                path,
                vault,
                id,
                file,
                plaintext,
                _dir: dir,
            }
        })
    })
}

/// The file with its header line replaced by `header` (the magic line and the chunks kept).
fn with_header(file: &[u8], header: &Value) -> Vec<u8> {
    let end = 12 + file[12..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let mut out = file[..12].to_vec();
    out.extend(header.to_string().as_bytes());
    out.push(b'\n');
    out.extend(&file[end..]);
    out
}

fn damaged_media() -> impl Strategy<Value = Vec<u8>> {
    let m = media();
    let (header, _) = parse_file(&m.file).unwrap();
    let header = serde_json::to_value(header).unwrap();
    let file = m.file.clone();
    prop_oneof![
        mutated_bytes(m.file.clone()),
        mutated_json(header).prop_map(move |h| with_header(&file, &h)),
    ]
}

/// Reads `bytes` as the stored file of the upload in every way the server does: its header,
/// the streamed download to its end, the in-memory decryption.
async fn read_media(bytes: &[u8]) -> Result<(), TestCaseError> {
    let m = media();
    std::fs::write(&m.path, bytes).unwrap();
    let _ = m.files.header(m.id).await;
    match m.files.open(m.id).await {
        Ok(Some((_, mut stream))) => {
            let mut read = Vec::new();
            let mut failed = false;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => read.extend_from_slice(&c),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                prop_assert!(read == m.plaintext, "a damaged file streamed other bytes");
            }
        }
        Ok(None) => prop_assert!(false, "a damaged file read as erased"),
        Err(e) => prop_assert!(!e.detail.is_empty()),
    }
    match decrypt_file(&m.vault, bytes).await {
        Ok(Some(plain)) => prop_assert!(plain == m.plaintext, "decrypted to other bytes"),
        Ok(None) => prop_assert!(false, "a damaged file decrypted as erased"),
        Err(e) => prop_assert!(!e.detail.is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(160))]

    #[test]
    fn a_damaged_media_file_reads_as_a_typed_error_or_as_the_bytes_uploaded(bytes in damaged_media()) {
        no_panic(read_media(&bytes))?;
    }

    #[test]
    fn sniffing_and_content_types_take_any_bytes(
        declared in prop_oneof![
            prop::sample::select(vec![
                "image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/avif",
                "video/mp4", "video/quicktime", "video/webm", "video/mpeg", "image/x-other",
            ]).prop_map(str::to_owned),
            "\\PC{0,40}",
            mutated_text("Image/JPEG; charset=binary"),
        ],
        bytes in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        if let Ok(essence) = content_type(Some(&declared)) {
            prop_assert!(essence.starts_with("image/") || essence.starts_with("video/"));
            prop_assert!(essence != "image/svg+xml");
            let _ = sniff(&essence, &bytes);
        }
        let _ = sniff(&declared, &bytes);
    }
}

/// The header's size near `u64::MAX` overflowed the length check (`header line + size + tags`)
/// of a download: a panic in a debug build, a wrapped length in a release build.
#[test]
fn a_media_header_claiming_an_enormous_size_is_a_typed_error() {
    let m = media();
    let (header, _) = parse_file(&m.file).unwrap();
    for size in [u64::MAX, u64::MAX - 15, u64::MAX / 2] {
        let mut h = serde_json::to_value(&header).unwrap();
        h["size"] = json!(size);
        no_panic(read_media(&with_header(&m.file, &h))).unwrap();
        let refused = runtime().block_on(m.files.open(m.id)).err();
        assert!(refused.is_some(), "size {size} was not refused");
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

fn local_auth() -> &'static (Auth, String, Verified) {
    static AUTH: OnceLock<(Auth, String, Verified)> = OnceLock::new();
    AUTH.get_or_init(|| {
        let auth = Auth::with_secret("fuzz", vec![7; 48]).unwrap();
        let person = PersonId::generate();
        let (token, jti) = auth
            .mint_with_id(Caller::Person(person), chrono::Duration::hours(1))
            .unwrap();
        let verified = Verified::Local {
            caller: Caller::Person(person),
            jti,
        };
        (auth, token, verified)
    })
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// The header and claims of a token, as JSON.
fn token_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&b64url_decode(parts.next().unwrap())).unwrap();
    let claims = serde_json::from_slice(&b64url_decode(parts.next().unwrap())).unwrap();
    (header, claims)
}

/// A token of `header` and `claims` signed with HS256 and `secret` (whatever the header says).
fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::Mac as _;
    let signing = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing.as_bytes());
    format!("{signing}.{}", b64url(&mac.finalize().into_bytes()))
}

proptest! {
    #![proptest_config(fuzz_config(256))]

    #[test]
    fn a_mutated_local_token_verifies_only_as_what_was_signed(token in mutated_text(&local_auth().1)) {
        let (auth, _, verified) = local_auth();
        match runtime().block_on(auth.verify(&token)) {
            Ok(v) => prop_assert_eq!(&v, verified),
            Err(e) => prop_assert_eq!(e.code, Code::Unauthenticated),
        }
    }

    #[test]
    fn a_local_token_with_hostile_claims_signed_by_the_key_is_verified_or_refused(
        header in mutated_json(token_parts(&local_auth().1).0),
        claims in mutated_json(token_parts(&local_auth().1).1),
    ) {
        let (auth, _, _) = local_auth();
        let token = sign_hs256(&header, &claims, &[7; 48]);
        match runtime().block_on(auth.verify(&token)) {
            Ok(Verified::Local { caller, jti }) => {
                let claimed_jti = claims["jti"].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok());
                prop_assert_eq!(claimed_jti, Some(jti));
                let sub = claims["sub"].as_str();
                match caller {
                    Caller::Person(p) => prop_assert_eq!(sub.and_then(|s| s.parse::<PersonId>().ok()), Some(p)),
                    Caller::Operator => prop_assert_eq!(sub, Some("operator")),
                }
            }
            Ok(other) => prop_assert!(false, "a local key made {other:?}"),
            Err(e) => prop_assert_eq!(e.code, Code::Unauthenticated),
        }
    }
}

const ISSUER: &str = "https://login.school-board.example";
const AUDIENCE: &str = "kring";
/// A P-256 key pair made for these tests only.
const ISSUER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2zo7xnsCNEN7oKgd
fkoKkKDVT1/FzTWhaRb6dGDGwv+hRANCAATTKOM5MIDf7IwbwDbDTpLI/WGYqAO9
1mH+7ltHdxSFPwkzQNWceGMjUsuyKDsPr4+YN/7byRinZGl4tUNHSb8g
-----END PRIVATE KEY-----
";

fn issuer_jwks() -> Value {
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": "0yjjOTCA3-yMG8A2w06SyP1hmKgDvdZh_u5bR3cUhT8",
        "y": "CTNA1Zx4YyNSy7IoOw-vj5g3_tvJGKdkaXi1Q0dJvyA",
    }]})
}

fn issuer_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".to_owned());
        let now = chrono::Utc::now().timestamp();
        jsonwebtoken::encode(
            &header,
            &json!({"sub": "teacher-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}),
            &jsonwebtoken::EncodingKey::from_ec_pem(ISSUER_KEY.as_bytes()).unwrap(),
        )
        .unwrap()
    })
}

/// The issuer's JWKS document as `jwks` says, and tokens checked against it: the real token
/// and `token`. Only the issuer's key signs the subject in.
async fn issuer(jwks: &str, token: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks).unwrap();
    let auth = match Auth::with_secret("fuzz", vec![7; 48])
        .unwrap()
        .with_oidc_timeout(
            ISSUER,
            path.to_str().unwrap(),
            AUDIENCE,
            Duration::from_secs(2),
        )
        .await
    {
        Ok(auth) => auth,
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    for t in [issuer_token(), token] {
        match auth.verify(t).await {
            Ok(Verified::External { subject, .. }) => prop_assert_eq!(subject, "teacher-1"),
            Ok(Verified::Local { .. }) => prop_assert!(false, "an issuer token read as local"),
            Err(e) => prop_assert_eq!(e.code, Code::Unauthenticated),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(192))]

    #[test]
    fn a_hostile_jwks_document_or_issuer_token_is_refused_with_a_type(
        jwks in prop_oneof![
            mutated_json_text(issuer_jwks()),
            Just(issuer_jwks().to_string()),
        ],
        token in prop_oneof![
            Just(issuer_token().to_owned()),
            mutated_text(issuer_token()),
        ],
    ) {
        no_panic(issuer(&jwks, &token))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Requests through the router.

struct Api {
    running: Running,
    http: reqwest::Client,
    routes: Vec<Route>,
    ids: Vec<String>,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
struct Route {
    method: reqwest::Method,
    path: String,
    /// A plausible JSON body built from the route's request schema.
    body: Option<Value>,
    upload: bool,
}

/// Every UUID in `v`.
fn uuids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| uuids(x, out)),
        Value::Object(o) => o.values().for_each(|x| uuids(x, out)),
        _ => {}
    }
}

/// Every string under a `token` key of `v`.
fn tokens(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| tokens(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("token", Value::String(t)) => out.push(t.clone()),
                    _ => tokens(x, out),
                }
            }
        }
        _ => {}
    }
}

/// A value of `schema` (resolving `$ref`s of `doc`), made of plausible parts.
fn sample(schema: &Value, doc: &Value, id: &str, depth: usize) -> Value {
    if depth > 6 {
        return Value::Null;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return sample(&doc["components"]["schemas"][name], doc, id, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[key]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] != "null").or_else(|| a.first()))
        {
            return sample(first, doc, id, depth + 1);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|a| a.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(types) => types
            .iter()
            .find(|t| *t != "null")
            .cloned()
            .unwrap_or(Value::Null),
        other => other.clone(),
    };
    match kind
        .as_str()
        .unwrap_or(if schema["properties"].is_object() {
            "object"
        } else {
            ""
        }) {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .map(|p| {
                    p.iter()
                        .map(|(k, s)| (k.clone(), sample(s, doc, id, depth + 1)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "array" => json!([sample(&schema["items"], doc, id, depth + 1)]),
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "string" => match schema["format"].as_str() {
            Some("uuid") => json!(id),
            Some("date-time") => json!("2026-12-08T10:00:00Z"),
            Some("date") => json!("2026-12-08"),
            Some("email") => json!("ouder@example.org"),
            _ => json!("Tekst"),
        },
        _ => Value::Null,
    }
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let config = Config {
                data_dir: dir.path().to_path_buf(),
                database_url: None,
                eventstore_url: None,
            };
            let mut options = ServeOptions::new(config).without_rate_limits();
            options.retention = false;
            options.limits = Limits {
                media_body: 64 * 1024,
                ..options.limits
            };
            let running = start(options).await.unwrap();
            let demo_path = kring_api::demo::seed(&running.state, &running.url())
                .await
                .unwrap();
            let demo: Value =
                serde_json::from_str(&std::fs::read_to_string(demo_path).unwrap()).unwrap();
            let http = reqwest::Client::new();
            let doc: Value = http
                .get(format!("{}/openapi.json", running.url()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut ids = Vec::new();
            uuids(&demo, &mut ids);
            ids.sort();
            ids.dedup();
            let id = ids.first().cloned().unwrap_or_default();
            let mut routes = Vec::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    let Ok(method) = method.to_uppercase().parse::<reqwest::Method>() else {
                        continue;
                    };
                    let content = &op["requestBody"]["content"];
                    let body = content["application/json"]["schema"]
                        .as_object()
                        .map(|s| sample(&Value::Object(s.clone()), &doc, &id, 0));
                    let upload = content
                        .as_object()
                        .is_some_and(|c| c.keys().any(|k| !k.contains("json")));
                    routes.push(Route {
                        method,
                        path: path.clone(),
                        body,
                        upload,
                    });
                }
            }
            assert!(routes.len() > 40, "the document lists every route");
            let mut all_tokens = Vec::new();
            tokens(&demo, &mut all_tokens);
            all_tokens.push(
                running
                    .state
                    .auth
                    .mint(Caller::Operator, chrono::Duration::hours(2))
                    .unwrap(),
            );
            Api {
                running,
                http,
                routes,
                ids,
                tokens: all_tokens,
                _dir: dir,
            }
        })
    })
}

/// One hostile request.
#[derive(Debug, Clone)]
struct Request {
    route: usize,
    params: Vec<String>,
    query: String,
    token: Option<String>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

fn path_value() -> impl Strategy<Value = String> {
    let api = api();
    prop_oneof![
        4 => prop::sample::select(api.ids.clone()),
        1 => prop::sample::select(vec![
            "group_communication", "school_communication", "public_communication", "",
            "not-a-uuid", "..", "%00", "%2F", "00000000-0000-0000-0000-000000000000",
            "0190F5A1-B2C3-7D4E-8F90-A1B2C3D4E5F6", "%F0%9F%98%80", "a%20b",
        ]).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9_~-]{0,40}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let pair = (
        prop::sample::select(vec![
            "min_position",
            "min_position",
            "min_position",
            "as_of",
            "purpose",
            "limit",
            "before",
            "after",
            "from",
            "to",
            "date",
            "cursor",
            "child_id",
            "group_id",
            "q",
            "",
        ]),
        prop_oneof![
            prop::sample::select(vec![
                "1",
                "0",
                "-1",
                "18446744073709551615",
                "9999999",
                "4294967296",
                "18446744073709551616",
                "1e3",
                "",
                "2026-12-07T10:00:00Z",
                "2026-13-45",
                "group_communication",
                "true",
                "%ZZ",
                "%00",
                "%FF%FE",
                "a&b=c",
                "[]",
                "{}",
                "null",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z0-9._~-]{0,30}",
        ],
    )
        .prop_map(|(k, v)| format!("{k}={v}"));
    prop_oneof![
        3 => prop::collection::vec(pair, 0..4).prop_map(|p| p.join("&")),
        1 => mutated_text("min_position=1&as_of=2026-12-07T10:00:00Z&purpose=group_communication")
            .prop_map(|t| t.replace(['#', ' ', '\n', '\r', '\t'], "")),
    ]
}

fn token() -> impl Strategy<Value = Option<String>> {
    let api = api();
    let first = api.tokens.first().cloned().unwrap_or_default();
    prop_oneof![
        12 => prop::sample::select(api.tokens.clone()).prop_map(Some),
        1 => Just(None),
        1 => mutated_text(&first)
            .prop_map(|t| Some(t.chars().filter(char::is_ascii_graphic).collect())),
        1 => Just(Some("not.a.token".to_owned())),
    ]
}

fn content_type_header() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => prop::sample::select(vec![
            "text/plain", "application/json; charset=latin1", "image/jpeg", "image/png",
            "video/mp4", "image/svg+xml", "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded", "application/problem+json", "application/",
            "IMAGE/JPEG; q=1", "application/json; charset=utf-8",
        ])
        .prop_map(|t| Some(t.to_owned())),
    ]
}

fn body(route: &Route) -> BoxedStrategy<Option<Vec<u8>>> {
    let sampled = route.body.clone().unwrap_or_else(|| json!({}));
    let structured = prop_oneof![
        3 => mutated_json(sampled.clone()).prop_map(|v| v.to_string().into_bytes()),
        2 => mutated_json_text(sampled.clone()).prop_map(String::into_bytes),
        1 => Just(sampled.to_string().into_bytes()),
    ];
    if route.upload {
        prop_oneof![
            2 => mutated_bytes(b"\xFF\xD8\xFF\xE0 a photo".to_vec()).prop_map(Some),
            1 => mutated_bytes(b"\x89PNG\r\n\x1a\n a photo".to_vec()).prop_map(Some),
            1 => Just(Some(vec![0; 70 * 1024])),
            1 => Just(None),
        ]
        .boxed()
    } else {
        prop_oneof![
            6 => structured.prop_map(Some),
            1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Some),
            1 => hostile_value().prop_map(|v| Some(v.to_string().into_bytes())),
            1 => Just(None),
        ]
        .boxed()
    }
}

fn request() -> impl Strategy<Value = Request> {
    (0..api().routes.len()).prop_flat_map(|route| {
        let r = &api().routes[route];
        let params = r.path.matches('{').count();
        (
            Just(route),
            prop::collection::vec(path_value(), params),
            query(),
            token(),
            content_type_header(),
            body(r),
        )
            .prop_map(
                |(route, params, query, token, content_type, body)| Request {
                    route,
                    params,
                    query,
                    token,
                    content_type,
                    body,
                },
            )
    })
}

/// Sends `request`; checks it is answered, never with a 5xx, and that a refusal is
/// problem+json with its status and writes nothing.
async fn send(request: &Request) -> Result<(), TestCaseError> {
    let api = api();
    let route = &api.routes[request.route];
    let mut path = route.path.clone();
    for value in &request.params {
        let (Some(open), Some(close)) = (path.find('{'), path.find('}')) else {
            break;
        };
        path.replace_range(open..=close, value);
    }
    let Ok(url) = reqwest::Url::parse(&format!("{}{path}?{}", api.running.url(), request.query))
    else {
        // Not a URL a client can send.
        return Ok(());
    };
    let head = api.running.state.system.store.head().await.unwrap();
    let mut builder = api.http.request(route.method.clone(), url);
    if let Some(t) = &request.token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    if let Some(c) = &request.content_type {
        builder = builder.header("content-type", c);
    }
    if let Some(b) = &request.body {
        builder = builder.body(b.clone());
    }
    let response = builder.send().await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return Err(TestCaseError::fail(format!("no answer: {e}"))),
    };
    let status = response.status();
    let problem = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let text = response.text().await.unwrap_or_default();
    prop_assert!(
        !status.is_server_error(),
        "{} {path}?{} answered {status}: {text}",
        route.method,
        request.query
    );
    if status.is_client_error() {
        prop_assert!(problem, "{status} is not problem+json: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or_default();
        prop_assert_eq!(
            body["status"].as_u64(),
            Some(u64::from(status.as_u16())),
            "{}",
            text
        );
        prop_assert!(
            body["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{}",
            text
        );
        let after = api.running.state.system.store.head().await.unwrap();
        prop_assert_eq!(after, head, "a refused {} {} wrote", route.method, path);
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(320))]

    #[test]
    fn hostile_requests_on_every_route_get_a_4xx_problem_or_succeed_never_a_5xx(
        request in request()
    ) {
        no_panic(send(&request))?;
    }
}

/// A `min_position` no write answered waited the full 5 s and answered `503`; it is refused at
/// once with `422`, and a position the log has is still waited for and served.
#[test]
fn a_min_position_beyond_the_log_is_refused_at_once_not_a_503() {
    let api = api();
    let head = runtime()
        .block_on(api.running.state.system.store.head())
        .unwrap();
    for (position, status) in [
        (u64::MAX, 422),
        (head + 1_000, 422),
        (head + 1, 422),
        (head, 200),
        (1, 200),
    ] {
        let (got, body) = runtime().block_on(async {
            let r = api
                .http
                .get(format!(
                    "{}/v1/me?min_position={position}",
                    api.running.url()
                ))
                .bearer_auth(&api.tokens[0])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        assert_eq!(got, status, "min_position {position}: {body}");
    }
}
