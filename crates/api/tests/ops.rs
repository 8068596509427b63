//! Operations and authentication over a real socket: `/healthz`, `/readyz`, `/metrics`, and
//! tokens of a trusted OpenID Connect issuer (a JWKS file) beside the local key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kring_api::server::{start, ServeOptions};
use kring_api::Caller;
use kring_projections::Config;
use serde_json::{json, Value};

/// A P-256 key pair made for this test only (the issuer's signing key and its JWK).
const ISSUER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2zo7xnsCNEN7oKgd
fkoKkKDVT1/FzTWhaRb6dGDGwv+hRANCAATTKOM5MIDf7IwbwDbDTpLI/WGYqAO9
1mH+7ltHdxSFPwkzQNWceGMjUsuyKDsPr4+YN/7byRinZGl4tUNHSb8g
-----END PRIVATE KEY-----
";
const ISSUER: &str = "https://login.school-board.example";

fn jwks() -> Value {
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "board-1", "use": "sig", "alg": "ES256",
        "x": "0yjjOTCA3-yMG8A2w06SyP1hmKgDvdZh_u5bR3cUhT8",
        "y": "CTNA1Zx4YyNSy7IoOw-vj5g3_tvJGKdkaXi1Q0dJvyA",
    }]})
}

fn issuer_token(sub: &str, iss: &str, kid: &str) -> String {
    token_for(sub, iss, kid, "kring")
}

