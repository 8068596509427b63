//! Console sign-in: one-time links, the session cookie, and the CSRF token.
//!
//! - A **sign-in link** (`kring-api token --console`) holds a token signed with a key derived
//!   from the installation's signing secret for links only (so no API bearer token is a link and
//!   no link is a bearer token), valid for [`LINK_MINUTES`]. Using it spends its id: the server
//!   records the id as revoked in the log (as `kring-api token --revoke` does), so a second use
//!   — on any server of the installation — is refused.
//! - The **session** is a cookie (`Secure`, `HttpOnly`, `SameSite=Strict`, path `/console`)
//!   holding a token signed with another derived key, valid for [`SESSION_MINUTES`]; signing
//!   out revokes its id the same way.
//! - Signing in **through the issuer** (`oidc`) spends its attempt's id the same way and starts
//!   the same session.
//! - The **CSRF token** of a session is an HMAC of the session's id under a third derived key:
//!   every form carries it, and every `POST` without the session's token is refused (`403`).

use crate::auth::{Auth, Caller, Claims};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kring_domain::school::StaffRole;
use kring_domain::PersonId;
use uuid::Uuid;

/// How long a sign-in link is valid.
pub const LINK_MINUTES: i64 = 10;
/// How long a console session lasts.
pub const SESSION_MINUTES: i64 = 60;
/// The session cookie's name.
pub const COOKIE: &str = "kring_console";
/// The issuer named by sign-in links.
const LINK_ISSUER: &str = "kring-console-link";
/// The issuer named by session tokens.
const SESSION_ISSUER: &str = "kring-console-session";

fn mint(secret: &[u8], issuer: &str, person: PersonId, minutes: i64) -> ApiResult<(String, Uuid)> {
    let now = chrono::Utc::now().timestamp();
    let jti = Uuid::now_v7();
    let claims = Claims {
        sub: person.to_string(),
        exp: now + minutes * 60,
        iat: now,
        iss: issuer.to_owned(),
        jti: Some(jti),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map(|t| (t, jti))
    .map_err(ApiError::internal)
}

fn check(secret: &[u8], issuer: &str, token: &str, minutes: i64) -> ApiResult<(PersonId, Uuid)> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[issuer]);
    validation.leeway = 5;
    let claims =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthenticated("the sign-in has expired")
                }
                _ => ApiError::unauthenticated("the sign-in is not valid"),
            })?
            .claims;
    // A leaked key must not make links or sessions that outlive their bound.
    if claims.exp > chrono::Utc::now().timestamp() + minutes * 60 + 60 {
        return Err(ApiError::unauthenticated("the sign-in lasts too long"));
    }
    let person = claims
        .sub
        .parse::<PersonId>()
        .map_err(|_| ApiError::unauthenticated("the sign-in names no person"))?;
    let jti = claims
        .jti
        .ok_or_else(|| ApiError::unauthenticated("the sign-in has no id"))?;
    Ok((person, jti))
}

fn link_key(auth: &Auth) -> [u8; 32] {
    auth.derived_secret(b"kring-console-link-v1")
}

fn session_key(auth: &Auth) -> [u8; 32] {
    auth.derived_secret(b"kring-console-session-v1")
}

/// A one-time sign-in link's secret for `person`, and its id.
///
/// # Errors
/// Signing failed (it does not with an HMAC key).
pub fn mint_link(auth: &Auth, person: PersonId) -> ApiResult<(String, Uuid)> {
    mint(&link_key(auth), LINK_ISSUER, person, LINK_MINUTES)
}

/// The sign-in URL for `secret` on the server at `base` (e.g. `http://127.0.0.1:8080`).
#[must_use]
pub fn link_url(base: &str, secret: &str) -> String {
    format!(
        "{}/console/sign-in?link={secret}",
        base.trim_end_matches('/')
    )
}

