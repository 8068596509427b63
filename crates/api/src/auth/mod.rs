//! Authentication: JWT bearer tokens.
//!
//! - The embedded default signs HS256 tokens with a secret kept in `DIR/jwt.key` (owner-only
//!   permissions, generated on first use; `KRING_JWT_SECRET` overrides it); `kring-api token`
//!   mints them.
//! - A deployment can instead (or as well) trust an OpenID Connect issuer: its public keys come
//!   from a JWKS file or URL (`--oidc-jwks`), and tokens must name `--oidc-issuer` as `iss` and
//!   `--oidc-audience` in `aud`. The compliance console's sign-in through that issuer verifies
//!   its ID tokens with the same check, for the console's client id and the attempt's nonce
//!   ([`Auth::verify_id_token`]).
//!
//! A local token's `sub` is a Kring person id, or `operator` for the platform operator; each
//! carries an id (`jti`) by which it can be revoked. An issuer's token names the person's
//! subject there: it is the Kring person whose single sign-on identity it is (added with the
//! staff member, or linked once by the person), and never the operator. Rights never come
//! from claims: they are decided from event-sourced state by each route.

mod jwks;
pub mod revocations;

pub use jwks::{Jwks, KeyError, FETCH_TIMEOUT, UNKNOWN_KID_REFRESH};

use crate::error::ApiError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kring_domain::{Actor, PersonId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The environment variable holding the local signing secret (base64), overriding the file.
pub const JWT_SECRET_ENV: &str = "KRING_JWT_SECRET";
/// The issuer named by locally minted tokens.
pub const LOCAL_ISSUER: &str = "kring-local";
/// The longest a local token may be valid: minted for longer, or presented with a later expiry,
/// it is refused.
pub const MAX_TOKEN_DAYS: i64 = 90;
/// The shortest local signing secret accepted (HS256 wants at least its 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A staff member or a guardian.
    Person(PersonId),
    /// The platform operator.
    Operator,
}

impl Caller {
    /// The domain actor for commands.
    #[must_use]
    pub const fn actor(self) -> Actor {
        match self {
            Self::Person(p) => Actor::Person(p),
            Self::Operator => Actor::Operator,
        }
    }

    /// The person, unless the operator.
    #[must_use]
    pub const fn person(self) -> Option<PersonId> {
        match self {
            Self::Person(p) => Some(p),
            Self::Operator => None,
        }
    }
}

/// The claims Kring reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// A person id or `operator`.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: i64,
    /// The issuer.
    #[serde(default)]
    pub iss: String,
    /// The token's id (local tokens): what a revocation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

/// What a verified token says, before it is resolved to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A locally signed token: its caller, and its id (checked against revocations).
    Local {
        /// The caller.
        caller: Caller,
        /// The token's id.
        jti: Uuid,
    },
    /// A token of the trusted issuer: the person's identity there.
    External {
        /// The subject (`sub`) at the issuer.
        subject: String,
        /// [`identity_digest`] of the issuer and the subject.
        digest: String,
    },
}

/// The digest that finds a person from an issuer's token: hex SHA-256 of the issuer and the
/// subject, so the subject itself need not be stored in the clear to look it up.
#[must_use]
pub fn identity_digest(issuer: &str, subject: &str) -> String {
    let mut hash = Sha256::new();
    for part in ["kring-sso-identity-v1", issuer, subject] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// Why authentication setup failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The key file could not be read or written.
    #[error("signing key {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The JWKS could not be read.
    #[error("JWKS {source_name}: {reason}")]
    Jwks {
        /// The file or URL.
        source_name: String,
        /// What failed.
        reason: String,
    },
}

/// An external OpenID Connect issuer.
struct Oidc {
    issuer: String,
    audience: String,
    keys: Jwks,
}

