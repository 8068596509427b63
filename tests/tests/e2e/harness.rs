//! The real `kring-api serve` as a child process on a free port, with its own data directory
//! (and, for PostgreSQL, its own database), and a client that speaks to it only over HTTP.
//!
//! Tokens are minted the way `kring-api token` does (HS256, `iss` `kring-local`, the person id
//! as `sub`, a fresh `jti`), with the secret the server keeps in `DIR/jwt.key` (or the
//! `KRING_JWT_SECRET` a deployment's instances share); expired tokens
//! and tokens signed with another key are minted the same way, for the 401 cases. The server
//! also trusts a single sign-on issuer whose keys are a JWKS file the harness writes:
//! [`Server::issuer_token`] signs as that issuer.
//!
//! # Why this client is not the API tests' (`crates/api/tests/api/school_server`)
//!
//! Both speak HTTP with `reqwest`, but they stand on different ground. The API tests start the
//! server in their own process (`kring_api::server::start`) and reach into it: tokens come from
//! the running state's signer, the log's head from its store, `caught_up` from its projector, a
//! restart is a new server on the same installation, and their `Answer` (a `StatusCode`, the
//! text) is what hundreds of their assertions are written against. This harness has only
//! what an app has: a process on a socket. Tokens are minted from the key file as
//! `kring-api token` would, the head comes from `GET /readyz`, a GET waits for every position
//! answered so far (`fresh`), every answer is checked never to be a 5xx (`try_send` for the
//! fault scenarios, where one may be), and its `Answer` keeps the request and the bytes for its
//! messages and problem+json checks. What the two could share is the dozen lines that turn a
//! response into status, content type and body; a common client in `kring-testkit` (which would
//! then depend on `reqwest`) would have to carry both kinds of `Answer`, so each keeps its own.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use uuid::Uuid;

/// The `kring-api` binary of this workspace, freshly built.
///
/// Cargo tells only the tests of the package that defines a binary where it is, so the first
/// scenario to need it asks cargo to build it (a no-op when `cargo test --workspace` already
/// did) and takes its path from cargo's own report. Cargo releases its lock while tests run.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("kring-api", "kring-api"))
}

/// The `replay-tool` binary of this workspace, freshly built the same way.
fn replay_tool_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("kring-replay-tool", "replay-tool"))
}

/// Builds binary `bin` of `package` and answers its path, from cargo's own report.
fn build(package: &str, bin: &str) -> PathBuf {
    {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--package", package, "--bin", bin])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("cargo runs");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("cargo build -p {package} failed:\n{}", tail.join("\n"));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| panic!("cargo names the {bin} executable"))
    }
}

/// The environment variables `kring-api` reads; cleared so the run depends on nothing outside.
const KRING_ENV: &[&str] = &[
    "KRING_DATA_DIR",
    "KRING_DATABASE_URL",
    "KRING_EVENTSTORE_URL",
    "KRING_MASTER_KEY",
    "KRING_JWT_SECRET",
    "KRING_LISTEN",
    "KRING_OIDC_ISSUER",
    "KRING_OIDC_JWKS",
    "KRING_OIDC_AUDIENCE",
    "KRING_RATE_PER_ADDRESS",
    "KRING_RATE_PER_TOKEN",
    "KRING_MAX_CONNECTIONS",
    "KRING_SMTP_URL",
    "KRING_MAIL_FROM",
    "KRING_PUBLIC_URL",
    "KRING_VAPID_PRIVATE_KEY",
    "KRING_PUSH_ALLOW_LOOPBACK_HTTP",
    "KRING_DELIVERY_MAX_ATTEMPTS",
    "KRING_DELIVERY_RETRY_BASE_MS",
];

/// Where the server keeps its event log, vault and read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: SQLite files in the data directory.
    Sqlite,
    /// `KRING_DATABASE_URL` naming a fresh database on the test run's PostgreSQL.
    Postgres,
}

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A person, with a valid token.
    Person(Uuid),
    /// The platform operator.
    Operator,
    /// No `Authorization` header.
    Anonymous,
    /// A token for this person that expired an hour ago.
    Expired(Uuid),
    /// A token for this person signed with a key the server does not know.
    Foreign(Uuid),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// None.
    Empty,
    /// JSON.
    Json(Value),
    /// Raw bytes with a content type (uploads, malformed JSON).
    Raw(String, Vec<u8>),
}