fn token_for(sub: &str, iss: &str, kid: &str, aud: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "iss": iss, "iat": now, "exp": now + 600, "aud": aud}),
        &EncodingKey::from_ec_pem(ISSUER_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A server with its defaults, on SQLite files in `dir`.
async fn on_sqlite(dir: &std::path::Path) -> kring_api::server::Running {
    start(ServeOptions::new(Config {
        data_dir: dir.to_path_buf(),
        database_url: None,
        eventstore_url: None,
    }))
    .await
    .unwrap()
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_an_openid_connect_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks().to_string()).unwrap();
    let mut options = ServeOptions::new(Config {
        data_dir: dir.path().join("data"),
        database_url: None,
        eventstore_url: None,
    });
    options.oidc_issuer = Some(ISSUER.to_owned());
    options.oidc_jwks = Some(jwks_file.display().to_string());
    options.oidc_audience = Some("kring".to_owned());
    let running = start(options).await.unwrap();
    let base = running.url();

    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);
    let (status, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["projections"].as_array().unwrap().len(), 8);

    // The operator registers a school with a local token, and adds a director.
    let local = running
        .state
        .auth
        .mint(Caller::Operator, chrono::Duration::minutes(5))
        .unwrap();
    let post = |token: String, path: String, body: Value| {
        let url = format!("{base}{path}");
        async move {
            let res = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, school) = post(
        local.clone(),
        "/v1/schools".into(),
        json!({"name": "De Linde", "brin": "11AA"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, director) = post(
        local.clone(),
        format!(
            "/v1/schools/{}/staff",
            school["school_id"].as_str().unwrap()
        ),
        json!({"display_name": "Directeur", "email": "d@linde.example", "role": "director"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(get(&format!("{base}/v1/me"), Some(&local)).await.0, 200);
    // The issuer's token for that person is that person.
    let staff = issuer_token(director["person_id"].as_str().unwrap(), ISSUER, "board-1");
    let (status, me) = get(&format!("{base}/v1/me"), Some(&staff)).await;
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("d@linde.example"));
    // The issuer can never make anyone the platform operator.
    let head = running.state.system.store.head().await.unwrap();
    let operator = issuer_token("operator", ISSUER, "board-1");
    let (status, _) = post(
        operator.clone(),
        "/v1/schools".into(),
        json!({"name": "Het Anker", "brin": "22BB"}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(running.state.system.store.head().await.unwrap(), head);
    // Another issuer, another audience, an unknown key id, or a token the issuer did not sign:
    // 401.
    for token in [
        operator.clone(),
        token_for(
            director["person_id"].as_str().unwrap(),
            ISSUER,
            "board-1",
            "another-app",
        ),
        issuer_token("operator", "https://elsewhere.example", "board-1"),
        issuer_token("operator", ISSUER, "board-2"),
        format!("{}x", &staff[..staff.len() - 1]),
    ] {
        let (status, body) = get(&format!("{base}/v1/me"), Some(&token)).await;
        assert_eq!(status, 401, "{body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "unauthenticated");
    }

    let (status, metrics) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "kring_http_requests_total{method=\"POST\",route=\"/v1/schools\",status=\"201\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains("kring_http_requests_total{method=\"GET\",route=\"/v1/me\",status=\"401\"} 5"));
    assert!(metrics.contains("kring_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/me\",status=\"200\",le=\"+Inf\"} 2"));
    assert!(metrics.contains("kring_events_appended_total "));
    assert!(metrics.contains("kring_projection_lag_events{projection=\"visibility\"}"));
    assert!(metrics.contains("kring_log_head_position "));
    // A response carries its request id.
    let res = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(res.headers().get("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_an_issuer_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ServeOptions::new(Config::from_env(dir.path()));
    options.oidc_issuer = Some(ISSUER.to_owned());
    assert!(start(options).await.is_err());
    // An issuer and its keys, but no audience: tokens for any application would pass.
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks().to_string()).unwrap();
    let mut options = ServeOptions::new(Config::from_env(dir.path()));
    options.oidc_issuer = Some(ISSUER.to_owned());
    options.oidc_jwks = Some(jwks_file.display().to_string());
    assert!(start(options).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_a_bounded_set_of_series_whatever_clients_send() {
    let dir = tempfile::tempdir().unwrap();
    let running = on_sqlite(dir.path()).await;
    let base = running.url();
    let client = reqwest::Client::new();
    let odd = |i: usize| {
        (
            reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).unwrap(),
            format!("{base}/nowhere/{i}"),
        )
    };
    let series = |metrics: &str| metrics.lines().filter(|l| !l.starts_with('#')).count();
    // One of each shape first: an unknown method on an unknown route and on a known one.
    for (method, url) in [odd(0), (odd(0).0, format!("{base}/healthz"))] {
        client.request(method, url).send().await.unwrap();
    }
    // Reading /metrics is a series of its own from the second read on.
    get(&format!("{base}/metrics"), None).await;
    let (_, before) = get(&format!("{base}/metrics"), None).await;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, sent) = (client.clone(), std::sync::Arc::clone(&sent));
        let urls: Vec<_> = (1..=10_000).filter(|i| i % 8 == w).map(odd).collect();
        workers.push(tokio::spawn(async move {
            for (method, url) in urls {
                let status = client.request(method, url).send().await.unwrap().status();
                assert_eq!(status.as_u16(), 404);
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    let (_, after) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(series(&after), series(&before), "{after}");
    assert!(
        after.contains("method=\"other\",route=\"unmatched\",status=\"404\"} 10001"),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_school_ids_leave_nothing_in_the_roster_cache() {
    let dir = tempfile::tempdir().unwrap();
    let running = on_sqlite(dir.path()).await;
    let base = running.url();
    let operator = running
        .state
        .auth
        .mint(Caller::Operator, chrono::Duration::minutes(5))
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/schools"))
        .bearer_auth(&operator)
        .json(&json!({"name": "De Linde", "brin": "11AA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let school = res.json::<Value>().await.unwrap()["school_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = get(
        &format!("{base}/v1/schools/{school}/settings"),
        Some(&operator),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..500 {
        let made_up = uuid::Uuid::now_v7();
        let (status, _) = get(
            &format!("{base}/v1/schools/{made_up}/settings"),
            Some(&operator),
        )
        .await;
        assert_eq!(status, 404);
    }
    assert_eq!(
        running.state.exec.cached_schools(),
        1,
        "only the real school"
    );
}
