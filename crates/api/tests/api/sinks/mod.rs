//! Real receivers on local ports for delivery tests: an SMTP server that keeps what it is sent
//! (and answers `451` to the first N mails, when asked), and a Web Push endpoint that keeps the
//! encrypted requests it is sent (answering a chosen status).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use kring_testkit::smtp::SmtpSink;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One push request as received.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The path (which device).
    pub path: String,
    /// Its headers.
    pub headers: axum::http::HeaderMap,
    /// The encrypted body.
    pub body: Vec<u8>,
}

/// A Web Push endpoint on a local port: keeps every request and answers `status`.
#[derive(Clone)]
pub struct PushSink {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<PushRequest>>>,
    status: Arc<AtomicU16>,
}

impl PushSink {
    /// Starts one answering `201 Created`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Self {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            status: Arc::new(AtomicU16::new(201)),
        };
        let s = sink.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    s.requests.lock().unwrap().push(PushRequest {
                        path: uri.path().to_owned(),
                        headers,
                        body: body.to_vec(),
                    });
                    axum::http::StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap()
                }
            },
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        sink
    }

    /// Answer `status` from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The endpoint URL of device `name`.
    pub fn endpoint(&self, name: &str) -> String {
        format!("http://{}/push/{name}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<PushRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (up to a minute) until `done` holds for the requests received, and answers them.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[PushRequest]) -> bool,
    ) -> Vec<PushRequest> {
        for _ in 0..1200 {
            let r = self.requests();
            if done(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the push endpoint never saw {what}; it has {} requests",
            self.requests().len()
        );
    }
}

/// A device's subscription keys: the private key (to decrypt) and what it hands the server.
pub struct Device {
    /// The P-256 private key.
    pub secret: web_push_native::p256::SecretKey,
    /// The authentication secret.
    pub auth: [u8; 16],
}

impl Device {
    /// A fresh key pair and secret.
    pub fn new() -> Self {
        let mut bytes = [0_u8; 32];
        let secret = loop {
            getrandom::getrandom(&mut bytes).unwrap();
            if let Ok(k) = web_push_native::p256::SecretKey::from_slice(&bytes) {
                break k;
            }
        };
        let mut auth = [0_u8; 16];
        getrandom::getrandom(&mut auth).unwrap();
        Self { secret, auth }
    }

    /// `{p256dh, auth}` as a browser gives them (base64url).
    pub fn keys(&self) -> serde_json::Value {
        use base64::Engine as _;
        use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        serde_json::json!({
            "p256dh": b64.encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
            "auth": b64.encode(self.auth),
        })
    }

    /// Decrypts a push message sent to this device (RFC 8291).
    pub fn decrypt(&self, body: &[u8]) -> serde_json::Value {
        let plain = web_push_native::decrypt(
            body.to_vec(),
            &self.secret,
            web_push_native::Auth::from_slice(&self.auth),
        )
        .expect("the push message decrypts with the device's keys");
        serde_json::from_slice(&plain).unwrap()
    }
}

/// Verifies a push request's VAPID `Authorization` (RFC 8292): signed by `public_key`
/// (base64url, as `GET /v1/push/vapid-public-key` answers), for the endpoint's origin. Answers
/// the token's subject (the contact).
pub fn verify_vapid(request: &PushRequest, public_key: &str, origin: &str) -> String {
    use base64::Engine as _;
    use web_push_native::jwt_simple::prelude::*;
    let header = request.headers["authorization"].to_str().unwrap();
    let rest = header
        .strip_prefix("vapid ")
        .expect("a vapid Authorization");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v.to_owned());
        }
    }
    let (t, k) = (t.unwrap(), k.unwrap());
    assert_eq!(k, public_key, "the request names the installation's key");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&k)
        .unwrap();
    let key = ES256PublicKey::from_bytes(&raw).unwrap();
    let options = VerificationOptions {
        allowed_audiences: Some(std::collections::HashSet::from_strings(&[origin])),
        ..Default::default()
    };
    let claims = key
        .verify_token::<NoCustomClaims>(&t, Some(options))
        .expect("the VAPID token verifies with the installation's public key");
    claims.subject.expect("a contact")
}
