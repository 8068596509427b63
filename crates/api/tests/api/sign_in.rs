//! Sign-in over real sockets: an OpenID Connect issuer whose keys a real HTTP server in the test
//! serves (fetched, cached per `Cache-Control`, rotated), identities mapped to Kring people
//! (given with the staff member, or linked once), and local tokens revoked by their id.
#![allow(clippy::unwrap_used)]

use crate::school_server;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kring_api::auth::{Auth, Verified, MIN_SECRET_BYTES};
use kring_api::Caller;
use reqwest::Method;
use school_server::{Api, School};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ISSUER: &str = "https://login.school-board.example";
const AUDIENCE: &str = "kring";

/// Two P-256 key pairs made for these tests only: the issuer's key before and after a rotation.
const KEY_1: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2zo7xnsCNEN7oKgd
fkoKkKDVT1/FzTWhaRb6dGDGwv+hRANCAATTKOM5MIDf7IwbwDbDTpLI/WGYqAO9
1mH+7ltHdxSFPwkzQNWceGMjUsuyKDsPr4+YN/7byRinZGl4tUNHSb8g
-----END PRIVATE KEY-----
";
const KEY_2: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgojomAhR3gLLLrsFI
2MJ0RTACfoaT3Y86CJkQh+rEcRKhRANCAASIQ5Rw/0xs9YO5nRpLJWJp+ZvuzxK3
KAZJMBhICKMpbskhjCkONVc6PNR87QjZUrEPfuXYG3Dw4eGzV2PKzyt5
-----END PRIVATE KEY-----
";

/// The public JWK of key 1 or 2 under `kid`, with `extra` members (`use`, `alg`) merged in.
fn jwk(key: u8, kid: &str, extra: &Value) -> Value {
    let (x, y) = if key == 1 {
        (
            "0yjjOTCA3-yMG8A2w06SyP1hmKgDvdZh_u5bR3cUhT8",
            "CTNA1Zx4YyNSy7IoOw-vj5g3_tvJGKdkaXi1Q0dJvyA",
        )
    } else {
        (
            "iEOUcP9MbPWDuZ0aSyViafmb7s8StygGSTAYSAijKW4",
            "ySGMKQ41Vzo81HztCNlSsQ9-5dgbcPDh4bNXY8rPK3k",
        )
    };
    let mut jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": x, "y": y});
    for (k, v) in extra.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

/// A token of the issuer for `sub`, signed with key 1 or 2 and naming `kid`.
fn token(key: u8, kid: &str, sub: &str, aud: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let now = chrono::Utc::now().timestamp();
    let pem = if key == 1 { KEY_1 } else { KEY_2 };
    jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "iss": ISSUER, "iat": now, "exp": now + 600, "aud": aud}),
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The issuer's key endpoint: a real HTTP server serving what the test sets, counting fetches.
struct KeyServer {
    jwks: Mutex<Value>,
    cache_control: Mutex<String>,
    status: AtomicU16,
    fetches: AtomicUsize,
}