/// A response.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What was asked, for messages.
    pub request: String,
    /// The status code.
    pub status: u16,
    /// The content type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Asserts the status; answers the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status,
            status,
            "{}: expected {status}, got {}: {}",
            self.request,
            self.status,
            self.text()
        );
        &self.body
    }

    /// Whether the body is problem+json with a `code`.
    pub fn is_problem(&self) -> bool {
        self.content_type.starts_with("application/problem+json")
            && self.body["code"].as_str().is_some_and(|c| !c.is_empty())
            && self.body["status"].as_u64() == Some(u64::from(self.status))
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        self.expect(status);
        assert!(
            self.is_problem(),
            "{}: not problem+json: {:?} {}",
            self.request,
            self.content_type,
            self.text()
        );
        assert_eq!(self.body["code"], code, "{}: {}", self.request, self.text());
        &self.body
    }

    /// A UUID field of the body.
    #[track_caller]
    pub fn id(&self, field: &str) -> Uuid {
        uuid_at(&self.body, field)
    }
}

/// A UUID field of a JSON object.
#[track_caller]
pub fn uuid_at(value: &Value, field: &str) -> Uuid {
    value[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no UUID {field:?} in {value}"))
}

/// A running `kring-api serve`.
pub struct Server {
    child: Mutex<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Shared by the servers and workers started beside this one (one installation).
    dir: Arc<tempfile::TempDir>,
    database_url: Option<String>,
    /// What `serve` was given beyond the data directory and the listen address.
    extra: Vec<String>,
    /// Environment variables set for `serve` and every command run beside it (the settings
    /// instances of one deployment share, see `deployment.rs`).
    env: Vec<(String, String)>,
    secret: Vec<u8>,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
    /// The highest position any answer carried: what GETs wait for.
    seen: AtomicU64,
}

impl Server {
    /// Starts `kring-api serve` on a free port with a fresh data directory (and a fresh
    /// PostgreSQL database for [`Backend::Postgres`]), and waits until it listens.
    pub async fn start(backend: Backend) -> Self {
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                kring_testkit::fresh_postgres_database("e2e")
                    .await
                    .url()
                    .to_owned(),
            ),
        };
        Self::start_with(database_url, &[]).await
    }

    /// Starts `kring-api serve ARGS` with a fresh data directory on the PostgreSQL database
    /// `database_url` (SQLite files in the data directory when `None`).
    pub async fn start_with(database_url: Option<String>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        Self::start_in(Arc::new(dir), database_url, Vec::new(), extra).await
    }

    /// Starts `kring-api serve ARGS` in the data directory `dir`, of its own, on the PostgreSQL
    /// database `database_url`, with the environment `env`: one API instance of a deployment,
    /// on a machine of its own. Tokens are signed with `KRING_JWT_SECRET` when `env` sets it.
    pub async fn start_instance(
        dir: tempfile::TempDir,
        database_url: &str,
        env: &[(String, String)],
        extra: &[&str],
    ) -> Self {
        Self::start_in(
            Arc::new(dir),
            Some(database_url.to_owned()),
            env.to_vec(),
            extra,
        )
        .await
    }

    /// Starts `kring-api serve ARGS` in the data directory `dir` (a size-limited file system
    /// mounted there, say), SQLite files there unless `database_url` names PostgreSQL.
    pub async fn start_in_dir(
        dir: tempfile::TempDir,
        database_url: Option<String>,
        extra: &[&str],
    ) -> Self {
        Self::start_in(Arc::new(dir), database_url, Vec::new(), extra).await
    }

    /// Another `kring-api serve ARGS` on this server's installation (its data directory and
    /// database): a second API instance.
    pub async fn start_beside(&self, extra: &[&str]) -> Self {
        Self::start_in(
            Arc::clone(&self.dir),
            self.database_url.clone(),
            self.env.clone(),
            extra,
        )
        .await
    }

    async fn start_in(
        dir: Arc<tempfile::TempDir>,
        database_url: Option<String>,
        env: Vec<(String, String)>,
        extra: &[&str],
    ) -> Self {
        tokio::task::spawn_blocking(binary)
            .await
            .expect("building kring-api");
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, url) =
            Self::spawn(dir.path(), database_url.as_deref(), &env, &extra, &log).await;
        let key = match env.iter().find(|(name, _)| name == "KRING_JWT_SECRET") {
            Some((_, secret)) => secret.clone(),
            None => std::fs::read_to_string(dir.path().join("jwt.key")).expect("DIR/jwt.key"),
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .expect("a base64 key");
        Self {
            child: Mutex::new(child),
            url,
            dir,
            database_url,
            extra,
            env,
            secret,
            // A fresh connection per request: the server closes a connection after refusing a
            // body it did not read, and a pooled one could be picked up just as it closes.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client"),
            log,
            seen: AtomicU64::new(0),
        }
    }

    /// Spawns `serve` and waits until it says where it listens.
    async fn spawn(
        dir: &Path,
        database_url: Option<&str>,
        env: &[(String, String)],
        extra: &[String],
        log: &Arc<Mutex<Vec<String>>>,
    ) -> (Child, String) {
        let jwks = dir.join("issuer-jwks.json");
        std::fs::write(&jwks, ISSUER_JWKS).expect("the issuer's JWKS written");
        let mut command = Self::command(dir, database_url, env);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--oidc-issuer")
            .arg(ISSUER)
            .arg("--oidc-jwks")
            .arg(&jwks)
            .arg("--oidc-audience")
            .arg(AUDIENCE)
            // The scenarios drive one server hard from one address; the limits have tests of
            // their own.
            .arg("--rate-per-address")
            .arg("0")
            .arg("--rate-per-token")
            .arg("0")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("kring-api starts");
        let stderr = child.stderr.take().expect("its stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = Arc::clone(log);
        // Read stderr to its end (a full pipe would stall the server), keeping the lines for
        // failure messages and passing on the address it listens on.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("kring-api: listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
                let mut kept = kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() < 5_000 {
                    kept.push(line);
                }
            }
        });
        let listening =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(120)))
                .await
                .expect("waiting for the server");
        match listening {
            Ok(url) => (child, url),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kring-api did not start listening:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// `kill -9` of the server process, as a crash or a power cut would end it.
    pub fn kill(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the server process still runs.
    pub fn is_running(&self) -> bool {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        matches!(child.try_wait(), Ok(None))
    }

    /// Starts `serve` again on the same installation (after [`Server::kill`], or killing it
    /// first), with the same arguments; it listens on a new port.
    pub async fn restart(&mut self) {
        self.kill();
        let (child, url) = Self::spawn(
            self.dir.path(),
            self.database_url.as_deref(),
            &self.env,
            &self.extra,
            &self.log,
        )
        .await;
        *self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = child;
        self.url = url;
    }

    /// Starts `kring-api projector` on this server's installation.
    pub fn projector(&self) -> Worker {
        let mut command = Self::command(self.dir.path(), self.database_url.as_deref(), &self.env);
        command
            .arg("projector")
            .arg("--data-dir")
            .arg(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Worker {
            child: command.spawn().expect("kring-api projector starts"),
            _dir: None,
        }
    }

    /// `replay-tool --format json ARGS --data-dir DIR` against this server's installation.
    pub fn replay_tool(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(replay_tool_binary());
        for var in KRING_ENV {
            command.env_remove(var);
        }
        command.env("KRING_DATA_DIR", self.dir.path());
        if let Some(url) = &self.database_url {
            command.env("KRING_DATABASE_URL", url);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .args(["--format", "json"])
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path());
        command.output().expect("replay-tool runs")
    }

    /// `kring-api` with nothing of the outer environment but `env`, on `dir` (and PostgreSQL).
    pub fn command(
        dir: &std::path::Path,
        database_url: Option<&str>,
        env: &[(String, String)],
    ) -> Command {
        let mut command = Command::new(binary());
        for var in KRING_ENV {
            command.env_remove(var);
        }
        command.env("KRING_DATA_DIR", dir);
        if let Some(url) = database_url {
            command.env("KRING_DATABASE_URL", url);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `kring-api ARGS --data-dir DIR` against this server's installation, as an operator runs
    /// it beside the server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = Self::command(self.dir.path(), self.database_url.as_deref(), &self.env);
        command.args(args).arg("--data-dir").arg(self.dir.path());
        command.output().expect("kring-api runs")
    }

    /// `kring-api token --data-dir DIR (--person ID | --operator)`, as a developer runs it.
    pub fn cli_token(&self, who: Who) -> String {
        let mut command = Self::command(self.dir.path(), self.database_url.as_deref(), &self.env);
        command.arg("token").arg("--data-dir").arg(self.dir.path());
        match who {
            Who::Person(p) => command.arg("--person").arg(p.to_string()),
            Who::Operator => command.arg("--operator"),
            other => panic!("kring-api token mints no token for {other:?}"),
        };
        let out = command.output().expect("kring-api token runs");
        assert!(out.status.success(), "kring-api token: {out:?}");
        String::from_utf8(out.stdout)
            .expect("a token")
            .trim()
            .to_owned()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The last lines the server logged, and how it ended if it did.
    pub fn log_tail(&self) -> String {
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tail = log
            .iter()
            .rev()
            .take(30)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(Some(status)) = child.try_wait() {
            let _ = write!(tail, "\nkring-api ended: {status}");
        }
        tail
    }

    /// The bearer token `who` sends, if any.
    pub fn token(&self, who: Who) -> Option<String> {
        const OTHER_KEY: &[u8] = b"the signing key of another installation";
        match who {
            Who::Person(p) => Some(jwt(&self.secret, &p.to_string(), 3600)),
            Who::Operator => Some(jwt(&self.secret, "operator", 3600)),
            Who::Anonymous => None,
            Who::Expired(p) => Some(jwt(&self.secret, &p.to_string(), -3600)),
            Who::Foreign(p) => Some(jwt(OTHER_KEY, &p.to_string(), 3600)),
        }
    }

    /// A token of the trusted single sign-on issuer for its subject `sub`.
    #[allow(
        clippy::unused_self,
        reason = "asked of the server that trusts the issuer, like its own tokens"
    )]
    pub fn issuer_token(&self, sub: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub,
            exp: now + 600,
            iat: now - 60,
            iss: ISSUER,
            jti: None,
            aud: Some(AUDIENCE),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("e2e-1".to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ec_pem(ISSUER_KEY.as_bytes()).expect("the issuer's key"),
        )
        .expect("ES256 signing")
    }

    /// The highest position answered so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Sends a request as `who` and answers whatever came back, a 5xx included; `Err` when no
    /// answer came (the server is down or closed the connection). For the fault scenarios.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        who: Who,
        body: Body,
    ) -> Result<Answer, String> {
        let request = format!("{method} {path} as {who:?}");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = self.token(who) {
            req = req.bearer_auth(token);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(content_type, bytes) => req.header("content-type", content_type).body(bytes),
        };
        let res = req.send().await.map_err(|e| format!("{request}: {e}"))?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| format!("{request}: {e}"))?
            .to_vec();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if let Some(p) = body.get("position").and_then(Value::as_u64) {
            if status < 300 {
                self.seen.fetch_max(p, Ordering::SeqCst);
            }
        }
        Ok(Answer {
            request,
            status,
            content_type,
            bytes,
            body,
        })
    }

    /// Sends a request as `who`. Asserts it is never answered with a 5xx (but for `/readyz`
    /// while a read model lags).
    pub async fn send(&self, method: Method, path: &str, who: Who, body: Body) -> Answer {
        self.send_with(method, path, who, body, &[]).await
    }

    /// Like [`Server::send`], with these request headers too (`Idempotency-Key`, say); an
    /// `Authorization` among them is sent instead of a token minted for `who` (a retry sends
    /// the token it sent before).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        who: Who,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Answer {
        let request = format!("{method} {path} as {who:?}");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        let authorized = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let Some(token) = self.token(who).filter(|_| !authorized) {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(content_type, bytes) => req.header("content-type", content_type).body(bytes),
        };
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: {e}\n{}", self.log_tail()));
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res.bytes().await.expect("a body").to_vec();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // `/readyz` says `503` while a read model lags; nothing else may answer 5xx.
        let lagging = status == 503 && path == "/readyz";
        assert!(
            status < 500 || lagging,
            "{request}: never a 5xx, got {status}: {}\n{}",
            String::from_utf8_lossy(&bytes),
            self.log_tail()
        );
        if let Some(p) = body.get("position").and_then(Value::as_u64) {
            self.seen.fetch_max(p, Ordering::SeqCst);
        }
        Answer {
            request,
            status,
            content_type,
            bytes,
            body,
        }
    }

    /// Sends a request with this bearer token (one minted by `kring-api token`, say).
    pub async fn send_bearer(&self, method: Method, path: &str, token: &str) -> Answer {
        let res = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res.bytes().await.expect("a body").to_vec();
        Answer {
            request: format!("{method} {path} with a given token"),
            status,
            content_type,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
        }
    }

    /// `path` with `min_position` set to the highest position answered so far, so that a GET
    /// reads every write made before it.
    pub fn fresh(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}min_position={}", self.seen())
    }

    /// A GET that reads every write answered before it.
    pub async fn get(&self, path: &str, who: Who) -> Answer {
        self.send(Method::GET, &self.fresh(path), who, Body::Empty)
            .await
    }

    /// A POST with a JSON body.
    pub async fn post(&self, path: &str, who: Who, body: Value) -> Answer {
        self.send(Method::POST, path, who, Body::Json(body)).await
    }

    /// A PUT with a JSON body.
    pub async fn put(&self, path: &str, who: Who, body: Value) -> Answer {
        self.send(Method::PUT, path, who, Body::Json(body)).await
    }

    /// A DELETE, with a JSON body when given.
    pub async fn delete(&self, path: &str, who: Who, body: Option<Value>) -> Answer {
        let body = body.map_or(Body::Empty, Body::Json);
        self.send(Method::DELETE, path, who, body).await
    }

    /// The head of the event log, from `GET /readyz`: what "nothing written" is checked with.
    pub async fn head(&self) -> u64 {
        let ready = self
            .send(Method::GET, "/readyz", Who::Anonymous, Body::Empty)
            .await;
        ready.body["head"]
            .as_u64()
            .unwrap_or_else(|| panic!("no head in /readyz: {}", ready.text()))
    }

    /// Makes the next GETs wait for the whole log as it is now, writes that answered no position
    /// included (the access-log entries of audited reads).
    pub async fn sync(&self) {
        let head = self.head().await;
        self.seen.fetch_max(head, Ordering::SeqCst);
    }

    /// Waits until `/readyz` answers 200 (every read model caught up with the log).
    pub async fn ready(&self) {
        for _ in 0..400 {
            let ready = self
                .send(Method::GET, "/readyz", Who::Anonymous, Body::Empty)
                .await;
            if ready.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the read models never caught up:\n{}", self.log_tail());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `kring-api projector` process; killed (`kill -9`) when dropped.
pub struct Worker {
    child: Child,
    /// Its own data directory, when it has one (a worker on a machine of its own).
    _dir: Option<tempfile::TempDir>,
}

impl Worker {
    /// Starts `kring-api projector` with a fresh data directory of its own on the PostgreSQL
    /// database `database_url`, with the environment `env`: the projector worker of a
    /// deployment, on a machine of its own.
    pub fn projector(database_url: &str, env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut command = Server::command(dir.path(), Some(database_url), env);
        command
            .arg("projector")
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self {
            child: command.spawn().expect("kring-api projector starts"),
            _dir: Some(dir),
        }
    }

    /// `kill -9` of the worker.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster the test itself starts, stops and starts again, from the machine's
/// server binaries (as `scripts/lib/pg-cluster.sh` does: `initdb` and `pg_ctl` run as the
/// `postgres` user when we are root, in a temp dir owned by that user). Durable (`fsync`,
/// `synchronous_commit` and full-page writes on, PostgreSQL's defaults) unless asked otherwise.
/// Stopped (`-m immediate`) and deleted when dropped.
pub struct PgCluster {
    /// The data directory and logs, deleted when the cluster is dropped.
    _dir: tempfile::TempDir,
    pg: PgCtl,
    port: u16,
}

/// How to run the cluster's tools (as the `postgres` user when we are root).
#[derive(Clone)]
struct PgCtl {
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PgCtl {
    fn tool(&self, name: &str) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join(name));
            command
        } else {
            Command::new(self.bin.join(name))
        }
    }

    fn dir(&self) -> &Path {
        self.data.parent().expect("the cluster's dir")
    }

    fn start(&self) {
        let settings = std::fs::read_to_string(self.dir().join("settings")).expect("the settings");
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir().join("server.log"))
            .args(["-w", "-t", "60", "start", "-o"])
            .arg(settings)
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start: {out:?}\n{}",
            std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
        );
    }

    fn stop(&self, mode: &str) -> std::process::Output {
        self.tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "stop"])
            .output()
            .expect("pg_ctl runs")
    }
}

