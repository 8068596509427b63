//! `Idempotency-Key`: a write retried after an ambiguous failure (the connection dropped after
//! the commit, say) writes nothing twice and answers what it answered the first time.
//!
//! A request with the header runs in a *scope* derived from its caller (the bearer token), its
//! method, its path and the key. Inside the scope everything a write makes up is derived from
//! the scope instead of drawn at random: the event ids of each command it runs (the n-th
//! command's i-th event), the ids of what it creates ([`fresh_uuid`]) and the secrets it hands
//! out ([`fresh_secret`], keyed with the installation's secret). Before a command is decided the
//! executor looks its first event id up in the log ([`Executor`](crate::exec::Executor)): when
//! it is there, the command ran before, and it answers the events it wrote then, deciding
//! nothing. So the retry answers the same ids and position, whatever happened since, and the
//! store's own recognition of re-appended event ids covers a retry racing the first attempt.
//!
//! A key is bound to the body it was first used with (a SHA-256 of a JSON body): the same key
//! with another body is `422 idempotency_key_reused`. Keys are kept for [`KEEP_KEYS`].

use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key stays bound to its body.
pub const KEEP_KEYS: Duration = Duration::from_secs(24 * 3600);

/// The namespace of every id derived from a scope.
const NAMESPACE: Uuid = Uuid::from_u128(0x6b72_696e_672d_6964_656d_706f_7465_6e74);

tokio::task_local! {
    static SCOPE: Scope;
}

/// The scope of one request with a key.
#[derive(Debug)]
struct Scope {
    base: Uuid,
    secret: [u8; 32],
    commands: AtomicU32,
    ids: AtomicU32,
    secrets: AtomicU32,
}

/// The event ids of one command run inside a scope.
#[derive(Debug, Clone, Copy)]
pub struct CommandIds {
    base: Uuid,
    command: u32,
}

impl CommandIds {
    /// The id of the command's `index`-th event.
    #[must_use]
    pub fn event_id(&self, index: usize) -> Uuid {
        derive(
            &self.base,
            format!("command/{}/event/{index}", self.command).as_bytes(),
        )
    }
}

/// A UUID (version 8) named by `label` under `base`: the first 16 bytes of their SHA-256.
fn derive(base: &Uuid, label: &[u8]) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(base.as_bytes());
    hash.update(label);
    let digest = hash.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The event ids of the next command of this request, if it has a key.
#[must_use]
pub fn next_command() -> Option<CommandIds> {
    SCOPE
        .try_with(|s| CommandIds {
            base: s.base,
            command: s.commands.fetch_add(1, Ordering::SeqCst),
        })
        .ok()
}

/// A new id: derived from the request's key when it has one, otherwise a fresh `UUIDv7`.
#[must_use]
pub fn fresh_uuid() -> Uuid {
    SCOPE
        .try_with(|s| {
            let n = s.ids.fetch_add(1, Ordering::SeqCst);
            derive(&s.base, format!("id/{n}").as_bytes())
        })
        .unwrap_or_else(|_| Uuid::now_v7())
}

/// `N` secret bytes: derived from the request's key and the installation's secret when it has
/// a key (the same on a retry, unknown to anyone without the secret), otherwise random.
///
/// # Errors
/// The system's random source failed.
pub fn fresh_secret<const N: usize>() -> ApiResult<[u8; N]> {
    let derived = SCOPE.try_with(|s| {
        let n = s.secrets.fetch_add(1, Ordering::SeqCst);
        let mut out = [0_u8; N];
        for (block, chunk) in (0_u32..).zip(out.chunks_mut(32)) {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&s.secret)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(s.base.as_bytes());
            mac.update(&n.to_be_bytes());
            mac.update(&block.to_be_bytes());
            let bytes = mac.finalize().into_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        out
    });
    match derived {
        Ok(out) => Ok(out),
        Err(_) => {
            let mut out = [0_u8; N];
            getrandom::getrandom(&mut out).map_err(ApiError::internal)?;
            Ok(out)
        }
    }
}