impl KeyServer {
    async fn start(jwks: Value, cache_control: &str) -> (Arc<Self>, String) {
        async fn serve(State(s): State<Arc<KeyServer>>) -> impl IntoResponse {
            s.fetches.fetch_add(1, Ordering::SeqCst);
            let status = StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap();
            let cache = s.cache_control.lock().unwrap().clone();
            let body = s.jwks.lock().unwrap().to_string();
            (status, [(header::CACHE_CONTROL, cache)], body)
        }

        let server = Arc::new(Self {
            jwks: Mutex::new(jwks),
            cache_control: Mutex::new(cache_control.to_owned()),
            status: AtomicU16::new(200),
            fetches: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/jwks.json", axum::routing::get(serve))
            .with_state(Arc::clone(&server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (server, url)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn serve(&self, jwks: Value) {
        *self.jwks.lock().unwrap() = jwks;
    }
}

fn keys(list: &[Value]) -> Value {
    json!({ "keys": list })
}

async fn api_trusting(url: &str) -> Api {
    let url = url.to_owned();
    Api::sqlite_with(move |o| {
        o.oidc_issuer = Some(ISSUER.to_owned());
        o.oidc_jwks = Some(url);
        o.oidc_audience = Some(AUDIENCE.to_owned());
    })
    .await
}

async fn me(api: &Api, token: &str) -> school_server::Answer {
    api.call(Method::GET, "/v1/me", Some(token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_with_the_school_boards_identity_through_rotated_keys() {
    let sig = json!({"use": "sig", "alg": "ES256"});
    let (keys_server, url) =
        KeyServer::start(keys(&[jwk(1, "board-1", &sig)]), "public, max-age=3600").await;
    let api = api_trusting(&url).await;
    assert_eq!(keys_server.fetches(), 1, "fetched once at start");
    let school = School::build(&api, "De Linde").await;

    // A teacher added with their identity at the board's sign-in service.
    let added = api
        .post(
            &format!("/v1/schools/{}/staff", school.school_id),
            Some(&api.person(school.director)),
            json!({"display_name": "Juf Anna", "email": "anna@linde.example",
                   "role": "teacher", "sso_subject": "anna.dekker@board"}),
        )
        .await
        .expect(201);
    let anna = added.body["person_id"].as_str().unwrap().to_owned();
    let signed_in = me(&api, &token(1, "board-1", "anna.dekker@board", AUDIENCE))
        .await
        .expect(200);
    assert_eq!(signed_in.body["person_id"], anna.as_str());
    assert_eq!(signed_in.body["email"], "anna@linde.example");
    // The same identity cannot be given to someone else.
    let taken = api
        .post(
            &format!("/v1/schools/{}/staff", school.school_id),
            Some(&api.person(school.director)),
            json!({"display_name": "Juf Bea", "email": "bea@linde.example",
                   "role": "teacher", "sso_subject": "anna.dekker@board"}),
        )
        .await
        .expect(409);
    assert_eq!(taken.code(), "conflict");

    // The subject is a person at the issuer, not a Kring id and never the operator.
    for sub in [anna.as_str(), "operator", "someone.else@board"] {
        let refused = me(&api, &token(1, "board-1", sub, AUDIENCE))
            .await
            .expect(401);
        assert_eq!(refused.code(), "unauthenticated");
    }
    // A token the issuer made for another application: 401.
    me(
        &api,
        &token(1, "board-1", "anna.dekker@board", "another-app"),
    )
    .await
    .expect(401);
    // Many requests, one fetch: the keys are cached as Cache-Control says.
    assert_eq!(keys_server.fetches(), 1);

    // The issuer rotates: key 2 replaces key 1. A token naming the new key id makes one
    // refresh, and signs in.
    keys_server.serve(keys(&[jwk(2, "board-2", &sig)]));
    me(&api, &token(2, "board-2", "anna.dekker@board", AUDIENCE))
        .await
        .expect(200);
    assert_eq!(keys_server.fetches(), 2);
    // Key 1 is gone from the set now.
    me(&api, &token(1, "board-1", "anna.dekker@board", AUDIENCE))
        .await
        .expect(401);
    // Made-up key ids do not make the server fetch again within the minute.
    for n in 0..20 {
        me(
            &api,
            &token(2, &format!("made-up-{n}"), "anna.dekker@board", AUDIENCE),
        )
        .await
        .expect(401);
    }
    assert_eq!(keys_server.fetches(), 2);

    // An erased person signs in as nobody: the identity is forgotten with them.
    api.call(
        Method::POST,
        &format!("/v1/people/{anna}/erasure"),
        Some(&api.person(school.director)),
        None,
    )
    .await
    .expect(202);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while me(&api, &token(2, "board-2", "anna.dekker@board", AUDIENCE))
        .await
        .status
        .is_success()
    {
        assert!(std::time::Instant::now() < deadline, "still signs in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    me(&api, &token(2, "board-2", "anna.dekker@board", AUDIENCE))
        .await
        .expect(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_again_when_stale_and_kept_when_the_issuer_fails() {
    let sig = json!({"use": "sig", "alg": "ES256"});
    let (keys_server, url) = KeyServer::start(keys(&[jwk(1, "board-1", &sig)]), "max-age=1").await;
    let auth = Auth::with_secret("test", vec![1; MIN_SECRET_BYTES])
        .unwrap()
        .with_oidc(ISSUER, &url, AUDIENCE)
        .await
        .unwrap();
    let verify = |t: String| {
        let auth = auth.clone();
        async move { auth.verify(&t).await }
    };
    assert!(matches!(
        verify(token(1, "board-1", "anna", AUDIENCE)).await,
        Ok(Verified::External { subject, .. }) if subject == "anna"
    ));
    assert_eq!(keys_server.fetches(), 1);
    // Past max-age the next token fetches the set again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verify(token(1, "board-1", "anna", AUDIENCE)).await.unwrap();
    assert_eq!(keys_server.fetches(), 2);
    // The issuer fails: the keys held keep working.
    keys_server.status.store(500, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verify(token(1, "board-1", "anna", AUDIENCE)).await.unwrap();
    assert_eq!(keys_server.fetches(), 3, "a refresh was tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_used_only_for_what_it_says_it_is_for() {
    let (_keys_server, url) = KeyServer::start(
        keys(&[
            jwk(1, "for-encryption", &json!({"use": "enc", "alg": "ES256"})),
            jwk(1, "for-rsa", &json!({"use": "sig", "alg": "RS256"})),
            jwk(1, "says-nothing", &json!({})),
        ]),
        "max-age=600",
    )
    .await;
    let auth = Auth::with_secret("test", vec![1; MIN_SECRET_BYTES])
        .unwrap()
        .with_oidc(ISSUER, &url, AUDIENCE)
        .await
        .unwrap();
    for kid in ["for-encryption", "for-rsa"] {
        let refused = auth.verify(&token(1, kid, "anna", AUDIENCE)).await;
        assert_eq!(
            refused.err().map(|e| e.code),
            Some(kring_api::Code::Unauthenticated),
            "{kid}"
        );
    }
    assert!(auth
        .verify(&token(1, "says-nothing", "anna", AUDIENCE))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_does_not_answer_fails_start_up_within_the_timeout() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", silent.local_addr().unwrap());
    let started = Auth::with_secret("test", vec![1; MIN_SECRET_BYTES])
        .unwrap()
        .with_oidc_timeout(ISSUER, &url, AUDIENCE, Duration::from_millis(300))
        .await;
    let message = started.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains(&url), "{message}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_links_their_identity_once() {
    let sig = json!({"use": "sig", "alg": "ES256"});
    let (_keys_server, url) =
        KeyServer::start(keys(&[jwk(1, "board-1", &sig)]), "max-age=600").await;
    let api = api_trusting(&url).await;
    let school = School::build(&api, "De Linde").await;
    let link = |caller: String, sub: &str| {
        let body = json!({"token": token(1, "board-1", sub, AUDIENCE)});
        let api = &api;
        async move {
            api.call(
                Method::POST,
                "/v1/me/sso-identity",
                Some(&caller),
                Some(body),
            )
            .await
        }
    };
    // Not linked yet: the issuer's token is nobody.
    me(&api, &token(1, "board-1", "juf.a@board", AUDIENCE))
        .await
        .expect(401);
    let head = api.head().await;
    // Without a Kring token, with an issuer's token for another application, or as the
    // operator: nothing is linked.
    api.call(
        Method::POST,
        "/v1/me/sso-identity",
        None,
        Some(json!({"token": token(1, "board-1", "juf.a@board", AUDIENCE)})),
    )
    .await
    .expect(401);
    api.call(
        Method::POST,
        "/v1/me/sso-identity",
        Some(&api.person(school.teacher)),
        Some(json!({"token": token(1, "board-1", "juf.a@board", "another-app")})),
    )
    .await
    .expect(422);
    link(api.operator(), "juf.a@board").await.expect(403);
    // A Kring token is not an identity to link.
    api.call(
        Method::POST,
        "/v1/me/sso-identity",
        Some(&api.person(school.teacher)),
        Some(json!({"token": api.person(school.teacher)})),
    )
    .await
    .expect(422);
    assert_eq!(api.head().await, head, "nothing written");

    link(api.person(school.teacher), "juf.a@board")
        .await
        .expect(201);
    let signed_in = me(&api, &token(1, "board-1", "juf.a@board", AUDIENCE))
        .await
        .expect(200);
    assert_eq!(signed_in.body["person_id"], school.teacher.to_string());
    // Once: a second identity for the same person, or the same identity for another: 409.
    link(api.person(school.teacher), "juf.b@board")
        .await
        .expect(409);
    link(api.person(school.teacher2), "juf.a@board")
        .await
        .expect(409);
    me(&api, &token(1, "board-1", "juf.b@board", AUDIENCE))
        .await
        .expect(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_every_request() {
    let api = Api::sqlite().await;
    let school = School::build(&api, "De Linde").await;
    let auth = &api.running.state.auth;
    let (leaked, leaked_id) = auth
        .mint_with_id(Caller::Person(school.teacher), chrono::Duration::hours(1))
        .unwrap();
    let other = api.person(school.teacher);
    me(&api, &leaked).await.expect(200);
    assert!(
        !api.running.state.unrevoked.is_empty(),
        "a token found not revoked is remembered with where the access log stood"
    );

    // Only the operator revokes.
    let body = json!({"jti": leaked_id});
    for caller in [api.person(school.director), leaked.clone()] {
        api.call(
            Method::POST,
            "/v1/tokens/revocations",
            Some(&caller),
            Some(body.clone()),
        )
        .await
        .expect(403);
    }
    me(&api, &leaked).await.expect(200);
    api.call(
        Method::POST,
        "/v1/tokens/revocations",
        Some(&api.operator()),
        Some(body.clone()),
    )
    .await
    .expect(201);
    let refused = me(&api, &leaked).await.expect(401);
    assert!(refused.text.contains("revoked"), "{}", refused.text);
    let write = api
        .call(
            Method::PUT,
            "/v1/me/quiet-hours",
            Some(&leaked),
            Some(json!({"days": ["monday"], "from": "18:00", "until": "07:00"})),
        )
        .await;
    assert_eq!(write.status.as_u16(), 401);
    // The same person's other tokens still work; a second revocation is a conflict.
    me(&api, &other).await.expect(200);
    api.call(
        Method::POST,
        "/v1/tokens/revocations",
        Some(&api.operator()),
        Some(body),
    )
    .await
    .expect(409);
    // A made-up id is refused as malformed input.
    api.call(
        Method::POST,
        "/v1/tokens/revocations",
        Some(&api.operator()),
        Some(json!({"jti": "not-a-uuid"})),
    )
    .await
    .expect(422);
}
