//! Operations over a real socket: `/healthz`, `/readyz`, `/metrics`, bounded caches, and the
//! configuration of a trusted OpenID Connect issuer (sign-in itself: `sign_in.rs`).
#![allow(clippy::unwrap_used)]

use kring_api::server::{start, ServeOptions};
use kring_api::throttle::Rate;
use kring_api::{Caller, Limits};
use kring_projections::Config;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISSUER: &str = "https://login.school-board.example";

/// A server with its defaults but rate limits, on SQLite files in `dir`.
async fn on_sqlite(dir: &std::path::Path) -> kring_api::server::Running {
    with_limits(dir, Limits::default().without_rate_limits()).await
}

async fn with_limits(dir: &std::path::Path, limits: Limits) -> kring_api::server::Running {
    let mut options = ServeOptions::new(Config {
        data_dir: dir.to_path_buf(),
        database_url: None,
        eventstore_url: None,
    });
    options.limits = limits;
    start(options).await.unwrap()
}

/// Reads what the server sends on `stream` until it closes the connection (or `wait` passes:
/// `None`).
async fn read_to_close(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut seen)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&seen).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(800),
        ..Limits::default().without_rate_limits()
    };
    let running = with_limits(dir.path(), limits).await;
    let addr = running.addr;
    // Headers a byte at a time, never finished: the connection is closed.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: kring\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = read_to_close(&mut slow, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "a half-sent request head holds the connection"
    );
    assert!(!closed.unwrap_or_default().contains("200 OK"));

    // A body that never arrives: the request times out as problem+json.
    let token = running
        .state
        .auth
        .mint(Caller::Operator, chrono::Duration::minutes(5))
        .unwrap();
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/schools HTTP/1.1\r\nHost: kring\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\": "
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = vec![0_u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"code\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), trickle.read(&mut chunk))
            .await
            .expect("an answer to the stalled upload")
            .unwrap();
        assert!(
            n > 0,
            "closed without a problem: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 504") || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
    // Nothing was written.
    assert_eq!(running.state.system.store.head().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 2,
        ..Limits::default().without_rate_limits()
    };
    let running = with_limits(dir.path(), limits).await;
    let addr = running.addr;
    // Two connections held open mid-request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(c);
    }
    // A third is not served while they are.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: kring\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_to_close(&mut third, Duration::from_millis(700)).await,
        None
    );
    // One closes: the third is served.
    drop(held.pop());
    let answer = read_to_close(&mut third, Duration::from_secs(10))
        .await
        .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_token_and_per_address_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        rate_per_token: Some(Rate {
            per_second: 1,
            burst: 3,
        }),
        rate_per_address: Some(Rate {
            per_second: 1,
            burst: 10,
        }),
        ..Limits::default()
    };
    let running = with_limits(dir.path(), limits).await;
    let me = format!("{}/v1/me", running.url());
    let token = |minutes| {
        running
            .state
            .auth
            .mint(Caller::Operator, chrono::Duration::minutes(minutes))
            .unwrap()
    };
    let (a, b) = (token(5), token(6));
    let client = reqwest::Client::new();
    let send = |t: String| {
        let (client, me) = (client.clone(), me.clone());
        async move { client.get(me).bearer_auth(t).send().await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(send(a.clone()).await.status().as_u16(), 200);
    }
    let limited = send(a.clone()).await;
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    // Another token has a bucket of its own.
    assert_eq!(send(b).await.status().as_u16(), 200);
    // Made-up tokens do not get around the address's limit: 5 sent so far, 5 more pass (401),
    // then 429 whatever the token.
    let mut statuses = Vec::new();
    for n in 0..8 {
        statuses.push(send(format!("made-up-{n}")).await.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Refusals are counted like any answer (read once the address has a request again).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, metrics) = get(&format!("{}/metrics", running.url()), None).await;
    assert!(metrics.contains("status=\"429\""), "{metrics}");
}

/// The operator registers a school through the API: the operator's token and the school's id.
async fn register_school(running: &kring_api::server::Running) -> (String, String) {
    let operator = running
        .state
        .auth
        .mint(Caller::Operator, chrono::Duration::minutes(5))
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/schools", running.url()))
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
    (operator, school)
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
    assert_eq!(
        ready["projections"].as_array().unwrap().len(),
        kring_projections::models::all().len(),
        "every read model: {body}"
    );

    let (local, _) = register_school(&running).await;
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
    assert!(metrics.contains("kring_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"GET\",route=\"/v1/me\",status=\"200\"} 2"));
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
    let (operator, school) = register_school(&running).await;
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