impl PgCluster {
    /// The machine's PostgreSQL server binaries, or why there are none.
    fn server_binaries() -> Result<PathBuf, String> {
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").is_file() {
                return Ok(dir);
            }
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL server binaries (/usr/lib/postgresql: {e})"))?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .collect();
        found.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        found
            .pop()
            .ok_or_else(|| "no PostgreSQL server binaries (no initdb found)".to_owned())
    }

    /// Starts a fresh cluster on a free port; `Err` says why it cannot (no server binaries),
    /// for the test to report itself as not run.
    pub async fn start(durable: bool) -> Result<Self, String> {
        tokio::task::spawn_blocking(move || Self::start_blocking(durable))
            .await
            .expect("starting PostgreSQL")
    }

    fn start_blocking(durable: bool) -> Result<Self, String> {
        let bin = Self::server_binaries()?;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::Builder::new()
            .prefix("kring-e2e-pg")
            .tempdir()
            .expect("a temp dir");
        if root {
            let chown = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(chown.success(), "chown postgres {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = PgCtl {
            data: dir.path().join("data"),
            bin,
            as_postgres: root,
        };
        let out = pg
            .tool("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {out:?}");
        let mut settings = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c max_connections=200",
            dir.path().display()
        );
        if !durable {
            settings.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        std::fs::write(dir.path().join("settings"), settings).expect("the settings written");
        pg.start();
        Ok(Self {
            _dir: dir,
            pg,
            port,
        })
    }

    /// Starts the stopped cluster again, on the same port.
    pub async fn start_again(&self) {
        let pg = self.pg.clone();
        tokio::task::spawn_blocking(move || pg.start())
            .await
            .expect("starting PostgreSQL again");
    }

    /// Stops the cluster (`pg_ctl stop -m fast`: sessions are ended, transactions in flight
    /// rolled back, and what committed is on disk).
    pub async fn stop(&self) {
        let pg = self.pg.clone();
        let out = tokio::task::spawn_blocking(move || pg.stop("fast"))
            .await
            .expect("stopping PostgreSQL");
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    /// The server's URL (its `postgres` database).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database on this cluster: its URL.
    pub async fn fresh_database(&self, label: &str) -> String {
        kring_testkit::fresh_postgres_database_on(&self.url(), label)
            .await
            .url()
            .to_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg.stop("immediate");
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: i64,
    iat: i64,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// The single sign-on issuer the server trusts, and Kring's audience there.
pub const ISSUER: &str = "https://login.e2e-board.example";
const AUDIENCE: &str = "kring-e2e";
/// The issuer's signing key (P-256, made for these tests only) and its public JWKS.
const ISSUER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgojomAhR3gLLLrsFI
2MJ0RTACfoaT3Y86CJkQh+rEcRKhRANCAASIQ5Rw/0xs9YO5nRpLJWJp+ZvuzxK3
KAZJMBhICKMpbskhjCkONVc6PNR87QjZUrEPfuXYG3Dw4eGzV2PKzyt5
-----END PRIVATE KEY-----
";
const ISSUER_JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "e2e-1", "use": "sig", "alg": "ES256",
    "x": "iEOUcP9MbPWDuZ0aSyViafmb7s8StygGSTAYSAijKW4", "y": "ySGMKQ41Vzo81HztCNlSsQ9-5dgbcPDh4bNXY8rPK3k"}]}"#;

/// An HS256 token for `sub`, expiring `valid_for` seconds from now (negative: in the past).
fn jwt(secret: &[u8], sub: &str, valid_for: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub,
        exp: now + valid_for,
        iat: now.min(now + valid_for) - 60,
        iss: "kring-local",
        jti: Some(Uuid::now_v7()),
        aud: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HMAC signing")
}