/// Spends a sign-in link: verifies it, records its id as used (a second use is refused), and
/// checks that its person is a compliance officer or director somewhere. Answers the session
/// cookie's value.
///
/// # Errors
/// `401` for a link that does not verify, expired, or was used before; `403` for a person who is
/// no compliance officer or director of any school.
pub async fn sign_in(state: &AppState, rid: Uuid, link: &str) -> ApiResult<(PersonId, String)> {
    let (person, jti) = check(
        &link_key(&state.auth),
        LINK_ISSUER,
        link.trim(),
        LINK_MINUTES,
    )?;
    // The link is spent before anything else: a refused person cannot try it again either.
    if !spend(state, rid, jti).await? {
        return Err(ApiError::unauthenticated(
            "this sign-in link was used before",
        ));
    }
    let session = open_session(state, person).await?;
    Ok((person, session))
}

/// Records the one-time sign-in `id` (a link's, or an attempt's through the issuer) as used:
/// the installation records the use as it records a revocation, so every server refuses a
/// second one. Answers whether it was unused until now.
///
/// # Errors
/// Store failures.
pub async fn spend(state: &AppState, rid: Uuid, id: Uuid) -> ApiResult<bool> {
    match crate::routes::sign_in::record_revocation(&state.exec, Caller::Operator, rid, id).await {
        Ok(_) => Ok(true),
        Err(e) if e.status == axum::http::StatusCode::CONFLICT => Ok(false),
        Err(e) => Err(e),
    }
}

/// Starts a console session for `person`, who signed in (with a link or through the issuer):
/// answers the session cookie's value.
///
/// # Errors
/// `403` for a person who is no compliance officer or director of any school.
pub async fn open_session(state: &AppState, person: PersonId) -> ApiResult<String> {
    if !may_use_console(state, person).await? {
        return Err(ApiError::forbidden(
            "the console is for compliance officers and directors",
        ));
    }
    let (session, _) = mint(
        &session_key(&state.auth),
        SESSION_ISSUER,
        person,
        SESSION_MINUTES,
    )?;
    Ok(session)
}

/// Whether `person` is a compliance officer or director of some school now.
///
/// # Errors
/// Store and read-model failures.
pub async fn may_use_console(state: &AppState, person: PersonId) -> ApiResult<bool> {
    let profile = kring_projections::models::memberships::person(&state.system.db, person).await?;
    for school in profile.map(|p| p.schools).unwrap_or_default() {
        let roster = state.exec.school(school.school_id).await?.state;
        if matches!(
            roster.role(person),
            Some(StaffRole::ComplianceOfficer | StaffRole::Director)
        ) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A signed-in officer.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The person.
    pub person: PersonId,
    /// The session's id.
    pub id: Uuid,
}

impl Session {
    /// The caller the API's rules are decided for.
    #[must_use]
    pub const fn caller(self) -> Caller {
        Caller::Person(self.person)
    }

    /// The session's CSRF token.
    #[must_use]
    pub fn csrf(self, auth: &Auth) -> String {
        use hmac::Mac;
        let key = auth.derived_secret(b"kring-console-csrf-v1");
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is this session's CSRF token (compared in constant time).
    #[must_use]
    pub fn csrf_ok(self, auth: &Auth, token: &str) -> bool {
        let expected = self.csrf(auth);
        expected.len() == token.len()
            && expected
                .bytes()
                .zip(token.bytes())
                .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The session of a request's cookie, if it verifies, was not signed out, and its person may
/// still use the console.
///
/// # Errors
/// Store and read-model failures (an invalid cookie is `None`, not an error).
pub async fn session_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> ApiResult<Option<Session>> {
    let Some(value) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let Ok((person, id)) = check(
        &session_key(&state.auth),
        SESSION_ISSUER,
        &value,
        SESSION_MINUTES,
    ) else {
        return Ok(None);
    };
    if state.token_revoked(id).await? {
        return Ok(None);
    }
    if !may_use_console(state, person).await? {
        return Ok(None);
    }
    Ok(Some(Session { person, id }))
}

/// The value of cookie `name` in the request's headers.
#[must_use]
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value that starts a session.
#[must_use]
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        SESSION_MINUTES * 60
    )
}

/// The `Set-Cookie` value that ends a session.
#[must_use]
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}