/// Verifies (and, locally, mints) bearer tokens.
#[derive(Clone)]
pub struct Auth {
    secret: Vec<u8>,
    oidc: Option<Arc<Oidc>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("oidc", &self.oidc.as_ref().map(|o| &o.issuer))
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The local signing key of `data_dir` (created on first use), or `KRING_JWT_SECRET`.
    ///
    /// # Errors
    /// The key file cannot be read or created; a malformed or short secret.
    pub fn local(data_dir: &Path) -> Result<Self, AuthSetupError> {
        let (source, secret) = match std::env::var(JWT_SECRET_ENV) {
            Ok(text) if !text.is_empty() => (
                JWT_SECRET_ENV.to_owned(),
                B64.decode(text.trim())
                    .map_err(|e| AuthSetupError::KeyFile {
                        path: JWT_SECRET_ENV.to_owned(),
                        reason: format!("not base64: {e}"),
                    })?,
            ),
            _ => {
                let path = data_dir.join("jwt.key");
                (path.display().to_string(), key_file(&path)?)
            }
        };
        Self::with_secret(&source, secret)
    }

    /// Local tokens signed with `secret` (from `source`, for the error).
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    pub fn with_secret(source: &str, secret: Vec<u8>) -> Result<Self, AuthSetupError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthSetupError::KeyFile {
                path: source.to_owned(),
                reason: format!(
                    "the secret has {} bytes; at least {MIN_SECRET_BYTES} are needed",
                    secret.len()
                ),
            });
        }
        Ok(Self { secret, oidc: None })
    }

    /// Also trusts tokens of `issuer` for `audience` signed by a key of `jwks` (a file path or
    /// an http(s) URL, fetched within [`FETCH_TIMEOUT`] and kept fresh; see [`Jwks`]).
    ///
    /// # Errors
    /// The JWKS cannot be fetched in time or parsed.
    pub async fn with_oidc(
        self,
        issuer: &str,
        jwks: &str,
        audience: &str,
    ) -> Result<Self, AuthSetupError> {
        self.with_oidc_timeout(issuer, jwks, audience, FETCH_TIMEOUT)
            .await
    }

    /// [`Auth::with_oidc`] with another fetch timeout than [`FETCH_TIMEOUT`].
    ///
    /// # Errors
    /// As [`Auth::with_oidc`].
    pub async fn with_oidc_timeout(
        mut self,
        issuer: &str,
        jwks: &str,
        audience: &str,
        timeout: Duration,
    ) -> Result<Self, AuthSetupError> {
        let keys = Jwks::load(jwks, timeout)
            .await
            .map_err(|reason| AuthSetupError::Jwks {
                source_name: jwks.to_owned(),
                reason,
            })?;
        self.oidc = Some(Arc::new(Oidc {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys,
        }));
        Ok(self)
    }

    /// A secret derived from the local signing secret for `purpose` (HMAC-SHA256): stable
    /// across restarts, unknown without the signing secret.
    #[must_use]
    pub fn derived_secret(&self, purpose: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose);
        mac.finalize().into_bytes().into()
    }

    /// The trusted issuer, if one is configured.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.oidc.as_deref().map(|o| o.issuer.as_str())
    }

    /// A locally signed token for `caller`, valid for `ttl` (at most [`MAX_TOKEN_DAYS`]).
    ///
    /// # Errors
    /// As [`Auth::mint_with_id`].
    pub fn mint(&self, caller: Caller, ttl: chrono::Duration) -> Result<String, ApiError> {
        self.mint_with_id(caller, ttl).map(|(token, _)| token)
    }

    /// A locally signed token for `caller`, valid for `ttl`, and its id (what revokes it).
    ///
    /// # Errors
    /// `422` for a lifetime over the maximum or not positive; signing failed (it does not with
    /// an HMAC key).
    pub fn mint_with_id(
        &self,
        caller: Caller,
        ttl: chrono::Duration,
    ) -> Result<(String, Uuid), ApiError> {
        if ttl <= chrono::Duration::zero() || ttl > chrono::Duration::days(MAX_TOKEN_DAYS) {
            return Err(ApiError::validation(format!(
                "a token is valid for more than nothing and at most {MAX_TOKEN_DAYS} days"
            )));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: match caller {
                Caller::Person(p) => p.to_string(),
                Caller::Operator => "operator".to_owned(),
            },
            exp: now + ttl.num_seconds(),
            iat: now,
            iss: LOCAL_ISSUER.to_owned(),
            jti: Some(Uuid::now_v7()),
        };
        let jti = claims.jti.unwrap_or_default();
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .map(|token| (token, jti))
        .map_err(ApiError::internal)
    }

    /// What a bearer token says, if it verifies: a local token's caller and id, or an
    /// issuer's subject (resolved to a person by the caller of this).
    ///
    /// # Errors
    /// `401 unauthenticated`: malformed, expired, without an id (local), or signed by a key
    /// this server does not trust.
    pub async fn verify(&self, token: &str) -> Result<Verified, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        if header.alg == Algorithm::HS256 {
            return self.verify_local(token);
        }
        let oidc = self.oidc.as_deref().ok_or_else(|| {
            ApiError::unauthenticated("the token is not signed by a key this server trusts")
        })?;
        let claims: Claims = issued(oidc, token, &header, &oidc.audience).await?;
        if claims.sub.is_empty() {
            return Err(ApiError::unauthenticated("the token names no subject"));
        }
        // The subject is a person at the issuer, whatever it looks like: never the operator,
        // never a Kring id by itself.
        Ok(Verified::External {
            digest: identity_digest(&oidc.issuer, &claims.sub),
            subject: claims.sub,
        })
    }

    /// The subject and its digest of an ID token the trusted issuer made for the client
    /// `client_id` in the sign-in that sent `nonce` (OpenID Connect Core 3.1.3.7): verified as
    /// a bearer token of the issuer is (a key of its JWKS, `iss`, `exp`), but for the audience
    /// `client_id` (and `azp`, when named, is that client), and naming `nonce`.
    ///
    /// # Errors
    /// `401 unauthenticated`: no issuer configured, a token that does not verify, another
    /// audience, another nonce (or none), no subject.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<(String, String), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let oidc = self.oidc.as_deref().ok_or_else(|| {
            ApiError::unauthenticated("this installation trusts no single sign-on issuer")
        })?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(ApiError::unauthenticated(
                "the ID token is not signed by a key of the issuer",
            ));
        }
        let claims: IdClaims = issued(oidc, token, &header, client_id).await?;
        if claims.azp.as_deref().is_some_and(|azp| azp != client_id) {
            return Err(ApiError::unauthenticated(
                "the ID token was made for another client (azp)",
            ));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(ApiError::unauthenticated(
                "the ID token's nonce is not this sign-in's",
            ));
        }
        if claims.sub.is_empty() {
            return Err(ApiError::unauthenticated("the ID token names no subject"));
        }
        let digest = identity_digest(&oidc.issuer, &claims.sub);
        Ok((claims.sub, digest))
    }

    fn verify_local(&self, token: &str) -> Result<Verified, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(&self.secret),
            &validation,
        )
        .map_err(invalid)?
        .claims;
        // A leaked key must not mint tokens that outlive the bound.
        let latest = chrono::Utc::now().timestamp() + MAX_TOKEN_DAYS * 24 * 3600 + 60;
        if claims.exp > latest {
            return Err(ApiError::unauthenticated(format!(
                "the token is valid for more than {MAX_TOKEN_DAYS} days"
            )));
        }
        let jti = claims.jti.ok_or_else(|| {
            ApiError::unauthenticated("the token has no id (jti); ask for a new one")
        })?;
        let caller = if claims.sub == "operator" {
            Caller::Operator
        } else {
            claims
                .sub
                .parse::<PersonId>()
                .map(Caller::Person)
                .map_err(|_| {
                    ApiError::unauthenticated("the token's subject is not a Kring person id")
                })?
        };
        Ok(Verified::Local { caller, jti })
    }

    /// The subject and its digest of an issuer's token (for linking an identity), if it
    /// verifies as one.
    ///
    /// # Errors
    /// As [`Auth::verify`]; `401` for a local token.
    pub async fn external_identity(&self, token: &str) -> Result<(String, String), ApiError> {
        match self.verify(token).await? {
            Verified::External { subject, digest } => Ok((subject, digest)),
            Verified::Local { .. } => Err(ApiError::unauthenticated(
                "a token of the single sign-on issuer is needed, not a Kring token",
            )),
        }
    }
}

