//! Operations over a real socket: `/healthz`, `/readyz`, `/metrics`, bounded caches, and the
//! configuration of a trusted OpenID Connect issuer (sign-in itself: `sign_in.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kring_api::server::{start, ServeOptions};
use kring_api::Caller;
use kring_projections::Config;
use serde_json::{json, Value};

const ISSUER: &str = "https://login.school-board.example";

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
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let running = on_sqlite(dir.path()).await;
    let base = running.url();

    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);
    let (status, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["projections"].as_array().unwrap().len(), 8);

    let local = running
        .state
        .auth
        .mint(Caller::Operator, chrono::Duration::minutes(5))
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/schools"))
        .bearer_auth(&local)
        .json(&json!({"name": "De Linde", "brin": "11AA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    for _ in 0..2 {
        assert_eq!(get(&format!("{base}/v1/me"), Some(&local)).await.0, 200);
    }
    // A token signed by nobody this server trusts, a tampered one, and garbage: 401.
    for token in [
        format!("{}x", &local[..local.len() - 1]),
        "not.a.token".to_owned(),
        "e30.e30.e30".to_owned(),
        String::new(),
        "x".repeat(100),
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
    std::fs::write(&jwks_file, r#"{"keys": []}"#).unwrap();
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