/// The key of a request, checked: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
fn key_of(value: &HeaderValue) -> ApiResult<&str> {
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(format!(
            "Idempotency-Key: 1 to {MAX_KEY_LEN} visible ASCII characters, e.g. a UUID"
        )));
    }
    Ok(key)
}

/// The writes that need no bearer token (the OpenAPI document lists no security for them).
pub const OPEN_WRITES: [&str; 1] = ["/v1/invitations/accept"];

/// Runs a write with an `Idempotency-Key` inside its scope; everything else as it is.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // Without credentials a write that needs them is answered `401` whatever its key: the key
    // is neither bound nor checked (a reused key must not answer `422` before the `401`).
    if !req.headers().contains_key(header::AUTHORIZATION)
        && !OPEN_WRITES.contains(&req.uri().path())
    {
        return next.run(req).await;
    }
    match scoped(&state, req, &value, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn scoped(
    state: &AppState,
    req: Request,
    value: &HeaderValue,
    next: Next,
) -> Result<Response, Response> {
    let key = key_of(value).map_err(IntoResponse::into_response)?;
    let mut scope_hash = Sha256::new();
    for part in [
        req.headers()
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes),
        req.method().as_str().as_bytes(),
        req.uri().path().as_bytes(),
        key.as_bytes(),
    ] {
        scope_hash.update((part.len() as u64).to_be_bytes());
        scope_hash.update(part);
    }
    let scope_hash = hex::encode(scope_hash.finalize());
    // A JSON body is read here (within the JSON limit) to bind the key to it; other bodies
    // (media) are bound by the key alone.
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let (req, fingerprint) = if is_json {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, state.limits.json_body)
            .await
            .map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    Code::PayloadTooLarge,
                    format!("a JSON body has at most {} bytes", state.limits.json_body),
                )
                .into_response()
            })?;
        let fingerprint = hex::encode(Sha256::digest(&bytes));
        (
            Request::from_parts(parts, axum::body::Body::from(bytes)),
            fingerprint,
        )
    } else {
        (req, String::new())
    };
    bind(state, &scope_hash, &fingerprint)
        .await
        .map_err(IntoResponse::into_response)?;
    let scope = Scope {
        base: derive(&NAMESPACE, scope_hash.as_bytes()),
        secret: state.auth.derived_secret(b"kring idempotent secrets v1"),
        commands: AtomicU32::new(0),
        ids: AtomicU32::new(0),
        secrets: AtomicU32::new(0),
    };
    Ok(SCOPE.scope(scope, next.run(req)).await)
}

/// Binds the key (its scope) to the body's fingerprint, or checks that it is bound to it.
async fn bind(state: &AppState, scope: &str, fingerprint: &str) -> ApiResult<()> {
    let pool = state.system.db.pool();
    let now = chrono::Utc::now().timestamp();
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, fingerprint, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (scope) DO NOTHING",
    )
    .bind(scope)
    .bind(fingerprint)
    .bind(now)
    .execute(pool)
    .await
    .map_err(ApiError::internal)?;
    let bound: String =
        sqlx::query_scalar("SELECT fingerprint FROM idempotency_keys WHERE scope = $1")
            .bind(scope)
            .fetch_one(pool)
            .await
            .map_err(ApiError::internal)?;
    if bound != fingerprint {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Code::IdempotencyKeyReused,
            "this Idempotency-Key was used with another body: a new request needs a new key",
        ));
    }
    Ok(())
}

/// Creates the key table when missing (it lives outside the read models' generations: a
/// rebuild keeps it).
///
/// # Errors
/// Database failures.
pub async fn ensure_table(db: &kring_projections::ReadDb) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS idempotency_keys (
            scope TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Forgets keys older than [`KEEP_KEYS`]; how many.
///
/// # Errors
/// Database failures.
pub async fn forget_old(db: &kring_projections::ReadDb) -> Result<u64, sqlx::Error> {
    let before = chrono::Utc::now().timestamp() - KEEP_KEYS.as_secs().cast_signed();
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}