/// What Kring reads of an ID token besides what validation checks.
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// The claims of a token signed by a key of `oidc`'s JWKS, naming its issuer and `audience`,
/// not expired: one check for bearer tokens and ID tokens alike.
async fn issued<T: serde::de::DeserializeOwned>(
    oidc: &Oidc,
    token: &str,
    header: &Header,
    audience: &str,
) -> Result<T, ApiError> {
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| ApiError::unauthenticated("the token names no key id (kid)"))?;
    let jwk = oidc
        .keys
        .key(kid, header.alg)
        .await
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(invalid)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[oidc.issuer.as_str()]);
    // A token the issuer made for another application is not for Kring.
    validation.set_audience(&[audience]);
    validation.leeway = 5;
    Ok(jsonwebtoken::decode::<T>(token, &key, &validation)
        .map_err(invalid)?
        .claims)
}

fn invalid(e: jsonwebtoken::errors::Error) -> ApiError {
    ApiError::unauthenticated(match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
            "the token is not signed by a key this server trusts".to_owned()
        }
        jsonwebtoken::errors::ErrorKind::InvalidAudience => {
            "the token was made for another audience (aud)".to_owned()
        }
        jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
            "the token was made by another issuer (iss)".to_owned()
        }
        _ => format!("the token is not valid: {e}"),
    })
}

