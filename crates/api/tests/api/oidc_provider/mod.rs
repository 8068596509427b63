//! A small OpenID provider on a local port, run by the console's sign-in tests: discovery, a
//! JWKS, an authorization endpoint that approves at once (for the subject the test chose) and
//! redirects back with a code, and a token endpoint that authenticates the client, checks the
//! PKCE `code_verifier` against the code's S256 challenge, spends the code and issues an
//! ES256-signed ID token.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The console's client at this provider.
pub const CLIENT_ID: &str = "kring-console";
/// Its secret (HTTP Basic at the token endpoint).
pub const CLIENT_SECRET: &str = "the console's secret: 42/7";
/// The signing key's id.
pub const KID: &str = "provider-1";

/// A P-256 key pair made for these tests only.
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2zo7xnsCNEN7oKgd
fkoKkKDVT1/FzTWhaRb6dGDGwv+hRANCAATTKOM5MIDf7IwbwDbDTpLI/WGYqAO9
1mH+7ltHdxSFPwkzQNWceGMjUsuyKDsPr4+YN/7byRinZGl4tUNHSb8g
-----END PRIVATE KEY-----
";
const X: &str = "0yjjOTCA3-yMG8A2w06SyP1hmKgDvdZh_u5bR3cUhT8";
const Y: &str = "CTNA1Zx4YyNSy7IoOw-vj5g3_tvJGKdkaXi1Q0dJvyA";

/// What the provider gets wrong on purpose in the ID tokens it issues next.
#[derive(Debug, Default, Clone)]
pub struct Twist {
    /// Another audience than the client's.
    pub audience: Option<String>,
    /// Another nonce than the authorization request's.
    pub nonce: Option<String>,
}

struct Grant {
    challenge: String,
    nonce: String,
    subject: String,
    redirect_uri: String,
}

struct Inner {
    issuer: String,
    subject: Mutex<String>,
    twist: Mutex<Twist>,
    grants: Mutex<HashMap<String, Grant>>,
    authorizations: Mutex<Vec<HashMap<String, String>>>,
    exchanges: AtomicUsize,
}

/// The running provider.
pub struct Provider {
    /// Its issuer identifier (`http://127.0.0.1:<port>`).
    pub issuer: String,
    inner: Arc<Inner>,
}

impl Provider {
    /// Starts the provider on a free local port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Inner {
            issuer: issuer.clone(),
            subject: Mutex::new(String::new()),
            twist: Mutex::new(Twist::default()),
            grants: Mutex::new(HashMap::new()),
            authorizations: Mutex::new(Vec::new()),
            exchanges: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/jwks.json", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { issuer, inner }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.issuer)
    }

    /// The next sign-in at the authorization endpoint is `subject`'s.
    pub fn signs_in(&self, subject: &str) {
        subject.clone_into(&mut self.inner.subject.lock().unwrap());
    }

    /// The next ID tokens carry `twist`.
    pub fn twist(&self, twist: Twist) {
        *self.inner.twist.lock().unwrap() = twist;
    }

    /// How many codes the token endpoint exchanged.
    pub fn exchanges(&self) -> usize {
        self.inner.exchanges.load(Ordering::SeqCst)
    }

    /// The query of the last authorization request.
    pub fn last_authorization(&self) -> HashMap<String, String> {
        self.inner
            .authorizations
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// A token of this issuer for `subject` and `audience` (a bearer token, or what
    /// `POST /v1/me/sso-identity` links).
    pub fn token(&self, subject: &str, audience: &str) -> String {
        sign(&json!({"iss": self.issuer, "sub": subject, "aud": audience}))
    }
}

fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.to_owned());
    let now = chrono::Utc::now().timestamp();
    let mut claims = claims.clone();
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 300);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ec_pem(KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn discovery(State(p): State<Arc<Inner>>) -> Json<Value> {
    let i = &p.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks.json"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks() -> Json<Value> {
    Json(
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": KID, "x": X, "y": Y,
                          "use": "sig", "alg": "ES256"}]}),
    )
}

fn bad(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, why.to_owned()).into_response()
}

/// Approves at once: back to `redirect_uri` with a code and the state.
async fn authorize(
    State(p): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    p.authorizations.lock().unwrap().push(q.clone());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" {
        return bad("response_type must be code");
    }
    if get("client_id") != CLIENT_ID {
        return bad("unknown client");
    }
    if !get("scope").split(' ').any(|s| s == "openid") {
        return bad("scope must hold openid");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        return bad("PKCE with S256 is required");
    }
    if get("state").is_empty() || get("nonce").is_empty() || get("redirect_uri").is_empty() {
        return bad("state, nonce and redirect_uri are required");
    }
    let code = uuid::Uuid::now_v7().to_string();
    p.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: get("code_challenge"),
            nonce: get("nonce"),
            subject: p.subject.lock().unwrap().clone(),
            redirect_uri: get("redirect_uri"),
        },
    );
    let mut back = url::Url::parse(&get("redirect_uri")).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"))
        .append_pair("iss", &p.issuer);
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, back.to_string())],
    )
        .into_response()
}

fn invalid_grant(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}

/// The client, authenticated with HTTP Basic (RFC 6749 2.3.1: both parts form-encoded).
fn client_ok(headers: &HeaderMap) -> bool {
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let decoded = String::from_utf8(STANDARD.decode(basic).unwrap_or_default()).unwrap_or_default();
    let Some((id, secret)) = decoded.split_once(':') else {
        return false;
    };
    let plain = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    plain(id) == CLIENT_ID && plain(secret) == CLIENT_SECRET
}

/// Exchanges a code (once) for an ID token, checking the verifier against the challenge.
async fn token(
    State(p): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !client_ok(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return invalid_grant("grant_type must be authorization_code");
    }
    // A code is spent by its first exchange, right or wrong.
    let Some(grant) = p.grants.lock().unwrap().remove(&get("code")) else {
        return invalid_grant("unknown or used code");
    };
    if get("redirect_uri") != grant.redirect_uri {
        return invalid_grant("redirect_uri differs from the authorization request's");
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return invalid_grant("the code_verifier does not match the code_challenge");
    }
    p.exchanges.fetch_add(1, Ordering::SeqCst);
    let twist = p.twist.lock().unwrap().clone();
    let id_token = sign(&json!({
        "iss": p.issuer,
        "sub": grant.subject,
        "aud": twist.audience.unwrap_or_else(|| CLIENT_ID.to_owned()),
        "nonce": twist.nonce.unwrap_or(grant.nonce),
    }));
    Json(
        json!({"access_token": uuid::Uuid::now_v7().to_string(), "token_type": "Bearer",
                "expires_in": 300, "id_token": id_token}),
    )
    .into_response()
}