/// Reads the secret at `path`, generating it (32 random bytes, owner-only) when missing.
fn key_file(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    let fail = |reason: String| AuthSetupError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => B64
            .decode(text.trim())
            .map_err(|e| fail(format!("not base64: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0_u8; 32];
            getrandom::getrandom(&mut secret).map_err(|e| fail(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
            }
            match kring_store::vault::create_private(path, B64.encode(&secret).as_bytes()) {
                Ok(()) => Ok(secret),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(path),
                Err(e) => Err(fail(e.to_string())),
            }
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::with_secret("test", vec![7; MIN_SECRET_BYTES]).expect("a long enough secret")
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(Auth::with_secret("test", vec![7; MIN_SECRET_BYTES - 1]).is_err());
    }

    #[tokio::test]
    async fn local_tokens_live_at_most_ninety_days() {
        let auth = auth();
        assert!(auth
            .mint(Caller::Operator, chrono::Duration::days(MAX_TOKEN_DAYS))
            .is_ok());
        for ttl in [
            chrono::Duration::days(MAX_TOKEN_DAYS + 1),
            chrono::Duration::zero(),
        ] {
            assert!(auth.mint(Caller::Operator, ttl).is_err(), "{ttl}");
        }
        // Signed with the key, but for a year: refused.
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "operator".into(),
            exp: now + 365 * 24 * 3600,
            iat: now,
            iss: LOCAL_ISSUER.into(),
            jti: Some(Uuid::now_v7()),
        };
        let long = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&auth.secret),
        )
        .unwrap_or_default();
        assert_eq!(
            auth.verify(&long).await.err().map(|e| e.code),
            Some(crate::Code::Unauthenticated)
        );
        let (fine, jti) = auth
            .mint_with_id(Caller::Operator, chrono::Duration::hours(1))
            .unwrap_or_default();
        assert_eq!(
            auth.verify(&fine).await.ok(),
            Some(Verified::Local {
                caller: Caller::Operator,
                jti
            })
        );
    }

    #[tokio::test]
    async fn a_local_token_without_an_id_is_refused() {
        let auth = auth();
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "operator".into(),
            exp: now + 600,
            iat: now,
            iss: LOCAL_ISSUER.into(),
            jti: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&auth.secret),
        )
        .unwrap_or_default();
        let refused = auth.verify(&token).await.err();
        assert_eq!(
            refused.as_ref().map(|e| e.code),
            Some(crate::Code::Unauthenticated)
        );
        assert!(refused.is_some_and(|e| e.detail.contains("jti")));
    }

    #[test]
    fn identity_digests_separate_issuer_and_subject() {
        let a = identity_digest("https://idp.example", "abc");
        assert_eq!(a.len(), 64);
        assert_eq!(a, identity_digest("https://idp.example", "abc"));
        assert_ne!(a, identity_digest("https://idp.example/", "bc"));
        assert_ne!(a, identity_digest("https://idp.example", "abd"));
    }
}
